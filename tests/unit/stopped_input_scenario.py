"""The libzmq abort of issue 8, in one process, as `python -m tests.unit.stopped_input_scenario MODE`.

Node 1 floods node 2, whose loop does not read (as when node 2 was paused,
or its loop is busy after a resume): node 2's ROUTER stops reading its TCP
connection once the connection's pipe is at the receive HWM. Then node 1
vanishes. When node 2's kernel next learns that the connection is dead (a
reset in answer to whatever node 2 sends on it), libzmq marks the engine
`_io_error`; any later write on that engine aborts the process with
`Assertion failed: !_io_error (src/stream_engine_base.cpp:310)`.

MODE `heartbeats`: raw sockets with ZMTP heartbeats, as the peer links had
them; node 2's PINGs are the write that aborts. MODE `confman`: the real
`PeerTransport` on both ends. Either way node 2 then reads what it was sent;
the process prints `delivered N` and exits 0 if it survived.
"""

from __future__ import annotations

import sys
import time

import zmq

from confmand.transport.peer import KEEPALIVE_CNT, KEEPALIVE_IDLE_S, KEEPALIVE_INTVL_S, PeerTransport

RECEIVE_HWM = 10
FLOOD = 2_000
HEARTBEAT_IVL_MS = 100
HEARTBEAT_TIMEOUT_MS = 30_000  # long, so that the old timeout never tears the link down first
CONNECT_TIMEOUT_MS = 5_000
# No event says "input stopped at the HWM": give node 2's I/O thread this long to read the flood.
FLOOD_SETTLE_S = 0.3
# Long enough for node 2's kernel to probe the dead link and get a reset back, in either mode.
AFTERMATH_S = KEEPALIVE_IDLE_S + KEEPALIVE_CNT * KEEPALIVE_INTVL_S + 1.0


def _with_heartbeats(sock: zmq.Socket[bytes]) -> None:
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)


def _run_heartbeats(context: zmq.Context[zmq.Socket[bytes]]) -> int:
    router = context.socket(zmq.ROUTER)
    _with_heartbeats(router)
    router.setsockopt(zmq.RCVHWM, RECEIVE_HWM)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer = context.socket(zmq.DEALER)
    _with_heartbeats(dealer)
    dealer.connect(f"tcp://127.0.0.1:{port}")
    dealer.send(b"first")
    if not router.poll(CONNECT_TIMEOUT_MS):
        raise SystemExit("the link never came up")
    for _ in range(FLOOD):
        dealer.send(b"x" * 100)
    time.sleep(FLOOD_SETTLE_S)
    dealer.close(linger=0)
    time.sleep(AFTERMATH_S)
    delivered = 0
    while router.poll(200):
        router.recv_multipart()
        delivered += 1
    router.close(linger=0)
    return delivered


def _run_confman(context: zmq.Context[zmq.Socket[bytes]]) -> int:
    two = PeerTransport(context, 2, "tcp://127.0.0.1:*", {}, receive_hwm=RECEIVE_HWM)
    one = PeerTransport(context, 1, "tcp://127.0.0.1:*", {2: two.bound_address})
    two.add_peer(1, one.bound_address)
    deadline = time.monotonic() + CONNECT_TIMEOUT_MS / 1000
    # IMMEDIATE drops sends until the link is up: retry until one arrives.
    while not (one.send(2, b"first") and two.socket.poll(100)):
        if time.monotonic() > deadline:
            raise SystemExit("the link never came up")
    for _ in range(FLOOD):
        one.send(2, b"x" * 100)
    time.sleep(FLOOD_SETTLE_S)
    one.close()
    time.sleep(AFTERMATH_S)
    delivered = 0
    while two.socket.poll(200):
        delivered += len(two.receive(1_000))
    two.close()
    return delivered


def main(argv: list[str]) -> int:
    (mode,) = argv
    runs = {"heartbeats": _run_heartbeats, "confman": _run_confman}
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        delivered = runs[mode](context)
    finally:
        context.term()
    print(f"delivered {delivered}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
