"""A ZeroMQ ROUTER that echoes every message back to its sender: the far end of the floor's round trips.

Run as `python -m bench._echo` by bench/floor.py, in its own process so that
the echo does not share the measuring process's GIL. It binds a free
loopback port, prints the bound endpoint as its first line, then echoes
until it is killed (the parent stops it by PID). Frames are sent back
untouched: no decoding, so the round trip is the transport's alone.

A ROUTER silently drops a message routed to a peer whose pipe is at its
send high-water mark. The pipelined run keeps up to 1000 messages in
flight, the default SNDHWM, and the reader of a pipe acknowledges what it
has read only every HWM/2 messages, so on a loaded machine (the echo's I/O
thread descheduled while its main thread keeps echoing) the pipe can look
full with fewer than 1000 replies really queued: the reply was dropped and
the benchmark waited for it forever. ROUTER_MANDATORY turns that drop into
back-pressure: a send to a full peer blocks (up to SEND_TIMEOUT_MS) until
the peer has read, and an unreachable peer is an error, never a loss.

No wait here is unbounded: a send that cannot go out within SEND_TIMEOUT_MS
ends the process with an error, and the receive loop wakes every
PARENT_CHECK_MS to exit once the parent is gone, so an echo whose parent was
killed (a test's timeout) does not live on.
"""

from __future__ import annotations

import os
import sys

import zmq

SEND_TIMEOUT_MS = 10_000
PARENT_CHECK_MS = 1_000


def echo_socket(
    context: zmq.Context[zmq.Socket[bytes]], endpoint: str = "tcp://127.0.0.1:*"
) -> zmq.Socket[bytes]:
    """The echo's bound ROUTER: a reply to a full peer waits (bounded), it is never dropped."""
    sock = context.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.setsockopt(zmq.SNDTIMEO, SEND_TIMEOUT_MS)
    sock.bind(endpoint)
    return sock


def serve(sock: zmq.Socket[bytes], parent_pid: int) -> int:
    """Echo until the parent is gone; 1 if a reply could not be sent in time."""
    sock.setsockopt(zmq.RCVTIMEO, PARENT_CHECK_MS)  # a timeout, not a poll per message: no extra cost
    while True:
        try:
            frames = sock.recv_multipart(copy=True)
        except zmq.Again:
            if os.getppid() != parent_pid:
                return 0
            continue
        try:
            sock.send_multipart(frames)
        except zmq.Again:
            print(f"echo: a reply could not be sent within {SEND_TIMEOUT_MS} ms", file=sys.stderr)
            return 1
        except zmq.ZMQError as exc:  # EHOSTUNREACH: the peer went away
            print(f"echo: a reply could not be sent: {exc}", file=sys.stderr)
            return 1


def main() -> int:
    parent_pid = os.getppid()
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = echo_socket(context)
    endpoint = sock.getsockopt(zmq.LAST_ENDPOINT)
    assert isinstance(endpoint, bytes)
    sys.stdout.write(endpoint.decode() + "\n")
    sys.stdout.flush()
    try:
        return serve(sock, parent_pid)
    except KeyboardInterrupt:
        return 0
    finally:
        sock.close()
        context.term()


if __name__ == "__main__":
    sys.exit(main())
