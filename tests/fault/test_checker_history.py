"""The history record: ops validate themselves, histories partition by key and survive JSON lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fault.history import History, HistoryError, Op


def sample() -> History:
    return History(
        [
            Op(1, "put", "a", "v1", 0, 10, "ok", version="2:7"),
            Op(2, "cas", "b", (None, "v2"), 5, 15, "ok", True, "2:8"),
            Op(3, "cas", "a", ("v1", "v3"), 6, None, "unknown"),
            Op(4, "get", "a", None, 20, 30, "ok", None),
            Op(5, "add", "s", ("nested", 3, False), 21, 31, "fail"),
        ]
    )


def test_a_history_round_trips_through_json_lines_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"

    sample().save(path)

    assert History.load(path) == sample()
    assert History.load(path)[1].input == (None, "v2")  # tuples come back as tuples


def test_by_key_keeps_each_keys_ops_in_order() -> None:
    parts = sample().by_key()

    assert list(parts) == ["a", "b", "s"]
    assert [op.process for op in parts["a"]] == [1, 3, 4]


def test_only_keeps_the_named_kinds() -> None:
    assert [op.kind for op in sample().only({"get", "put"})] == ["put", "get"]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Op(1, "put", "k", "v", 5, 4, "ok"), "return_ns 4 is not an int >= call_ns 5"),
        (lambda: Op(1, "put", "k", "v", 5, None, "ok"), "needs a return_ns"),
        (lambda: Op(1, "put", "k", "v", 5, 6, "maybe"), "outcome must be one of"),  # type: ignore[arg-type]
        (lambda: Op(1, "get", "k", None, 5, None, "unknown", "v"), "an unknown op has no output"),
        (lambda: Op(1, "put", "k", b"v", 5, 6, "ok"), "bytes is not a history value"),  # type: ignore[arg-type]
        (lambda: Op(1, "", "k", "v", 5, 6, "ok"), "kind must be a non-empty str"),
    ],
)
def test_a_malformed_op_is_refused_with_a_message_naming_it(build: object, message: str) -> None:
    assert callable(build)
    with pytest.raises(HistoryError, match=message):
        build()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json\n", "line 1: not JSON"),
        ("[1, 2]\n", "line 1: an op is a JSON object"),
        ('{"process": 1}\n', "line 1: bad fields"),
        (
            sample().to_jsonl() + '{"process": 1, "kind": "put", "key": "k", "input": 1.5, "call_ns": 0, '
            '"return_ns": 1, "outcome": "ok"}\n',
            "line 6: a float is not a history value",
        ),
    ],
)
def test_a_bad_history_file_is_refused_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(HistoryError, match=message):
        History.from_jsonl(text)


def test_blank_lines_in_a_history_file_are_skipped() -> None:
    assert History.from_jsonl("\n" + sample().to_jsonl() + "\n\n") == sample()


def test_an_op_describes_itself_on_one_line() -> None:
    assert sample()[1].describe() == "p2 cas(None->'v2') -> True ok [5, 15]"
    assert sample()[2].describe() == "p3 cas('v1'->'v3') unknown [6, ?]"
    assert sample()[3].describe() == "p4 get() -> None ok [20, 30]"
