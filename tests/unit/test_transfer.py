"""The export document and the import plan (confctl/transfer.py), and confctl export/import over the fake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from confctl.transfer import Current, Document, DocumentError, document_from_plain, plan
from tests.unit.confctl_fake import Harness


def test_a_document_round_trips_text_and_binary_values_through_json_and_yaml() -> None:
    doc = Document("app/", {"app/db": b"postgres://db1", "app/cert": b"\xff\x00"}, {"1": "3:40"}, "now")

    for text in (json.dumps(doc.to_plain()), yaml.safe_dump(doc.to_plain())):
        again = document_from_plain(yaml.safe_load(text))
        assert again == doc
    assert doc.to_plain()["keys"] == {"app/cert": {"base64": "/wA="}, "app/db": "postgres://db1"}


@pytest.mark.parametrize(
    ("doc", "named"),
    [
        ({"keys": {}}, "confman_export"),
        ({"confman_export": 1, "prefix": "app/", "keys": {"other/k": "v"}}, "not under"),
        ({"confman_export": 1, "keys": {"k": 5}}, "'k'"),
        ({"confman_export": 1, "keys": {"k": {"base64": "!!"}}}, "base64"),
        ({"confman_export": 1, "keys": ["k"]}, "keys"),
    ],
)
def test_a_bad_document_is_refused_naming_what_is_wrong(doc: object, named: str) -> None:
    with pytest.raises(DocumentError, match=named):
        document_from_plain(doc)


def test_the_plan_adds_changes_and_with_prune_removes_per_namespace_pinned_to_the_versions_read() -> None:
    doc = Document("", {"a/new": b"1", "a/same": b"s", "b/changed": b"2"})
    current = {
        "a/same": Current(b"s", "1:3"),
        "b/changed": Current(b"old", "1:4"),
        "b/extra": Current(b"x", "1:5"),
    }

    kept = plan(doc, current, prune=False)
    pruned = plan(doc, current, prune=True)

    assert {ns: [(c.op, c.key, c.expected) for c in cs] for ns, cs in kept.items()} == {
        "a": [("add", "a/new", None)],
        "b": [("change", "b/changed", "1:4")],
    }
    assert [(c.op, c.key, c.expected) for c in pruned["b"]][-1] == ("remove", "b/extra", "1:5")


def test_export_writes_a_document_and_import_dry_run_shows_the_changes_and_writes_nothing(
    cli: Harness, tmp_path: Path
) -> None:
    cli.client.data = {"app/a": b"1", "app/b": b"2"}
    exported = cli.run("export", "app/", "--format", "yaml")
    doc = yaml.safe_load(exported.out)
    cli.client.data["app/b"] = b"changed"
    cli.client.data["app/c"] = b"new"
    path = tmp_path / "doc.yaml"
    path.write_text(exported.out)

    dry = cli.run("import", str(path), "--dry-run", "--prune")

    assert doc["keys"] == {"app/a": "1", "app/b": "2"}
    assert dry.code == 0
    assert [line.split() for line in dry.out.splitlines()[1:]] == [["change", "app/b"], ["remove", "app/c"]]
    assert not any(name == "txn" for name, _ in cli.client.calls)


def test_import_writes_each_namespace_as_one_transaction(cli: Harness, tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    path.write_text(json.dumps({"confman_export": 1, "prefix": "", "keys": {"a/k": "1", "b/k": "2"}}))

    result = cli.run("import", str(path))

    txns = [args for name, args in cli.client.calls if name == "txn"]
    assert result.code == 0, result.err
    assert len(txns) == 2
    first_ops = txns[0][1]
    assert isinstance(first_ops, tuple)
    assert [op.key for op in first_ops] == ["a/k"]
