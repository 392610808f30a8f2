"""Which endpoint to ask next: the known leader, leader hints, rotation and backoff.

Pure decisions, no I/O. The router is shared by every call of one client; it
remembers the leader's address (learned from hints) across calls. A call asks
`first()`, and after a failure `next_after(endpoint)`: the endpoint list in
order, wrapping, starting after the one that failed. A hint address need not be
in the endpoint list (it is the leader's own client address); a failure there
falls back to the head of the list.

Without a known leader a call starts where the last one got an answer, or
after the endpoint the last one found silent: a dead node at the head of the
list costs one attempt once, not one attempt in every call (and with several
dead ones in front, calls whose timeout covers fewer attempts than that still
get through).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from confctl.client.endpoints import is_endpoint, unique
from confctl.client.errors import InvalidArgument

__all__ = ["Backoff", "Router", "is_endpoint", "unique"]


@dataclass(slots=True)
class Router:
    endpoints: tuple[str, ...]
    leader: str | None = None
    start: str | None = None  # where a call starts without a known leader (None: the head)
    last_answered: str | None = None  # the configured endpoint that answered last

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise InvalidArgument("a client needs at least one endpoint")
        for endpoint in self.endpoints:
            if not isinstance(endpoint, str) or not is_endpoint(endpoint):
                raise InvalidArgument(f"not an endpoint (want e.g. tcp://10.0.0.1:7101): {endpoint!r}")

    def first(self) -> str:
        return self.leader or self.start or self.endpoints[0]

    def next_after(self, endpoint: str) -> str:
        if endpoint not in self.endpoints:
            return self.endpoints[0]
        i = self.endpoints.index(endpoint)
        return self.endpoints[(i + 1) % len(self.endpoints)]

    def learn_leader(self, address: str | None) -> None:
        if address:
            self.leader = address

    def answered(self, endpoint: str) -> None:
        """A node at `endpoint` answered (with a result or an error): later calls may start there."""
        if endpoint in self.endpoints:
            self.start = self.last_answered = endpoint

    def prefer(self, endpoint: str) -> None:
        """Start calls at `endpoint` (one known to have answered, say) until one fails there."""
        if endpoint in self.endpoints:
            self.start = endpoint

    def forget(self, endpoint: str) -> None:
        """The endpoint failed: stop sending there first, as the leader or as the starting point."""
        if self.leader == endpoint:
            self.leader = None
        if (self.start or self.endpoints[0]) == endpoint:
            self.start = self.next_after(endpoint)


@dataclass(slots=True)
class Backoff:
    """Exponential backoff with jitter: base * 2**n, capped, times a factor in [0.5, 1)."""

    base_s: float = 0.02
    max_s: float = 0.5
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def delay_s(self, retries: int) -> float:
        raw: float = min(self.max_s, self.base_s * 2.0 ** min(retries, 30))
        jitter: float = 0.5 + self.rng.random() / 2
        return raw * jitter
