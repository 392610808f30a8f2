"""`confctl export PREFIX` and `confctl import FILE`: keys to a JSON or YAML document and back.

The document's format, and how an import is planned, are confctl/transfer.py's. An export of a
prefix within one namespace reads every page at the version its first page was read at (`list`
at a version: docs/protocol.md, *Reading the past*), so the document is one consistent state of
that shard; a prefix across namespaces is read page by page from each shard. An import prints
what it changes (`+` added, `~` changed, `-` removed with --prune), then, unless --dry-run,
writes each namespace's changes as one transaction pinned to the versions it read: a namespace
that changed meanwhile is left as it was, and the exit code is 4 (compare failed: run it again).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from confctl.commands.common import Env, UsageProblem, command
from confctl.exit_codes import ExitCode

if TYPE_CHECKING:
    from confctl.transfer import Change, Current, Document

PAGE = 1000
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="json or yaml.")]
FileArg = Annotated[
    Path, typer.Argument(metavar="FILE", help="A document confctl export wrote ('-': stdin).")
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show what would change; write nothing.")]


@command
def export(
    env: Env,
    prefix: Annotated[str, typer.Argument(help="Every key under it ('' for all).", show_default=False)],
    *,
    fmt: FormatOpt = "json",
    out: Annotated[Path | None, typer.Option("--out", help="Write to this file (default: stdout).")] = None,
) -> None:
    """Write every key under PREFIX, with its value, as a JSON or YAML document."""
    from confctl.transfer import Document  # noqa: PLC0415  (lazy, as the client is)

    keys, versions = _read_prefix(env, prefix)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = _dump(Document(prefix, keys, versions, stamp).to_plain(), _format(fmt))
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)
        env.renderer.note(f"{len(keys)} keys under {prefix!r} written to {out}")


@command
def import_(
    env: Env,
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="A document confctl export wrote ('-': stdin).")
    ],
    *,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; write nothing.")
    ] = False,
    prune: Annotated[
        bool, typer.Option("--prune", help="Also delete keys under the document's prefix it does not list.")
    ] = False,
) -> ExitCode:
    """Make the keys under the document's prefix what FILE says, one transaction per namespace."""
    from confctl.transfer import DocumentError, document_from_plain, plan  # noqa: PLC0415

    text = sys.stdin.read() if str(file) == "-" else _read(file)
    try:
        document = document_from_plain(_load(text, file))
    except DocumentError as exc:
        raise UsageProblem(f"{file}: {exc}") from exc
    current = _current(env, document)
    changes = plan(document, current, prune)
    rows = [{"op": c.op, "key": c.key, "namespace": ns} for ns, cs in sorted(changes.items()) for c in cs]
    env.renderer.rows(rows, ["op", "key"])
    if not rows:
        env.renderer.note("nothing to change")
        return ExitCode.OK
    if dry_run:
        env.renderer.note(f"{len(rows)} changes in {len(changes)} namespaces (dry run: nothing written)")
        return ExitCode.OK
    failed = [ns for ns, cs in sorted(changes.items()) if not _apply(env, cs)]
    if failed:
        env.renderer.error(
            f"namespaces changed during the import, left as they were: {', '.join(failed)} (run it again)"
        )
        return ExitCode.COMPARE_FAILED
    env.renderer.note(f"{len(rows)} changes written in {len(changes)} namespaces")
    return ExitCode.OK


def _apply(env: Env, changes: list[Change]) -> bool:
    """One namespace's changes as one transaction; whether its compares held (it was written)."""
    from confctl.client.types import ABSENT, Compare, TxnOp, Version  # noqa: PLC0415

    compare = [
        Compare(c.key, "version", version=ABSENT if c.expected is None else Version.parse(c.expected))
        for c in changes
    ]
    ops = [TxnOp("delete", c.key) if c.value is None else TxnOp("put", c.key, c.value) for c in changes]
    return env.client.txn(compare, ops).succeeded


def _read_prefix(env: Env, prefix: str) -> tuple[dict[str, bytes], dict[str, str]]:
    """Every key under `prefix` and, per shard, the version it was read at."""
    client = env.client
    keys: dict[str, bytes] = {}
    versions: dict[str, str] = {}
    first = client.list(prefix, limit=PAGE)
    keys.update((i.key, i.value or b"") for i in first.items)
    at = first.meta.applied
    if first.meta.shard is not None and at is not None:
        versions[str(first.meta.shard)] = str(at)
    more, after = first.more, first.next
    while more:
        if "/" in prefix and at is not None:  # one shard: the rest at the first page's version
            past = client.list_at(prefix, at, after=after, limit=PAGE)
            keys.update((i.key, i.value or b"") for i in past.items)
            more, after = past.more, past.next
        else:
            page = client.list(prefix, after=after, limit=PAGE)
            keys.update((i.key, i.value or b"") for i in page.items)
            more, after = page.more, page.next
    return keys, versions


def _current(env: Env, document: Document) -> dict[str, Current]:
    """What the cluster holds now of the keys the import may touch."""
    from confctl.client.errors import NotFound  # noqa: PLC0415
    from confctl.transfer import Current  # noqa: PLC0415

    client = env.client
    found: dict[str, Current] = {}
    after: str | None = None
    while True:
        page = client.list(document.prefix, after=after, limit=PAGE)
        found.update((i.key, Current(i.value or b"", str(i.version))) for i in page.items)
        if not page.more:
            break
        after = page.next
    for key in document.keys:
        if key not in found and "/" not in key:  # a bare namespace key: a list of its prefix may miss it
            try:
                got = client.get(key)
            except NotFound:
                continue
            found[key] = Current(got.value, str(got.version))
    return found


def _format(text: str) -> str:
    if text not in ("json", "yaml"):
        raise UsageProblem(f"--format: json or yaml, not {text!r}")
    return text


def _dump(doc: dict[str, object], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    import yaml  # noqa: PLC0415  (only an export to YAML needs it)

    dumped: str = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    return dumped


def _load(text: str, file: Path) -> object:
    """JSON if it parses as JSON, else YAML (JSON is YAML too, but the JSON parser says more)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    import yaml  # noqa: PLC0415

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageProblem(f"{file}: neither JSON nor YAML: {exc}") from exc


def _read(file: Path) -> str:
    try:
        return file.read_text()
    except OSError as exc:
        raise UsageProblem(f"cannot read {file}: {exc.strerror}") from exc


def register(app: typer.Typer) -> None:
    app.command("export")(export)
    app.command("import")(import_)
