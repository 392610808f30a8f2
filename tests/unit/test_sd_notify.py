"""systemd notification over a real unix datagram socket standing in for $NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import math
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from confmand.server.run import serve
from confmand.server.sd_notify import STATUS_EVERY_S, SystemdNotifier


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2.0)
    yield path, sock
    sock.close()


def _received(sock: socket.socket) -> list[str]:
    """Every datagram waiting now."""
    out = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(4096).decode())
    except BlockingIOError:
        return out
    finally:
        sock.settimeout(2.0)


def test_without_notify_socket_nothing_is_sent_and_the_loop_never_waits_for_a_ping() -> None:
    notifier = SystemdNotifier.from_environ({}, pid=1)

    assert not notifier.enabled
    assert notifier.send("READY=1") is False
    assert notifier.seconds_to_ping(0.0) == math.inf


def test_ready_is_one_datagram_with_its_status_line(notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket
    notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": path}, pid=1)

    notifier.ready("serving; leader of 0/2 shards")

    assert sock.recv(4096) == b"READY=1\nSTATUS=serving; leader of 0/2 shards"


def test_an_abstract_socket_address_is_reached() -> None:
    name = f"confman-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2.0)

        SystemdNotifier(f"@{name}").send("STOPPING=1")

        assert sock.recv(4096) == b"STOPPING=1"


@pytest.mark.parametrize(
    ("environ", "expected_s"),
    [
        ({"WATCHDOG_USEC": "4000000"}, 4.0),
        ({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "77"}, 4.0),
        ({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "78"}, None),  # another process's watchdog
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({}, None),
    ],
)
def test_the_watchdog_interval_is_taken_only_when_meant_for_this_process(
    environ: dict[str, str], expected_s: float | None
) -> None:
    notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": "/nowhere", **environ}, pid=77)

    assert notifier.watchdog_s == expected_s


def test_the_watchdog_is_pinged_at_half_its_interval(notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket
    notifier = SystemdNotifier(path, watchdog_s=1.0)
    pings = []

    for now in (0.0, 0.2, 0.49, 0.5, 0.7, 1.0):
        notifier.after_turn(now, lambda: "same")
        pings.append(sum(d == "WATCHDOG=1" for d in _received(sock)))

    assert pings == [1, 0, 0, 1, 0, 1]
    assert notifier.seconds_to_ping(1.2) == pytest.approx(0.3)


def test_a_status_line_is_sent_when_it_changes_and_at_most_once_a_period(
    notify_socket: tuple[str, socket.socket],
) -> None:
    path, sock = notify_socket
    notifier = SystemdNotifier(path)
    notifier.ready("a")
    _received(sock)

    notifier.after_turn(0.0, lambda: "a")  # unchanged: not sent
    notifier.after_turn(0.1, lambda: "b")  # changed, but within the period
    early = _received(sock)
    notifier.after_turn(STATUS_EVERY_S, lambda: "b")

    assert early == []
    assert _received(sock) == ["STATUS=b"]


def test_a_vanished_socket_is_logged_once_and_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = SystemdNotifier(str(tmp_path / "gone"), watchdog_s=1.0)

    results = [notifier.send("WATCHDOG=1") for _ in range(3)]

    assert results == [False, False, False]
    assert sum("could not notify systemd" in r.message for r in caplog.records) == 1


class _BlockingNode:
    """Turns every 10 ms; turn number `block_at` blocks the loop for `block_s`."""

    def __init__(self, block_at: int, block_s: float, turns: int, stop: asyncio.Event) -> None:
        self.block_at, self.block_s, self.turns, self.stop = block_at, block_s, turns, stop
        self.count = 0
        self.blocked: tuple[float, float] | None = None

    def seconds_to_next_turn(self) -> float:
        return 0.01

    def turn(self) -> None:
        self.count += 1
        if self.count == self.block_at:
            start = time.monotonic()
            time.sleep(self.block_s)  # a turn stuck in a call: the loop cannot run anything else
            self.blocked = (start, time.monotonic())
        if self.count >= self.turns:
            self.stop.set()

    def hand_off_leadership(self) -> bool:
        return False

    def leads_any(self) -> bool:
        return False


class _SleepWaiter:
    async def wait(self, timeout_s: float) -> None:
        await asyncio.sleep(timeout_s)

    def close(self) -> None:
        pass


def test_the_watchdog_goes_silent_while_a_turn_blocks_the_loop(
    notify_socket: tuple[str, socket.socket],
) -> None:
    path, sock = notify_socket
    notifier = SystemdNotifier(path, watchdog_s=0.2)  # pinged every 0.1 s while the loop turns
    arrivals: list[float] = []

    async def main() -> _BlockingNode:
        stop = asyncio.Event()
        node = _BlockingNode(block_at=20, block_s=0.6, turns=60, stop=stop)
        reader = asyncio.get_running_loop()
        # Stamp each datagram as it arrives, from a thread the blocked loop cannot hold up.
        collector = reader.run_in_executor(None, _collect, sock, arrivals, 2.5)
        await serve(node, _SleepWaiter(), stop, notifier=notifier)
        await collector
        return node

    node = asyncio.run(main())

    assert node.blocked is not None
    start, end = node.blocked
    during = [t for t in arrivals if start < t < end]
    after = [t for t in arrivals if t >= end]
    assert len([t for t in arrivals if t <= start]) >= 2  # pinging before the block
    assert during == []
    assert after, "the watchdog did not resume after the blocked turn"
    assert after[0] - end < 0.1  # the first turn after the block pings at once: it was overdue


def _collect(sock: socket.socket, arrivals: list[float], for_s: float) -> None:
    deadline = time.monotonic() + for_s
    sock.settimeout(0.05)
    while time.monotonic() < deadline:
        try:
            if sock.recv(4096) == b"WATCHDOG=1":
                arrivals.append(time.monotonic())
        except TimeoutError:
            continue
