"""A real confmand under a stand-in for systemd's notify socket: READY, STATUS, WATCHDOG, STOPPING."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import MakeCluster
from tests.integration.harness import wait_until

WATCHDOG_USEC = 400_000  # pinged every 0.2 s


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[Path, socket.socket]]:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    yield path, sock
    sock.close()


def _next(sock: socket.socket, timeout_s: float) -> str | None:
    sock.settimeout(timeout_s)
    try:
        return sock.recv(4096).decode()
    except (TimeoutError, BlockingIOError):
        return None


def _wait_for(sock: socket.socket, wanted: str, timeout_s: float) -> list[str]:
    """Every datagram up to and including the first that contains `wanted`."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = _next(sock, max(0.01, deadline - time.monotonic()))
        if got is not None:
            seen.append(got)
            if wanted in got:
                return seen
    raise AssertionError(f"no datagram with {wanted!r} within {timeout_s} s; got {seen}")


def test_a_node_under_systemd_reports_ready_status_and_watchdog_and_goes_silent_when_stopped(
    make_cluster: MakeCluster, notify_socket: tuple[Path, socket.socket]
) -> None:
    path, sock = notify_socket
    cluster = make_cluster(boot=False, size=1)
    cluster.local.extra_env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    cluster.start()

    first = _next(sock, 15.0)
    assert first is not None
    assert first.startswith("READY=1\nSTATUS=serving; leader of ")
    _wait_for(sock, "WATCHDOG=1", 1.0)
    led = _wait_for(sock, "STATUS=leader of 2/2 shards, 0 lagging, 0 without a leader", 15.0)
    assert led

    cluster.pause(1)  # the whole process stopped: its loop cannot ping
    wait_until(lambda: _state(cluster.process(1).pid) == "T", 2.0, "node 1 stopped")
    while _next(sock, 0.0) is not None:  # what left before the stop took hold
        pass
    silent = _next(sock, 3 * WATCHDOG_USEC / 1e6)
    cluster.resume(1)
    resumed = _wait_for(sock, "WATCHDOG=1", 1.0)

    code = cluster.terminate(1)
    stopping = _wait_for(sock, "STOPPING=1", 1.0)

    assert silent is None
    assert resumed
    assert code == 0
    assert stopping[-1].startswith("STOPPING=1\nSTATUS=stopping")


def _state(pid: int) -> str:
    """The process state letter from /proc (T: stopped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]
