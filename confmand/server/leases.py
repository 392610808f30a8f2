"""`LeaseClock`: when each lease of a shard runs out, as its leader keeps count.

Leases are state-machine records (confmand/kv/leases.py); their clocks are not: a keepalive
writes nothing to the log (one entry per keepalive per lease would cost the log more than all
the writes it guards). The shard's leader keeps a deadline per lease on its monotonic clock:
a grant it applies starts one, a keepalive it answers restarts it, and when one passes the
leader proposes the lease's expiry, a log entry every replica applies alike.

A new leader cannot know when its predecessor last renewed each lease, so it gives every lease
a full TTL plus an election timeout from its own promotion (as etcd does): no lease expires
earlier than its holder was promised. A client counts its lease from when it *sent* the
keepalive that was answered: that keepalive was answered only after the leader confirmed it
still led (a ReadIndex round), so no later leader was elected before it was sent, and every
later leader starts the lease's full TTL after its own election. A deposed leader forgets its
clocks: it proposes nothing any more.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

RETRY_S: Final = 2.0  # an expiry proposed but not applied (a lost proposal) is proposed again after this


class LeaseClock:
    __slots__ = ("_deadlines", "_proposed")

    def __init__(self) -> None:
        self._deadlines: dict[int, float] = {}  # lease -> monotonic seconds it runs out
        self._proposed: dict[int, float] = {}  # lease -> when its expiry may be proposed again

    def __bool__(self) -> bool:
        return bool(self._deadlines)

    def promote(self, leases: Iterable[tuple[int, int]], now: float, extend_s: float) -> None:
        """This node now leads the shard: every lease gets its full TTL and `extend_s` from now."""
        self._deadlines = {lease: now + ttl_ms / 1000 + extend_s for lease, ttl_ms in leases}
        self._proposed.clear()

    def adopt(self, leases: Iterable[tuple[int, int]], now: float, extend_s: float) -> None:
        """Leases that arrived with a moved namespace: each gets its full TTL and `extend_s` (as
        after a promotion: its old shard's leader kept its clock); those with a clock keep it."""
        for lease, ttl_ms in leases:
            if lease not in self._deadlines:
                self._deadlines[lease] = now + ttl_ms / 1000 + extend_s

    def demote(self) -> None:
        self._deadlines.clear()
        self._proposed.clear()

    def start(self, lease: int, ttl_ms: int, now: float) -> None:
        """A grant applied here (as leader), or a keepalive answered: TTL from now, not shortened."""
        deadline = now + ttl_ms / 1000
        self._deadlines[lease] = max(deadline, self._deadlines.get(lease, deadline))
        self._proposed.pop(lease, None)

    def forget(self, lease: int) -> None:
        self._deadlines.pop(lease, None)
        self._proposed.pop(lease, None)

    def due(self, now: float) -> list[int]:
        """Leases whose time is up and whose expiry is not already on its way, by id."""
        found = []
        for lease, deadline in self._deadlines.items():
            if deadline <= now and self._proposed.get(lease, 0.0) <= now:
                self._proposed[lease] = now + RETRY_S
                found.append(lease)
        return sorted(found)
