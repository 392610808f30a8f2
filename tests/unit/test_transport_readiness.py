"""SocketWaiter: wakes on input, including input that arrived before it was called, under both loops."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
import uvloop
import zmq

from confmand.transport.readiness import SocketWaiter
from tests.unit.test_transport_support import context, wait_for_input

__all__ = ["context"]  # the fixture, re-exported for pytest

Context = zmq.Context[zmq.Socket[bytes]]
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}
FOREVER_S = 30.0  # a wait that must be cut short by input; the outer 5 s bound fails the test otherwise


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, None]], None]:
    factory = LOOPS[request.param]

    def run_with(coro: Coroutine[Any, Any, None]) -> None:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(coro)

    return run_with


@pytest.fixture
def link(context: Context) -> Iterator[tuple[zmq.Socket[bytes], zmq.Socket[bytes]]]:
    """(receiving ROUTER, sending DEALER) over TCP on loopback."""
    router = context.socket(zmq.ROUTER)
    router.bind("tcp://127.0.0.1:*")
    dealer = context.socket(zmq.DEALER)
    dealer.connect(router.getsockopt_string(zmq.LAST_ENDPOINT))
    yield router, dealer
    router.close(linger=0)
    dealer.close(linger=0)


def test_wait_wakes_when_a_message_arrives(
    run: Callable[[Coroutine[Any, Any, None]], None], link: tuple[zmq.Socket[bytes], zmq.Socket[bytes]]
) -> None:
    router, dealer = link

    async def scenario() -> None:
        waiter = SocketWaiter([router])
        task = asyncio.create_task(waiter.wait(FOREVER_S))
        await asyncio.sleep(0)  # let wait() check the socket and go to sleep
        assert not task.done()
        dealer.send(b"wake up")
        await asyncio.wait_for(task, 5)
        assert router.recv_multipart(zmq.NOBLOCK)[-1] == b"wake up"
        waiter.close()

    run(scenario())


def test_wait_returns_at_once_for_input_that_arrived_before_it_was_called(
    run: Callable[[Coroutine[Any, Any, None]], None], link: tuple[zmq.Socket[bytes], zmq.Socket[bytes]]
) -> None:
    router, dealer = link
    dealer.send(b"early")
    wait_for_input(router)  # polling consumes the FD's edge: only zmq.EVENTS still knows

    async def scenario() -> None:
        waiter = SocketWaiter([router])
        await asyncio.wait_for(waiter.wait(FOREVER_S), 5)
        waiter.close()

    run(scenario())


def test_wait_wakes_again_after_the_socket_was_drained(
    run: Callable[[Coroutine[Any, Any, None]], None], link: tuple[zmq.Socket[bytes], zmq.Socket[bytes]]
) -> None:
    router, dealer = link

    async def scenario() -> None:
        waiter = SocketWaiter([router])
        for n in range(3):
            task = asyncio.create_task(waiter.wait(FOREVER_S))
            await asyncio.sleep(0)
            dealer.send(b"%d" % n)
            await asyncio.wait_for(task, 5)
            assert router.recv_multipart(zmq.NOBLOCK)[-1] == b"%d" % n
        waiter.close()

    run(scenario())


def test_wait_watches_every_socket(
    run: Callable[[Coroutine[Any, Any, None]], None], context: Context
) -> None:
    quiet, busy = context.socket(zmq.PULL), context.socket(zmq.PULL)
    quiet.bind("inproc://quiet")
    busy.bind("inproc://busy")
    push = context.socket(zmq.PUSH)
    push.connect("inproc://busy")

    async def scenario() -> None:
        waiter = SocketWaiter([quiet, busy])
        task = asyncio.create_task(waiter.wait(FOREVER_S))
        await asyncio.sleep(0)
        push.send(b"x")
        await asyncio.wait_for(task, 5)
        waiter.close()

    run(scenario())
    for sock in (quiet, busy, push):
        sock.close(linger=0)


def test_wait_returns_after_the_timeout_without_input(
    run: Callable[[Coroutine[Any, Any, None]], None], link: tuple[zmq.Socket[bytes], zmq.Socket[bytes]]
) -> None:
    router, _ = link

    async def scenario() -> None:
        waiter = SocketWaiter([router])
        await asyncio.wait_for(waiter.wait(0.01), 5)
        await waiter.wait(0)
        assert not waiter.has_input()
        waiter.close()

    run(scenario())


def test_close_removes_the_readers(
    run: Callable[[Coroutine[Any, Any, None]], None], link: tuple[zmq.Socket[bytes], zmq.Socket[bytes]]
) -> None:
    router, _ = link
    fd = router.getsockopt(zmq.FD)
    assert isinstance(fd, int)

    async def scenario() -> None:
        waiter = SocketWaiter([router])
        await waiter.wait(0)
        waiter.close()
        # Nothing left to remove: asyncio says False (uvloop returns None, so only asyncio really checks).
        assert not asyncio.get_running_loop().remove_reader(fd)

    run(scenario())


def test_close_wakes_a_pending_wait(
    run: Callable[[Coroutine[Any, Any, None]], None], link: tuple[zmq.Socket[bytes], zmq.Socket[bytes]]
) -> None:
    router, _ = link

    async def scenario() -> None:
        waiter = SocketWaiter([router])
        task = asyncio.create_task(waiter.wait(FOREVER_S))
        await asyncio.sleep(0)
        waiter.close()
        await asyncio.wait_for(task, 5)

    run(scenario())
