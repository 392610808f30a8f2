"""A node serves watches as docs/protocol.md (*Watches*) says: one node, real sockets, turned by the test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq

from confmand.config import ClusterShape
from confmand.protocol.types import Version
from tests.server.node_harness import NodeHarness, single_node_config


class Inbox:
    """The harness's client, keeping every message by id: a watch streams between other replies."""

    def __init__(self, harness: NodeHarness) -> None:
        self.harness = harness
        self.unread: dict[int, list[dict[str, Any]]] = {}

    def read(self, request_id: int, count: int = 1, max_turns: int = 4000) -> list[dict[str, Any]]:
        """Turn the node until `count` messages under `request_id` arrived."""
        for _ in range(max_turns):
            if len(self.unread.get(request_id, [])) >= count:
                break
            self.harness.node.turn()
            while self.harness.client.poll(1):
                reply = msgpack.unpackb(self.harness.client.recv(), raw=False)
                self.unread.setdefault(reply["id"], []).append(reply)
        found = self.unread.get(request_id, [])
        if len(found) < count:
            raise AssertionError(f"{len(found)} of {count} messages under id {request_id}: {found}")
        self.unread[request_id] = found[count:]
        return found[:count]

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        return self.read(self.harness.send(op, **fields))[0]

    def put(self, key: str, value: bytes) -> str:
        reply = self.call("put", key=key, value=value)
        assert reply["ok"], reply
        version: str = reply["version"]
        return version


@pytest.fixture
def inbox(harness: NodeHarness) -> Inbox:
    return Inbox(harness)


def test_a_watch_opens_at_the_applied_version_then_tells_each_change_under_its_prefix(inbox: Inbox) -> None:
    applied = inbox.call("get", key="app/none")["applied"]
    watch = inbox.harness.send("watch", prefix="app/", progress_ms=10_000)
    [created] = inbox.read(watch)

    outside = inbox.put("other/k", b"no")
    version = inbox.put("app/k", b"yes")
    [told] = inbox.read(watch)

    assert (created["seq"], created["created"], created["events"]) == (1, True, [])
    assert created["progress"] == applied
    assert told["seq"] == 2
    [event] = told["events"]
    assert event == {"type": "put", "key": "app/k", "value": b"yes", "version": version, "hlc": event["hlc"]}
    assert Version.parse(told["progress"]) >= Version.parse(version) > Version.parse(outside)


def test_a_txn_s_changes_come_together_in_one_message(inbox: Inbox) -> None:
    watch = inbox.harness.send("watch", prefix="app/", progress_ms=10_000)
    inbox.read(watch)
    success = [
        {"op": "put", "key": "app/a", "value": b"1"},
        {"op": "put", "key": "app/b", "value": b"2"},
        {"op": "delete", "key": "app/a"},
    ]
    assert inbox.call("txn", compare=[], success=success)["ok"]

    [told] = inbox.read(watch)

    changes = [(e["type"], e["key"]) for e in told["events"]]
    assert changes == [("put", "app/a"), ("put", "app/b"), ("delete", "app/a")]
    assert len({e["version"] for e in told["events"]}) == 1
    assert "value" not in told["events"][2]


def test_a_watch_from_a_version_is_told_the_changes_after_it_first(inbox: Inbox) -> None:
    first = inbox.put("app/a", b"1")
    second = inbox.put("app/b", b"2")

    watch = inbox.harness.send("watch", prefix="app/", from_version=first)
    [created] = inbox.read(watch)

    assert [(e["key"], e["version"]) for e in created["events"]] == [("app/b", second)]


def test_an_idle_watch_gets_bookmarks_whose_progress_follows_the_applied_version(inbox: Inbox) -> None:
    watch = inbox.harness.send("watch", prefix="app/", progress_ms=10)
    inbox.read(watch)
    elsewhere = inbox.put("other/k", b"v")
    inbox.unread.pop(watch, None)

    bookmarks = inbox.read(watch, 2)

    assert all(m["events"] == [] for m in bookmarks)
    assert Version.parse(bookmarks[-1]["progress"]) >= Version.parse(elsewhere)
    assert bookmarks[1]["seq"] == bookmarks[0]["seq"] + 1


def test_a_watch_from_before_the_window_is_refused_COMPACTED_naming_the_oldest_version(
    tmp_path: Path,
) -> None:
    config = single_node_config(tmp_path / "data")
    h = NodeHarness(config)
    try:
        h.until_leader()
        for i in range(5):
            Inbox(h).put("app/k", str(i).encode())
        h.close()
        h = NodeHarness(config)  # a restarted node keeps no changes from before its start
        h.until_leader()

        reply = h.call("watch", prefix="app/", from_version="1:1")

        assert reply["error"]["code"] == "COMPACTED", reply
        oldest = reply["error"]["oldest"]
        assert Version.parse(oldest) > Version(1, 1)
        assert h.call("watch", prefix="app/", from_version=oldest)["ok"]
    finally:
        h.close()


def test_cancel_watch_stops_the_messages_and_says_whether_there_was_one(inbox: Inbox) -> None:
    watch = inbox.harness.send("watch", prefix="app/", progress_ms=10)
    inbox.read(watch)

    assert inbox.call("cancel_watch", watch_id=watch)["cancelled"] is True
    inbox.put("app/k", b"v")
    assert inbox.call("cancel_watch", watch_id=watch)["cancelled"] is False
    assert len(inbox.harness.node.watches) == 0


def test_a_watch_whose_client_went_away_is_dropped_at_its_next_message(harness: NodeHarness) -> None:
    other = harness.context.socket(zmq.DEALER)
    other.setsockopt(zmq.LINGER, 0)
    other.connect(harness.local.clients.bound_address)
    other.send(msgpack.packb({"v": 1, "id": 7, "op": "watch", "prefix": "app/", "progress_ms": 10}))
    harness.turn_until(lambda: len(harness.node.watches) == 1)
    other.close()

    harness.turn_until(lambda: len(harness.node.watches) == 0)

    assert harness.node.counters["watches_dropped_slow"] == 1


def test_a_spanning_watch_needs_its_shard_once_there_are_several(tmp_path: Path) -> None:
    h = NodeHarness(single_node_config(tmp_path / "data", cluster=ClusterShape(partitions=16, data_shards=2)))
    try:
        h.until_leader()

        refused = h.call("watch", prefix="")
        served = h.call("watch", prefix="", shard=2)

        assert refused["error"]["code"] == "INVALID_REQUEST"
        assert (served["ok"], served["shard"], served["created"]) == (True, 2, True)
    finally:
        h.close()


def test_bad_watch_requests_are_refused_with_the_field_named(harness: NodeHarness) -> None:
    for fields, named in (
        ({"progress_ms": 1}, "progress_ms"),
        ({"from_version": "x"}, "from_version"),
        ({"prefix": 5}, "prefix"),
    ):
        reply = harness.call("watch", **fields)
        assert reply["error"]["code"] == "INVALID_REQUEST", reply
        assert named in reply["error"]["message"]
    assert harness.call("cancel_watch")["error"]["code"] == "INVALID_REQUEST"
