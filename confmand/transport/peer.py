"""Links between nodes: one ROUTER to receive from every peer, one DEALER to send to each.

Node A sends to node B on A's DEALER for B, which connects to B's ROUTER with
the routing id `node:A`; so a ROUTER only ever receives and a DEALER only
ever sends, and B knows who sent each message from the routing id alone.

Invariants:
- Nothing here blocks: a send to a peer whose queue is full (or that is not
  connected: IMMEDIATE is on, so nothing queues for a dead peer) is dropped
  and counted, and Raft retransmits. A restarted peer gets fresh messages,
  not a backlog of stale ones.
- Input from an unknown routing id or with the wrong number of frames is
  dropped, counted and logged (rate-limited); `receive` returns only
  `(node_id, payload)` from configured peers.
- A restarted peer reconnecting under its old routing id takes over the old
  connection (ROUTER_HANDOVER), and TCP keepalive and TCP_USER_TIMEOUT drop a
  connection whose far end vanished without a word (a dead host sends no TCP
  reset).
- No ZMTP heartbeats, on either end of any peer link: in libzmq 4.3.5 (the
  latest release, the one pyzmq's wheels bundle) a PING sent or answered on a
  connection that failed while its input was stopped at the receive HWM
  aborts the whole process (`Assertion failed: !_io_error
  (src/stream_engine_base.cpp:310)`), which is what a node paused under load
  hit on resume. docs/daemon.md, "ZeroMQ and the libzmq abort", has the story.
- Sockets are closed with linger 0: closing never waits for the network.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import zmq

from confmand.transport.droplog import DropLog

log = logging.getLogger(__name__)

ROUTING_PREFIX = b"node:"
RECONNECT_IVL_MS = 100
RECONNECT_IVL_MAX_MS = 2_000
# Dead-peer detection, by the kernel rather than by ZMTP heartbeats (see the module docstring).
# An idle link is probed after KEEPALIVE_IDLE_S, then every KEEPALIVE_INTVL_S; KEEPALIVE_CNT
# unanswered probes, or data unacknowledged for USER_TIMEOUT_MS, drop it (about 5 s either way,
# as the heartbeats did). A paused peer's kernel still acknowledges, so a pause drops nothing.
KEEPALIVE_IDLE_S = 2
KEEPALIVE_INTVL_S = 1
KEEPALIVE_CNT = 3
USER_TIMEOUT_MS = 5_000
# A connect whose SYNs are lost (a cut, a dead host) is given up after this and tried afresh every
# RECONNECT_IVL_MAX_MS at most; else the kernel's SYN backoff (1, 2, 4, 8... s) delays the link after a heal.
CONNECT_TIMEOUT_MS = 1_000


class UnknownPeerError(LookupError):
    """A send to a node id that is not a configured remote peer."""


class TransportClosedError(RuntimeError):
    """The transport was used after close()."""


@dataclass(slots=True)
class PeerCounters:
    sent: int = 0
    dropped_full: int = 0  # the peer's queue was at its HWM, or the peer is not connected
    dropped_unknown: int = 0  # input from a routing id that is not a configured peer
    dropped_malformed: int = 0  # input with the wrong number of frames
    received: int = 0


def routing_id(node_id: int) -> bytes:
    return ROUTING_PREFIX + str(node_id).encode()


class PeerTransport:
    """The peer links of node `node_id`; `peers` maps node ids to peer addresses (this node's is ignored)."""

    def __init__(
        self,
        context: zmq.Context[zmq.Socket[bytes]],
        node_id: int,
        bind_address: str,
        peers: dict[int, str],
        send_hwm: int = 1000,
        *,
        receive_hwm: int = 10_000,
        max_message_bytes: int = 256 << 20,
    ) -> None:
        self.node_id = node_id
        self.counters = PeerCounters()
        self._context = context
        self._send_hwm = send_hwm
        self._drop_log = DropLog(log)
        self._by_routing_id: dict[bytes, int] = {}
        self._router: zmq.Socket[bytes] = context.socket(zmq.ROUTER)
        self._dealers: dict[int, zmq.Socket[bytes]] = {}
        try:
            _common_options(self._router)
            self._router.setsockopt(zmq.ROUTER_HANDOVER, 1)
            self._router.setsockopt(zmq.RCVHWM, receive_hwm)
            # A frame larger than this disconnects its sender: a bound on what a peer can make us buffer.
            self._router.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
            self._router.bind(bind_address)
            for peer_id, address in sorted(peers.items()):
                if peer_id != node_id:
                    self.add_peer(peer_id, address)
        except BaseException:
            self.close()
            raise

    def add_peer(self, node_id: int, address: str) -> None:
        """Start talking to (and accepting input from) `node_id` at `address`; e.g. a node that joined."""
        if node_id == self.node_id:
            raise ValueError(f"node {node_id} is this node")
        if node_id in self._dealers:
            raise ValueError(f"node {node_id} is already a peer")
        if self._router.closed:
            raise TransportClosedError("peer transport is closed")
        self._dealers[node_id] = self._dealer(address)
        self._by_routing_id[routing_id(node_id)] = node_id

    def remove_peer(self, node_id: int) -> None:
        """Stop talking to `node_id` (what is still queued for it is dropped); its input is dropped too."""
        self._by_routing_id.pop(routing_id(node_id), None)
        dealer = self._dealers.pop(node_id, None)
        if dealer is None:
            raise UnknownPeerError(f"node {node_id} is not a remote peer of node {self.node_id}")
        dealer.close(linger=0)

    @property
    def peer_ids(self) -> frozenset[int]:
        return frozenset(self._dealers)

    def _dealer(self, address: str) -> zmq.Socket[bytes]:
        dealer: zmq.Socket[bytes] = self._context.socket(zmq.DEALER)
        try:
            _common_options(dealer)
            dealer.setsockopt(zmq.ROUTING_ID, routing_id(self.node_id))
            dealer.setsockopt(zmq.SNDHWM, self._send_hwm)
            dealer.setsockopt(zmq.IMMEDIATE, 1)
            dealer.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
            dealer.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
            dealer.setsockopt(zmq.CONNECT_TIMEOUT, CONNECT_TIMEOUT_MS)
            dealer.connect(address)
        except BaseException:
            dealer.close(linger=0)
            raise
        return dealer

    @property
    def socket(self) -> zmq.Socket[bytes]:
        """The receiving socket, for a `SocketWaiter`."""
        return self._router

    @property
    def bound_address(self) -> str:
        """The address the ROUTER is bound at (resolves a `tcp://host:*` wildcard port)."""
        endpoint = self._router.getsockopt(zmq.LAST_ENDPOINT)
        assert isinstance(endpoint, bytes)
        return endpoint.decode()

    def send(self, node_id: int, payload: bytes) -> bool:
        """Queue `payload` for `node_id` without blocking; False (and counted) if it was dropped."""
        dealer = self._dealers.get(node_id)
        if dealer is None:
            if self._router.closed:
                raise TransportClosedError("peer transport is closed")
            raise UnknownPeerError(f"node {node_id} is not a remote peer of node {self.node_id}")
        try:
            dealer.send(payload, zmq.NOBLOCK, copy=len(payload) < 65536)
        except zmq.Again:
            self.counters.dropped_full += 1
            return False
        self.counters.sent += 1
        return True

    def receive(self, max_messages: int) -> list[tuple[int, bytes]]:
        """Up to `max_messages` `(node_id, payload)` already queued; never waits."""
        if self._router.closed:
            raise TransportClosedError("peer transport is closed")
        out: list[tuple[int, bytes]] = []
        router = self._router
        for _ in range(max_messages):
            # Asking EVENTS first is much cheaper than letting recv raise zmq.Again on an empty queue.
            if not int(router.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
                break
            try:
                frames = router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            if len(frames) != 2:
                self.counters.dropped_malformed += 1
                self._drop_log.warning("dropped a peer message of %d frames (want 2)", len(frames))
                continue
            sender = self._by_routing_id.get(frames[0])
            if sender is None:
                self.counters.dropped_unknown += 1
                self._drop_log.warning("dropped a peer message from unknown routing id %r", frames[0][:64])
                continue
            out.append((sender, frames[1]))
        self.counters.received += len(out)
        return out

    def close(self) -> None:
        """Close every socket at once (linger 0); idempotent."""
        for dealer in self._dealers.values():
            dealer.close(linger=0)
        self._dealers.clear()
        self._router.close(linger=0)


def _common_options(sock: zmq.Socket[bytes]) -> None:
    sock.setsockopt(zmq.LINGER, 0)
    # Never zmq.HEARTBEAT_IVL (nor _TIMEOUT/_TTL): its PINGs are what can abort the process.
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
    sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, KEEPALIVE_IDLE_S)
    sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, KEEPALIVE_INTVL_S)
    sock.setsockopt(zmq.TCP_KEEPALIVE_CNT, KEEPALIVE_CNT)
    sock.setsockopt(zmq.TCP_MAXRT, USER_TIMEOUT_MS)  # TCP_USER_TIMEOUT on Linux
