"""The client socket: envelopes come back intact, junk is dropped and counted, nothing blocks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import zmq

from confmand.transport.client import ClientTransport
from confmand.transport.peer import TransportClosedError
from tests.unit.test_transport_support import context, drain_until, poll_until, wait_for_input

__all__ = ["context"]  # the fixture, re-exported for pytest

Context = zmq.Context[zmq.Socket[bytes]]


@pytest.fixture
def server(context: Context) -> Iterator[ClientTransport]:
    transport = ClientTransport(context, "tcp://127.0.0.1:*", max_frames=4, max_message_bytes=1024)
    yield transport
    transport.close()


def _client(context: Context, server: ClientTransport, kind: int = zmq.DEALER) -> zmq.Socket[bytes]:
    sock: zmq.Socket[bytes] = context.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.bound_address)
    return sock


def test_a_dealer_request_is_received_and_answered(context: Context, server: ClientTransport) -> None:
    client = _client(context, server)
    client.send(b"request")
    ((envelope, payload),) = poll_until(server.socket, lambda: server.receive(10))
    assert payload == b"request"
    assert len(envelope) == 1  # the routing id alone
    assert server.reply(envelope, b"reply")
    wait_for_input(client)
    assert client.recv() == b"reply"
    assert (server.counters.received, server.counters.replied) == (1, 1)


def test_a_req_client_gets_its_empty_delimiter_back(context: Context, server: ClientTransport) -> None:
    client = _client(context, server, zmq.REQ)
    client.send(b"request")
    ((envelope, payload),) = poll_until(server.socket, lambda: server.receive(10))
    assert payload == b"request"
    assert envelope[1:] == [b""]
    assert server.reply(envelope, b"reply")
    wait_for_input(client)
    assert client.recv() == b"reply"


def test_pipelined_requests_each_keep_their_own_envelope(context: Context, server: ClientTransport) -> None:
    first, second = _client(context, server), _client(context, server)
    first.send(b"1")
    second.send(b"2")
    received = poll_until(server.socket, lambda: server.receive(10), want=2)
    for envelope, payload in received:
        server.reply(envelope, payload + b"!")
    for sock, want in ((first, b"1!"), (second, b"2!")):
        wait_for_input(sock)
        assert sock.recv() == want


def test_a_request_with_too_many_frames_is_dropped(context: Context, server: ClientTransport) -> None:
    client = _client(context, server)
    client.send_multipart([b"a", b"b", b"c", b"d"])  # five frames with the routing id
    drain_until(
        server.socket, lambda: server.receive(10), lambda: server.counters.dropped_too_many_frames > 0
    )
    assert server.counters.received == 0


def test_a_request_over_the_size_limit_is_dropped(context: Context, server: ClientTransport) -> None:
    client = _client(context, server)
    client.send_multipart([b"x" * 600, b"y" * 600])  # each frame fits, the whole does not
    drain_until(server.socket, lambda: server.receive(10), lambda: server.counters.dropped_too_large > 0)
    assert server.counters.received == 0


def test_a_reply_to_a_vanished_client_is_dropped_without_blocking(server: ClientTransport) -> None:
    assert server.reply([b"\x00gone"], b"reply") is False
    assert server.counters.dropped_unroutable == 1


def test_a_reply_needs_an_envelope(server: ClientTransport) -> None:
    with pytest.raises(ValueError, match="envelope"):
        server.reply([], b"reply")


def test_a_closed_transport_says_so(context: Context) -> None:
    transport = ClientTransport(context, "tcp://127.0.0.1:*")
    transport.close()
    transport.close()
    with pytest.raises(TransportClosedError):
        transport.receive(1)
    with pytest.raises(TransportClosedError):
        transport.reply([b"id"], b"x")


def test_nonsense_limits_are_refused(context: Context) -> None:
    with pytest.raises(ValueError, match="max_frames"):
        ClientTransport(context, "tcp://127.0.0.1:*", max_frames=1)
