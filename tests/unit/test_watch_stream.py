"""ShardStream, the client's sans-I/O watch of one shard: where it opens again, and from where."""

from __future__ import annotations

from typing import Any

import msgpack

from confctl.client.errors import Compacted, InvalidRequest
from confctl.client.sync import new_core
from confctl.client.watch_stream import Cancel, Ended, Open, ShardStream, Told
from confmand.protocol.types import Version

NODES = ["tcp://n1:1", "tcp://n2:1", "tcp://n3:1"]


def stream(prefix: str = "app/", after: Version | None = None) -> ShardStream:
    return ShardStream(new_core(NODES, 5.0, None, None, True), prefix, None, after, 100)


def opened(actions: list[Any]) -> Open:
    assert isinstance(actions[-1], Open), actions
    return actions[-1]


def request_of(action: Open | Cancel) -> dict[str, Any]:
    fields: dict[str, Any] = msgpack.unpackb(action.frame, raw=False)
    return fields


def message(
    request_id: int, seq: int, progress: str, events: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {"v": 1, "id": request_id, "ok": True, "node": 1, "shard": None, "seq": seq,
            "progress": progress, "events": events or []}  # fmt: skip


def error(request_id: int, code: str, retryable: bool, **extra: Any) -> dict[str, Any]:
    body = {"code": code, "message": code.lower(), "retryable": retryable, **extra}
    return {"v": 1, "id": request_id, "ok": False, "node": 1, "error": body}


def test_the_first_open_asks_from_the_given_version_and_batches_move_the_progress() -> None:
    s = stream(after=Version(2, 10))
    first = opened(s.start(0.0))
    event = {"type": "put", "key": "app/a", "value": b"1", "version": "2:11", "hlc": 5}

    actions = s.on_reply(message(first.request_id, 1, "2:12", [event]), 0.1)

    assert request_of(first)["from_version"] == "2:10"
    assert isinstance(actions[0], Told)
    assert [e.key for e in actions[0].batch.events] == ["app/a"]
    assert s.after == Version(2, 12)


def test_a_silent_node_is_cancelled_and_the_watch_opens_at_the_next_from_its_progress() -> None:
    s = stream()
    first = opened(s.start(0.0))
    s.on_reply(message(first.request_id, 1, "3:40"), 0.1)

    cancel, reopen = s.on_silence(5.0)

    assert isinstance(cancel, Cancel)
    assert (cancel.endpoint, request_of(cancel)["watch_id"]) == (first.endpoint, first.request_id)
    assert isinstance(reopen, Open)
    assert reopen.endpoint != first.endpoint
    assert request_of(reopen)["from_version"] == "3:40"
    assert s.resumes == 1


def test_a_skipped_message_resumes_from_the_last_progress_told() -> None:
    s = stream()
    first = opened(s.start(0.0))
    s.on_reply(message(first.request_id, 1, "3:40"), 0.1)

    actions = s.on_reply(message(first.request_id, 3, "3:50"), 0.2)

    assert not any(isinstance(a, Told) for a in actions)
    assert request_of(opened(actions))["from_version"] == "3:40"


def test_a_slow_watcher_end_opens_again_from_its_progress() -> None:
    s = stream()
    first = opened(s.start(0.0))
    s.on_reply(message(first.request_id, 1, "3:40"), 0.1)

    actions = s.on_reply(error(first.request_id, "SLOW_WATCHER", True, progress="3:40"), 0.2)

    assert request_of(opened(actions))["from_version"] == "3:40"
    assert opened(actions).delay_s == 0.0


def test_compacted_tries_every_other_replica_before_it_ends_the_watch() -> None:
    s = stream(after=Version(1, 1))
    attempt = opened(s.start(0.0))
    endpoints = []
    for _ in NODES[:-1]:
        endpoints.append(attempt.endpoint)
        attempt = opened(s.on_reply(error(attempt.request_id, "COMPACTED", False, oldest="2:9"), 0.1))
    endpoints.append(attempt.endpoint)

    [ended] = s.on_reply(error(attempt.request_id, "COMPACTED", False, oldest="2:9"), 0.2)

    assert sorted(endpoints) == sorted(NODES)
    assert isinstance(ended, Ended)
    assert isinstance(ended.error, Compacted)
    assert ended.error.oldest == Version(2, 9)


def test_a_namespace_that_moved_to_another_shard_ends_the_watch_compacted() -> None:
    s = ShardStream(new_core(NODES, 5.0, None, None, True), "app/", 1, None, 100)
    first = opened(s.start(0.0))

    [ended] = s.on_reply(error(first.request_id, "WRONG_SHARD", True, shard=3, epoch=7), 0.1)

    assert isinstance(ended, Ended)
    assert isinstance(ended.error, Compacted)
    assert "shard 3" in ended.error.message


def test_a_request_the_node_refuses_for_good_ends_the_watch() -> None:
    s = stream()
    first = opened(s.start(0.0))

    [ended] = s.on_reply(error(first.request_id, "INVALID_REQUEST", False), 0.1)

    assert isinstance(ended, Ended)
    assert isinstance(ended.error, InvalidRequest)


def test_once_every_node_was_tried_without_a_message_each_open_waits_a_backoff() -> None:
    s = stream()
    s.start(0.0)
    delays = [opened(s.on_silence(float(n))).delay_s for n in range(1, 6)]

    assert delays[:2] == [0.0, 0.0]
    assert all(d > 0 for d in delays[2:])


def test_close_cancels_only_a_watch_that_was_open() -> None:
    s = stream()
    first = opened(s.start(0.0))
    assert s.close() == []
    s.on_reply(message(first.request_id, 1, "1:1"), 0.1)

    [cancel] = s.close()

    assert isinstance(cancel, Cancel)
    assert request_of(cancel)["watch_id"] == first.request_id


def test_compacted_somewhere_and_silence_elsewhere_ends_the_watch_after_two_rounds() -> None:
    s = stream(after=Version(1, 1))
    attempt = opened(s.start(0.0))
    actions = s.on_reply(error(attempt.request_id, "COMPACTED", False, oldest="2:9"), 0.1)
    rounds = 0
    while isinstance(actions[-1], Open):
        actions = s.on_silence(float(rounds))
        rounds += 1
        assert rounds < 20, "the stream never gave up"

    assert isinstance(actions[-1], Ended)
    assert isinstance(actions[-1].error, Compacted)
    assert rounds >= 2 * (len(NODES) - 1) - 1
