"""Peer links: messages arrive tagged with their sender; nothing blocks; junk is dropped and counted."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import zmq

from confmand.transport.droplog import DropLog
from confmand.transport.peer import (
    PeerTransport,
    TransportClosedError,
    UnknownPeerError,
    routing_id,
)
from tests.unit.test_transport_support import WAIT_MS, context, drain_until, poll_until, wait_for_input

__all__ = ["context"]  # the fixture, re-exported for pytest

Context = zmq.Context[zmq.Socket[bytes]]
ANY_PORT = "tcp://127.0.0.1:*"


@pytest.fixture
def pair(context: Context) -> Iterator[tuple[PeerTransport, PeerTransport]]:
    """Nodes 1 and 2, linked over TCP on loopback."""
    one = PeerTransport(context, 1, ANY_PORT, {})
    two = PeerTransport(context, 2, ANY_PORT, {})
    one.add_peer(2, two.bound_address)
    two.add_peer(1, one.bound_address)
    yield one, two
    one.close()
    two.close()


def _send_until_delivered(
    sender: PeerTransport, receiver: PeerTransport, to: int, payload: bytes
) -> tuple[int, bytes]:
    """Send until it gets through (a fresh link drops sends until it is up), and receive it."""
    for _ in range(WAIT_MS // 200):
        sent = sender.send(to, payload)
        # The poll is also the pause between tries: it waits up to 200 ms for the message.
        if receiver.socket.poll(200, zmq.POLLIN) and sent:
            received = poll_until(receiver.socket, lambda: receiver.receive(100))
            assert received[-1][1] == payload
            return received[-1]
    pytest.fail("the peer link never came up")


def test_a_message_arrives_tagged_with_its_senders_node_id(pair: tuple[PeerTransport, PeerTransport]) -> None:
    one, two = pair
    assert _send_until_delivered(one, two, 2, b"hello") == (1, b"hello")
    assert two.counters.received >= 1
    assert one.counters.sent >= 1


def test_messages_flow_both_ways_in_order(pair: tuple[PeerTransport, PeerTransport]) -> None:
    one, two = pair
    _send_until_delivered(one, two, 2, b"first")
    assert _send_until_delivered(two, one, 1, b"back") == (2, b"back")
    for n in range(5):
        assert one.send(2, b"%d" % n)
    received = poll_until(two.socket, lambda: two.receive(100), want=5)
    assert received == [(1, b"0"), (1, b"1"), (1, b"2"), (1, b"3"), (1, b"4")]


def test_receive_returns_at_most_max_messages(pair: tuple[PeerTransport, PeerTransport]) -> None:
    one, two = pair
    _send_until_delivered(one, two, 2, b"x")
    for _ in range(4):
        assert one.send(2, b"y")
    wait_for_input(two.socket)
    assert len(two.receive(1)) == 1


def test_sending_to_an_unknown_node_is_a_typed_error(pair: tuple[PeerTransport, PeerTransport]) -> None:
    one, _ = pair
    with pytest.raises(UnknownPeerError, match="node 7 is not a remote peer of node 1"):
        one.send(7, b"x")


def test_a_send_to_a_peer_that_is_down_is_dropped_at_once(context: Context) -> None:
    # Nothing listens on this port: its listener's context is terminated, which closes it for good
    # (a plain close() is asynchronous). IMMEDIATE keeps nothing queued for a dead peer.
    probe_context: Context = zmq.Context()
    probe = probe_context.socket(zmq.ROUTER)
    probe.bind(ANY_PORT)
    dead_address = probe.getsockopt_string(zmq.LAST_ENDPOINT)
    probe.close(linger=0)
    probe_context.term()
    one = PeerTransport(context, 1, ANY_PORT, {2: dead_address})
    assert [one.send(2, b"x") for _ in range(3)] == [False, False, False]
    assert one.counters.dropped_full == 3
    one.close()


def test_a_full_queue_drops_without_blocking(context: Context) -> None:
    slow = PeerTransport(context, 2, "inproc://slow", {}, receive_hwm=5)
    fast = PeerTransport(context, 1, "inproc://fast", {2: "inproc://slow"}, send_hwm=5)
    results = [fast.send(2, b"x") for _ in range(100)]
    assert results[0] is True
    assert False in results
    assert fast.counters.sent + fast.counters.dropped_full == 100
    fast.close()
    slow.close()


def test_input_from_an_unknown_routing_id_is_dropped_and_counted(
    context: Context, pair: tuple[PeerTransport, PeerTransport], caplog: pytest.LogCaptureFixture
) -> None:
    _, two = pair
    rogue = context.socket(zmq.DEALER)
    rogue.setsockopt(zmq.ROUTING_ID, routing_id(9))
    rogue.connect(two.bound_address)
    rogue.send(b"let me in")
    received: list[tuple[int, bytes]] = []
    with caplog.at_level(logging.WARNING):
        drain_until(
            two.socket, lambda: received.extend(two.receive(10)), lambda: two.counters.dropped_unknown > 0
        )
    assert received == []
    assert two.counters.dropped_unknown == 1
    assert "unknown routing id b'node:9'" in caplog.text
    rogue.close(linger=0)


def test_input_with_the_wrong_frame_count_is_dropped_and_counted(
    context: Context, pair: tuple[PeerTransport, PeerTransport]
) -> None:
    _, two = pair
    impostor = context.socket(zmq.DEALER)
    impostor.setsockopt(zmq.ROUTING_ID, routing_id(1))
    impostor.connect(two.bound_address)
    impostor.send_multipart([b"a", b"b"])
    drain_until(two.socket, lambda: two.receive(10), lambda: two.counters.dropped_malformed > 0)
    assert two.counters.received == 0
    impostor.close(linger=0)


def test_a_restarted_peer_is_reached_again_at_the_same_address(context: Context) -> None:
    # Node 2 gets a context of its own, terminated like a process that exits: that frees its port at once.
    doomed: Context = zmq.Context()
    two = PeerTransport(doomed, 2, ANY_PORT, {})
    address = two.bound_address
    one = PeerTransport(context, 1, ANY_PORT, {2: address})
    two.add_peer(1, one.bound_address)
    _send_until_delivered(one, two, 2, b"before")
    two.close()
    doomed.term()
    reborn = PeerTransport(context, 2, address, {1: one.bound_address})
    assert _send_until_delivered(one, reborn, 2, b"after") == (1, b"after")
    one.close()
    reborn.close()


def test_a_removed_peer_can_no_longer_be_sent_to(pair: tuple[PeerTransport, PeerTransport]) -> None:
    one, _ = pair
    one.remove_peer(2)
    assert one.peer_ids == frozenset()
    with pytest.raises(UnknownPeerError):
        one.send(2, b"x")


def test_adding_this_node_or_a_duplicate_peer_is_refused(pair: tuple[PeerTransport, PeerTransport]) -> None:
    one, _ = pair
    with pytest.raises(ValueError, match="is this node"):
        one.add_peer(1, "tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="already a peer"):
        one.add_peer(2, "tcp://127.0.0.1:1")


def test_the_configured_address_of_this_node_is_ignored(context: Context) -> None:
    one = PeerTransport(context, 1, ANY_PORT, {1: "tcp://127.0.0.1:1", 2: "tcp://127.0.0.1:2"})
    assert one.peer_ids == frozenset({2})
    one.close()


def test_a_closed_transport_says_so_and_closes_twice_harmlessly(context: Context) -> None:
    one = PeerTransport(context, 1, ANY_PORT, {2: "tcp://127.0.0.1:2"})
    one.close()
    one.close()
    with pytest.raises(TransportClosedError):
        one.receive(1)
    with pytest.raises(TransportClosedError):
        one.send(2, b"x")


def test_a_bad_bind_address_raises_and_leaks_no_socket(context: Context) -> None:
    with pytest.raises(zmq.ZMQError):
        PeerTransport(context, 1, "bogus://nowhere", {2: "tcp://127.0.0.1:2"})


def test_the_drop_log_is_rate_limited_and_reports_what_it_suppressed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    drops = DropLog(logging.getLogger("test.drops"), burst=2, interval_s=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING):
        for n in range(50):
            drops.warning("junk %d", n)
        assert drops.suppressed == 48
        now[0] = 10.0
        drops.warning("junk again")
    assert [r.getMessage() for r in caplog.records] == [
        "junk 0",
        "junk 1",
        "junk again (48 similar messages suppressed)",
    ]
