"""A ZeroMQ ROUTER that echoes every message back to its sender: the far end of the floor's round trips.

Run as `python -m bench._echo` by bench/floor.py, in its own process so that
the echo does not share the measuring process's GIL. It binds a free
loopback port, prints the bound endpoint as its first line, then echoes
until it is killed (the parent stops it by PID). Frames are sent back
untouched: no decoding, so the round trip is the transport's alone.
"""

from __future__ import annotations

import sys

import zmq


def main() -> int:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = context.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind("tcp://127.0.0.1:*")
    endpoint = sock.getsockopt(zmq.LAST_ENDPOINT)
    assert isinstance(endpoint, bytes)
    sys.stdout.write(endpoint.decode() + "\n")
    sys.stdout.flush()
    try:
        while True:
            sock.send_multipart(sock.recv_multipart(copy=True))
    except KeyboardInterrupt:
        return 0
    finally:
        sock.close()
        context.term()


if __name__ == "__main__":
    sys.exit(main())
