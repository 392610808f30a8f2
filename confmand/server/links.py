"""What the node needs from its surroundings: a clock, a peer link and a client link.

The node (node.py) never builds a socket or reads a clock itself: it is
handed these, so the same `Node` runs in the daemon (real ZeroMQ transports
and the system clock, wired in wiring.py) and in the whole-daemon simulator
(in-memory twins over a simulated network and simulated time, tests/sim/).
Storage is handed in the same way: a `NodeStorage` over real LevelDB or over
its in-memory twin (confmand/storage/memory_db.py).

Contracts the twins must keep, because the node relies on them:
- nothing blocks: `receive` returns what is already there, `send`/`reply`
  queue or drop (returning False) and never wait;
- a peer link delivers whole payloads from configured peers only, tagged with
  the sender's node id, and may lose, delay or reorder them (Raft copes);
  `send` to a node that is not a peer raises `UnknownPeerError`;
- a client link hands over `(envelope, payload)` and sends a reply behind the
  envelope it came with;
- `monotonic()` never goes back; `wall_ms()` may jump either way.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (deadlines, ticks, staleness)."""
        ...

    def wall_ms(self) -> int:
        """Milliseconds of wall time since the epoch (the HLC's physical part); may step."""
        ...


class PeerLink(Protocol):
    def send(self, node_id: int, payload: bytes) -> bool:
        """Queue `payload` for `node_id` without blocking; False if it was dropped."""
        ...

    def receive(self, max_messages: int) -> list[tuple[int, bytes]]:
        """Up to `max_messages` `(sender node id, payload)` already arrived; never waits."""
        ...

    def add_peer(self, node_id: int, address: str) -> None:
        """Start talking to `node_id` at `address` (a node added to the config while running)."""
        ...

    def remove_peer(self, node_id: int) -> None:
        """Stop talking to `node_id`, and drop what it sends (a node taken out of the cluster)."""
        ...

    def close(self) -> None: ...


class ClientLink(Protocol):
    def receive(self, max_messages: int) -> list[tuple[list[bytes], bytes]]:
        """Up to `max_messages` `(envelope, payload)` already arrived; never waits."""
        ...

    def reply(self, envelope: list[bytes], payload: bytes) -> bool:
        """Send `payload` behind `envelope` without blocking; False if it was dropped."""
        ...

    def close(self) -> None: ...


class SystemClock:
    """The real clocks of this host."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000
