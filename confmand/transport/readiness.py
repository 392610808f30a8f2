"""Wait, inside the asyncio loop, until one of several plain ZeroMQ sockets has input.

The driver runs one asyncio loop over plain (synchronous) zmq sockets and
calls them with NOBLOCK; it awaits `SocketWaiter.wait()` when a turn found
nothing to do.

ZeroMQ's `zmq.FD` is not "the socket has input": it signals that the
socket's state *may* have changed, it is edge-triggered, and any call on the
socket (a send, a recv, reading `zmq.EVENTS`) may consume the signal. So:
- `wait()` reads `zmq.EVENTS` of every socket before it sleeps: a message
  that arrived while the loop was busy (and whose FD signal a send already
  consumed) is seen there, not missed.
- The FD reader callback reads `zmq.EVENTS` too, both to learn whether input
  is really there and to re-arm the FD; it only wakes a waiting `wait()`.
Between the check and the sleep nothing else runs (one thread, no await), so
no wake-up can be lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import zmq


class SocketWaiter:
    """`wait()` returns as soon as any socket has input, or after the timeout."""

    def __init__(self, sockets: Sequence[zmq.Socket[bytes]]) -> None:
        self._sockets = list(sockets)
        self._fds: list[int] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Future[None] | None = None

    def has_input(self) -> bool:
        """Whether any socket has a message ready now (this also re-arms their FDs)."""
        return any(_readable(sock) for sock in self._sockets)

    async def wait(self, timeout_s: float) -> None:
        """Return when any socket has input, or after `timeout_s` seconds, whichever is first."""
        loop = self._attach()
        if self.has_input() or timeout_s <= 0:
            return
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        timer = loop.call_later(timeout_s, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def close(self) -> None:
        """Remove the FD readers (the sockets themselves belong to the caller)."""
        if self._loop is not None and not self._loop.is_closed():
            for fd in self._fds:
                self._loop.remove_reader(fd)
        self._fds.clear()
        self._loop = None
        if self._waiter is not None:
            _resolve(self._waiter)

    def _attach(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return loop
        if self._loop is not None:
            raise RuntimeError("a SocketWaiter serves one event loop; close() it before using another")
        for sock in self._sockets:
            fd = sock.getsockopt(zmq.FD)
            assert isinstance(fd, int)
            loop.add_reader(fd, self._on_fd, sock)
            self._fds.append(fd)
        self._loop = loop
        return loop

    def _on_fd(self, sock: zmq.Socket[bytes]) -> None:
        # Reading EVENTS here is what re-arms the FD; without it a level-triggered
        # loop would call us again and again.
        if _readable(sock) and self._waiter is not None:
            _resolve(self._waiter)


def _readable(sock: zmq.Socket[bytes]) -> bool:
    try:
        events = sock.getsockopt(zmq.EVENTS)
    except zmq.ZMQError:
        return True  # closed under us: wake the caller, whose next call on it will say so
    assert isinstance(events, int)
    return bool(events & zmq.POLLIN)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
