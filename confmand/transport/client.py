"""The client-facing socket: a ROUTER at the node's client address.

A request is `[routing id, *envelope, payload]`: everything before the last
frame is the envelope (the routing id, and REQ's empty delimiter when the
client uses REQ), echoed unchanged in front of the reply, so DEALER, REQ and
proxies in between all work (docs/protocol.md, "Transport and framing").

Invariants:
- Nothing here blocks. ROUTER_MANDATORY is on only so that a reply to a
  client that vanished, or whose queue is full, fails at once (EHOSTUNREACH /
  EAGAIN under NOBLOCK) and is counted; `reply` then returns False.
- A request with more than `max_frames` frames or more than
  `max_message_bytes` bytes in all is dropped and counted before anyone
  decodes it; a single frame larger than that disconnects the client
  (MAXMSGSIZE), so no client can make us buffer an unbounded message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import zmq

from confmand.transport.droplog import DropLog
from confmand.transport.peer import TransportClosedError

log = logging.getLogger(__name__)

DEFAULT_MAX_FRAMES = 16
DEFAULT_MAX_MESSAGE_BYTES = (2 << 20) + 4096  # max_request_bytes (2 MiB) plus room for the envelope


@dataclass(slots=True)
class ClientCounters:
    received: int = 0
    replied: int = 0
    dropped_too_many_frames: int = 0
    dropped_too_large: int = 0
    dropped_unroutable: int = 0  # the client is gone
    dropped_full: int = 0  # the client's queue is at its HWM


class ClientTransport:
    def __init__(
        self,
        context: zmq.Context[zmq.Socket[bytes]],
        bind_address: str,
        send_hwm: int = 10_000,
        *,
        receive_hwm: int = 10_000,
        max_frames: int = DEFAULT_MAX_FRAMES,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        if max_frames < 2 or max_message_bytes < 1:
            raise ValueError("max_frames must be >= 2 and max_message_bytes >= 1")
        self.counters = ClientCounters()
        self._max_frames = max_frames
        self._max_message_bytes = max_message_bytes
        self._drop_log = DropLog(log)
        self._router: zmq.Socket[bytes] = context.socket(zmq.ROUTER)
        try:
            self._router.setsockopt(zmq.LINGER, 0)
            self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
            self._router.setsockopt(zmq.SNDHWM, send_hwm)
            self._router.setsockopt(zmq.RCVHWM, receive_hwm)
            self._router.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
            self._router.bind(bind_address)
        except BaseException:
            self._router.close(linger=0)
            raise

    @property
    def socket(self) -> zmq.Socket[bytes]:
        """The socket, for a `SocketWaiter`."""
        return self._router

    @property
    def bound_address(self) -> str:
        """The address bound (resolves a `tcp://host:*` wildcard port)."""
        endpoint = self._router.getsockopt(zmq.LAST_ENDPOINT)
        assert isinstance(endpoint, bytes)
        return endpoint.decode()

    def receive(self, max_messages: int) -> list[tuple[list[bytes], bytes]]:
        """Up to `max_messages` `(envelope, payload)` already queued; never waits."""
        if self._router.closed:
            raise TransportClosedError("client transport is closed")
        out: list[tuple[list[bytes], bytes]] = []
        router = self._router
        for _ in range(max_messages):
            # Asking EVENTS first is much cheaper than letting recv raise zmq.Again on an empty queue.
            if not int(router.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
                break
            try:
                frames = router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            if len(frames) > self._max_frames:
                self.counters.dropped_too_many_frames += 1
                self._drop_log.warning("dropped a client request of %d frames", len(frames))
                continue
            size = sum(map(len, frames))
            if size > self._max_message_bytes:
                self.counters.dropped_too_large += 1
                self._drop_log.warning("dropped a client request of %d bytes", size)
                continue
            # ROUTER always prepends the routing id, so there are at least two frames.
            out.append((frames[:-1], frames[-1]))
        self.counters.received += len(out)
        return out

    def reply(self, envelope: list[bytes], payload: bytes) -> bool:
        """Send `payload` behind `envelope` without blocking; False (and counted) if it was dropped."""
        if not envelope:
            raise ValueError("a reply needs the request's envelope (at least its routing id)")
        try:
            self._router.send_multipart([*envelope, payload], zmq.NOBLOCK)
        except zmq.Again:
            self.counters.dropped_full += 1
            return False
        except zmq.ZMQError as exc:
            if exc.errno == zmq.ENOTSOCK:
                raise TransportClosedError("client transport is closed") from exc
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            self.counters.dropped_unroutable += 1
            return False
        self.counters.replied += 1
        return True

    def close(self) -> None:
        """Close the socket (linger 0); idempotent."""
        self._router.close(linger=0)
