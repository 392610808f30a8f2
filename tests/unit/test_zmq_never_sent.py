"""What docs/protocol.md tells a client about knowing a request was never sent holds for ZeroMQ.

By default a DEALER queues for a connection that is not up and `send` succeeds; with
ZMQ_IMMEDIATE it queues only on completed connections, so a DONTWAIT send to a node
that is down raises EAGAIN: the request went nowhere.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import zmq

from confmand.local_cluster import free_ports


@pytest.fixture
def context() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield ctx
    ctx.term()


def dealer(context: zmq.Context[zmq.Socket[bytes]], address: str, immediate: bool) -> zmq.Socket[bytes]:
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IMMEDIATE, 1 if immediate else 0)
    sock.connect(address)
    return sock


def test_by_default_a_send_to_a_node_that_is_down_succeeds_and_only_queues(
    context: zmq.Context[zmq.Socket[bytes]],
) -> None:
    sock = dealer(context, f"tcp://127.0.0.1:{free_ports(1)[0]}", immediate=False)
    try:
        sock.send(b"request", zmq.DONTWAIT)  # no error: nothing tells us it went nowhere
    finally:
        sock.close()


def test_with_immediate_a_send_to_a_node_that_is_down_is_refused_so_it_was_never_sent(
    context: zmq.Context[zmq.Socket[bytes]],
) -> None:
    sock = dealer(context, f"tcp://127.0.0.1:{free_ports(1)[0]}", immediate=True)
    try:
        assert sock.poll(200, zmq.POLLOUT) == 0  # no completed connection to queue on
        with pytest.raises(zmq.Again):
            sock.send(b"request", zmq.DONTWAIT)
    finally:
        sock.close()


def test_with_immediate_a_live_node_becomes_writable_once_connected(
    context: zmq.Context[zmq.Socket[bytes]],
) -> None:
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    sock = dealer(context, f"tcp://127.0.0.1:{port}", immediate=True)
    try:
        assert sock.poll(5000, zmq.POLLOUT) == zmq.POLLOUT
        sock.send(b"request", zmq.DONTWAIT)
        assert router.poll(5000)
        assert router.recv_multipart()[-1] == b"request"
    finally:
        sock.close()
        router.close()
