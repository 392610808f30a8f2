"""Support for the transport tests (no tests here): a ZeroMQ context, waiting on a socket without sleeps."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
import zmq

T = TypeVar("T")
WAIT_MS = 5_000  # generous: only reached when the awaited event never comes, i.e. the test fails


@pytest.fixture
def context() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def poll_until(sock: zmq.Socket[bytes], drain: Callable[[], list[T]], want: int = 1) -> list[T]:
    """Drain with `drain` each time `sock` has input, until `want` items came; fails after WAIT_MS."""
    got: list[T] = []
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    while len(got) < want:
        if not poller.poll(WAIT_MS):
            pytest.fail(f"only {len(got)} of {want} messages arrived within {WAIT_MS} ms")
        got.extend(drain())
    return got


def drain_until(sock: zmq.Socket[bytes], drain: Callable[[], object], done: Callable[[], bool]) -> None:
    """Call `drain` each time `sock` has input, until `done()`; fails after WAIT_MS without input."""
    while not done():
        if not sock.poll(WAIT_MS, zmq.POLLIN):
            pytest.fail(f"no input within {WAIT_MS} ms")
        drain()


def wait_for_input(sock: zmq.Socket[bytes]) -> None:
    if not sock.poll(WAIT_MS, zmq.POLLIN):
        pytest.fail(f"no input within {WAIT_MS} ms")
