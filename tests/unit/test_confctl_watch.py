"""`confctl watch`: one line per change as it comes, JSON lines with -o json, --count, --progress."""

from __future__ import annotations

from confctl.client import Compacted, Version, WatchBatch, WatchEvent
from confctl.exit_codes import ExitCode
from tests.unit.confctl_fake import Harness


def batch(progress: int, *events: WatchEvent, shard: int = 1) -> WatchBatch:
    return WatchBatch(events, Version(2, progress), shard, node_id=1)


def change(index: int, key: str, value: bytes | None) -> WatchEvent:
    return WatchEvent("put" if value is not None else "delete", key, value, Version(2, index), 99, 1)


def test_each_change_is_one_line_with_its_version_type_key_and_value(cli: Harness) -> None:
    cli.client.watched = [
        batch(5),
        batch(7, change(6, "app/a", b"1"), change(7, "app/b", b"\xff")),
        batch(8, change(8, "app/a", None)),
    ]

    result = cli.run("watch", "app/", "--from-version", "2:5", "--progress-ms", "200")

    assert result.code == ExitCode.OK
    assert result.out.splitlines() == [
        "2:6  put  app/a  1",
        "2:7  put  app/b  base64:/w==",
        "2:8  delete  app/a  -",
    ]
    assert cli.client.calls[-1] == ("watch", ("app/", "2:5", 200))


def test_json_lines_carry_every_field_and_count_stops_after_that_many_changes(cli: Harness) -> None:
    cli.client.watched = [
        batch(7, change(6, "app/a", b"1"), change(7, "app/b", b"2")),
        batch(9, change(9, "x/y", b"3")),
    ]

    lines = cli.run("watch", "-o", "json", "--count", "2").json()

    assert [line["key"] for line in lines] == ["app/a", "app/b"]
    assert lines[0] == {
        "type": "put",
        "key": "app/a",
        "value": "1",
        "value_encoding": "utf-8",
        "version": "2:6",
        "shard": 1,
        "hlc": 99,
    }


def test_progress_prints_how_far_each_shard_was_told(cli: Harness) -> None:
    cli.client.watched = [batch(5, shard=1), batch(9, shard=2)]

    out = cli.run("watch", "--progress").out.splitlines()

    assert out == ["# shard 1 told up to 2:5", "# shard 2 told up to 2:9"]


def test_a_watch_that_cannot_go_on_exits_rejected_saying_why(cli: Harness) -> None:
    cli.client.fail = Compacted("the oldest version here is 3:40", oldest=Version(3, 40))

    result = cli.run("watch", "app/", "--from-version", "1:1")

    assert result.code == ExitCode.REJECTED
    assert "COMPACTED" in result.err
    assert "3:40" in result.err
