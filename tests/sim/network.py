"""The simulated network: messages in flight, each with the tick it arrives.

Faults, all drawn from the generator handed in (and nothing else):
- drop: a message is lost at send time;
- duplicate: a second copy travels with its own delay;
- delay and reorder: each copy takes `delay_min..delay_max` ticks, and with
  `reorder_rate` an extra 1..reorder_max ticks, so later messages overtake it;
- partitions: a set of blocked directed links `(src, dst)`; a message is
  checked when it arrives, so what was in flight when a partition starts is
  lost too; or, with `hold_rate`, held back and delivered after the heal (as
  a ZeroMQ socket queues for a peer it cannot reach): very old messages then
  arrive in a burst. `heal()` clears the blocked links.

Invariant: delivery order is a function of the generator's draws only:
messages arriving on the same tick come out in the order they were sent.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from confmand.raft import Message, NodeId
from tests.sim.scenario import NetworkPlan


class Network:
    __slots__ = (
        "_buckets",
        "_delay_span",
        "_held",
        "blocked",
        "delay_min",
        "delivered",
        "drop_rate",
        "dropped",
        "duplicate_rate",
        "duplicated",
        "held",
        "hold_rate",
        "partitioned",
        "reorder_max",
        "reorder_rate",
        "rng",
        "sent",
    )

    def __init__(self, plan: NetworkPlan, rng: random.Random) -> None:
        self.rng = rng
        self.drop_rate = plan.drop_rate
        self.duplicate_rate = plan.duplicate_rate
        self.reorder_rate = plan.reorder_rate
        self.delay_min = plan.delay_min_ticks
        self._delay_span = plan.delay_max_ticks - plan.delay_min_ticks + 1
        self.reorder_max = plan.reorder_max_ticks
        self.hold_rate = plan.hold_rate
        self._held: list[Message] = []
        self.blocked: frozenset[tuple[NodeId, NodeId]] = frozenset()
        self._buckets: dict[int, list[Message]] = {}
        self.sent = self.dropped = self.duplicated = self.delivered = self.partitioned = self.held = 0

    def calm(self) -> None:
        """The final phase: no more loss, duplication or reordering; the plain delays stay."""
        self.drop_rate = self.duplicate_rate = self.reorder_rate = 0.0

    def heal(self, now: int) -> None:
        """Open every link; what was held back arrives over the next ticks, in order."""
        self.blocked = frozenset()
        held, self._held = self._held, []
        for pos, msg in enumerate(held):
            self._buckets.setdefault(now + 1 + pos // 8, []).append(msg)

    def block(self, links: Iterable[tuple[NodeId, NodeId]]) -> None:
        self.blocked = frozenset(links)

    def send(self, messages: list[Message], now: int) -> None:
        rng = self.rng
        buckets = self._buckets
        for msg in messages:
            self.sent += 1
            if self.drop_rate and rng.random() < self.drop_rate:
                self.dropped += 1
                continue
            copies = 2 if self.duplicate_rate and rng.random() < self.duplicate_rate else 1
            self.duplicated += copies - 1
            for _ in range(copies):
                due = now + self.delay_min + int(rng.random() * self._delay_span)
                if self.reorder_rate and rng.random() < self.reorder_rate:
                    due += 1 + int(rng.random() * self.reorder_max)
                bucket = buckets.get(due)
                if bucket is None:
                    buckets[due] = [msg]
                else:
                    bucket.append(msg)

    def arrivals(self, now: int) -> list[Message]:
        """The messages arriving at tick `now` over open links, in send order."""
        bucket = self._buckets.pop(now, None)
        if not bucket:
            return []
        blocked = self.blocked
        if not blocked:
            self.delivered += len(bucket)
            return bucket
        out = []
        for msg in bucket:
            if (msg.src, msg.dst) not in blocked:
                out.append(msg)
            elif self.hold_rate and self.rng.random() < self.hold_rate:
                self._held.append(msg)
                self.held += 1
            else:
                self.partitioned += 1
        self.delivered += len(out)
        return out

    def in_flight(self) -> int:
        return sum(len(bucket) for bucket in self._buckets.values())
