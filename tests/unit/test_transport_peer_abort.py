"""A peer link whose input stopped at the receive HWM survives its far end vanishing (issue 8).

libzmq 4.3.5 aborts the process when an engine writes after an I/O error that
it saw while its input was stopped; ZMTP heartbeats are such writes (see
`tests.unit.stopped_input_scenario`). Each scenario runs in its own process,
since an abort cannot be caught.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import zmq

from confmand.transport.peer import USER_TIMEOUT_MS, PeerTransport

REPO_ROOT = Path(__file__).resolve().parents[2]
SCENARIO_TIMEOUT_S = 60


def _scenario(mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.unit.stopped_input_scenario", mode],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=SCENARIO_TIMEOUT_S,
        check=False,  # the exit status is what the tests judge
    )


def test_confmans_peer_links_survive_a_dead_connection_with_stopped_input() -> None:
    run = _scenario("confman")
    assert run.returncode == 0, f"exit status {run.returncode}: {run.stderr[-2000:]}"
    delivered = int(run.stdout.split()[-1])
    assert delivered >= 1, "node 2 got none of what node 1 sent before it vanished"


def test_libzmq_still_aborts_on_a_heartbeat_after_that_error() -> None:
    """The premise of the fix: if this ever passes no more, libzmq is fixed and heartbeats may return."""
    run = _scenario("heartbeats")
    assert run.returncode == -signal.SIGABRT, (
        f"libzmq {zmq.zmq_version()} no longer aborts (exit status {run.returncode}); "
        f"see confmand/transport/peer.py and docs/daemon.md"
    )
    assert "!_io_error" in run.stderr


def test_no_peer_socket_sends_zmtp_heartbeats_and_the_kernel_watches_every_link() -> None:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    transport = PeerTransport(context, 1, "tcp://127.0.0.1:*", {2: "tcp://127.0.0.1:1"})
    try:
        sockets = [
            transport.socket,
            *transport._dealers.values(),
        ]  # the dealers are private: no API needs them
        for sock in sockets:
            assert sock.getsockopt(zmq.HEARTBEAT_IVL) == 0
            assert sock.getsockopt(zmq.TCP_KEEPALIVE) == 1
            assert sock.getsockopt(zmq.TCP_MAXRT) == USER_TIMEOUT_MS
    finally:
        transport.close()
        context.term()
