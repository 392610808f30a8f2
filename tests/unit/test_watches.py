"""WatchHub: which message each watch gets, and when a watch ends (fake replicas, a fake socket)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import pytest

from confmand.kv.store import ChangeEvent
from confmand.protocol.errors import ErrorCode
from confmand.protocol.types import Version
from confmand.server.errors import RequestError
from confmand.server.pending import ClientSink, Reply
from confmand.server.requests import Common, WatchRequest
from confmand.server.watch_window import EventWindow
from confmand.server.watches import CHUNK_EVENTS, WatchHub


class FakeReplica:
    def __init__(self, shard_id: int = 1) -> None:
        self.shard_id = shard_id
        self.window = EventWindow(Version(1, 0))
        self.owned = True

    def token_mismatch(self, token: Version) -> str | None:
        return None

    def refuse_unowned(self, keys: Iterable[str]) -> None:
        if not self.owned:
            raise RequestError(ErrorCode.WRONG_SHARD, "moved", shard=2)

    def apply(self, *events: ChangeEvent) -> None:
        top = max([self.window.top.index, *(e[0] for e in events)])
        self.window.extend(list(events), Version(1, top))


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[Reply] = []
        self.refusing = False

    def send(self, reply: Reply) -> bool:
        if self.refusing:
            return False
        self.sent.append(reply)
        return True


def put(index: int, key: str) -> ChangeEvent:
    return (index, 1, "put", key, b"v", index)


def watch_request(prefix: str, from_version: Version | None = None, watch_id: int = 9) -> WatchRequest:
    return WatchRequest(Common(watch_id, "watch", None, "anonymous", None), prefix, from_version, 100)


def code_and_extra(reply: Reply) -> tuple[ErrorCode | None, dict[str, object]]:
    return (None, {}) if reply.error is None else (reply.error.code, reply.error.extra)


SINK = ClientSink((b"client",), 0.0)


@pytest.fixture
def socket() -> FakeSocket:
    return FakeSocket()


@pytest.fixture
def hub(socket: FakeSocket) -> WatchHub:
    return WatchHub(max_watches=3, send=socket.send, counters=defaultdict(int))


def test_a_watch_far_behind_catches_up_a_chunk_a_turn(hub: WatchHub, socket: FakeSocket) -> None:
    replica = FakeReplica()
    replica.window.max_events = 10 * CHUNK_EVENTS
    replica.apply(*(put(i, f"app/{i}") for i in range(1, 2 * CHUNK_EVENTS + 2)))
    hub.open(replica, watch_request("app/", Version(1, 0)), SINK, now=0.0)

    hub.deliver({1: replica}, now=0.0)
    first = socket.sent[-1].fields
    assert hub.has_due()
    hub.deliver({1: replica}, now=0.0)
    hub.deliver({1: replica}, now=0.0)

    assert len(first["events"]) == CHUNK_EVENTS  # type: ignore[arg-type]
    assert first["progress"] == f"1:{CHUNK_EVENTS}"
    assert socket.sent[-1].fields["progress"] == f"1:{2 * CHUNK_EVENTS + 1}"
    assert sum(len(r.fields["events"]) for r in socket.sent) == 2 * CHUNK_EVENTS + 1  # type: ignore[arg-type,misc]
    assert not hub.has_due()


def test_a_watch_whose_messages_are_refused_ends_and_is_told_SLOW_WATCHER_once_it_can_be(
    hub: WatchHub, socket: FakeSocket
) -> None:
    replica = FakeReplica()
    hub.open(replica, watch_request("app/"), SINK, now=0.0)
    hub.deliver({1: replica}, now=0.0)
    socket.refusing = True

    replica.apply(put(1, "app/a"))
    hub.applied(1)
    hub.deliver({1: replica}, now=1.0)
    socket.refusing = False
    hub.deliver({1: replica}, now=2.0)

    assert len(hub) == 0
    assert code_and_extra(socket.sent[-1]) == (ErrorCode.SLOW_WATCHER, {"progress": "1:0"})


def test_a_snapshot_installed_past_a_watch_ends_it_COMPACTED(hub: WatchHub, socket: FakeSocket) -> None:
    replica = FakeReplica()
    hub.open(replica, watch_request("app/"), SINK, now=0.0)
    hub.deliver({1: replica}, now=0.0)

    replica.window.reset(Version(3, 500))
    hub.applied(1)
    hub.deliver({1: replica}, now=0.0)

    assert code_and_extra(socket.sent[-1]) == (ErrorCode.COMPACTED, {"oldest": "3:500"})
    assert len(hub) == 0


def test_a_namespaced_watch_ends_WRONG_SHARD_once_caught_up_after_its_namespace_moved(
    hub: WatchHub, socket: FakeSocket
) -> None:
    replica = FakeReplica()
    hub.open(replica, watch_request("app/"), SINK, now=0.0)
    hub.deliver({1: replica}, now=0.0)

    replica.apply(put(1, "app/last"))
    replica.owned = False
    hub.moves_changed(1)
    hub.deliver({1: replica}, now=0.0)

    told, ended = socket.sent[-2:]
    assert [e["key"] for e in told.fields["events"]] == ["app/last"]  # type: ignore[attr-defined]
    assert code_and_extra(ended) == (ErrorCode.WRONG_SHARD, {"shard": 2, "progress": "1:1"})


def test_a_node_refuses_watches_past_max_watches_OVERLOADED(hub: WatchHub) -> None:
    replica = FakeReplica()
    for watch_id in range(3):
        hub.open(replica, watch_request("", watch_id=watch_id), SINK, now=0.0)

    with pytest.raises(RequestError) as refused:
        hub.open(replica, watch_request("", watch_id=99), SINK, now=0.0)

    assert refused.value.code is ErrorCode.OVERLOADED


def test_a_watch_of_a_replica_that_left_the_node_ends_WRONG_SHARD(hub: WatchHub, socket: FakeSocket) -> None:
    replica = FakeReplica()
    hub.open(replica, watch_request(""), SINK, now=0.0)
    hub.deliver({1: replica}, now=0.0)

    hub.deliver({}, now=5.0)  # a bookmark was due, and the replica is gone

    assert code_and_extra(socket.sent[-1])[0] is ErrorCode.WRONG_SHARD


def test_caught_up_watches_are_sent_only_the_changes_under_their_prefix(
    hub: WatchHub, socket: FakeSocket
) -> None:
    replica = FakeReplica()
    hub.max_watches = 10
    for watch_id, prefix in enumerate(("app/", "app/db/", "other/", "", "ap")):
        hub.open(replica, watch_request(prefix, watch_id=watch_id), SINK, now=0.0)
    hub.deliver({1: replica}, now=0.0)
    socket.sent.clear()

    replica.apply(put(1, "app/db/url"), put(2, "app/x"), put(3, "apple/y"))
    hub.applied(1)
    hub.deliver({1: replica}, now=0.0)

    told = {r.request_id: [e["key"] for e in r.fields["events"]] for r in socket.sent}  # type: ignore[attr-defined]
    assert told == {
        0: ["app/db/url", "app/x"],
        1: ["app/db/url"],
        3: ["app/db/url", "app/x", "apple/y"],
        4: ["app/db/url", "app/x", "apple/y"],
    }
    assert {r.fields["progress"] for r in socket.sent} == {"1:3"}


def test_watches_of_a_replica_opened_anew_behind_them_wait_instead_of_being_told_again(
    hub: WatchHub, socket: FakeSocket
) -> None:
    replica = FakeReplica()
    replica.apply(put(1, "app/a"), put(2, "app/b"))
    hub.open(replica, watch_request("app/", Version(1, 0)), SINK, now=0.0)
    hub.deliver({1: replica}, now=0.0)
    told = len(socket.sent[-1].fields["events"])  # type: ignore[arg-type]

    again = FakeReplica()  # the same shard's replica, started anew at an older applied version
    again.apply(put(1, "app/a"))
    hub.applied(1)
    hub.deliver({1: again}, now=0.5)
    again.apply(put(2, "app/b"), put(3, "app/c"))
    hub.applied(1)
    hub.deliver({1: again}, now=0.6)

    later = [e["key"] for r in socket.sent[1:] for e in r.fields["events"]]  # type: ignore[attr-defined]
    assert told == 2
    assert later == ["app/c"]
