"""Simulated time and the simulated network between nodes and clients.

`World` is a queue of timed events (seconds of simulated time, ties broken
by the order they were scheduled, so a run is a function of its seed). The
network puts every payload on that queue:

- peer payloads (one encoded `PeerBatch` per send, as the real link sends)
  are delayed, dropped, reordered and duplicated by the scenario's rates,
  and checked against the blocked directed links when they arrive, so what
  was in flight when a partition starts is lost too (one-way loss is one
  blocked direction). A duplicate carries only the Raft messages: TCP never
  duplicates, so a duplicated forwarded request would be a fault no real
  network makes, while Raft must cope with any duplicate;
- client requests and replies are delayed only (clients reach every node;
  a node that is down or crashes loses what it held).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import replace

from confmand.transport.codec import decode_peer_batch, encode_peer_batch
from tests.sim.scenario import Scenario

Action = Callable[[], None]


class World:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.now = 0.0
        self._queue: list[tuple[float, int, Action]] = []
        self._seq = 0
        self.rng = scenario.rng("network")
        self.blocked: frozenset[tuple[int, int]] = frozenset()
        self.stats: dict[str, int] = {}
        self.calmed = False  # the final phase: no more loss, duplication or reordering

    def at(self, when: float, action: Action) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (max(when, self.now), self._seq, action))

    def run_until(self, end: float, stop: Callable[[], bool] | None = None) -> None:
        queue = self._queue
        while queue and queue[0][0] <= end:
            when, _, action = heapq.heappop(queue)
            self.now = when
            action()
            if stop is not None and stop():
                return
        self.now = max(self.now, end)

    def calm(self) -> None:
        self.calmed = True

    def count(self, what: str, n: int = 1) -> None:
        self.stats[what] = self.stats.get(what, 0) + n

    # ------------------------------------------------------------------ the network

    def delay(self) -> float:
        s = self.scenario
        return s.delay_min_s + self.rng.random() * (s.delay_max_s - s.delay_min_s)

    def send_peer(self, src: int, dst: int, payload: bytes, sent_at: float, deliver: DeliverPeer) -> None:
        s, rng = self.scenario, self.rng
        self.count("peer_sent")
        if self.calmed:
            self._schedule_arrival(sent_at + self.delay(), src, dst, payload, deliver)
            return
        if s.drop_rate and rng.random() < s.drop_rate:
            self.count("peer_dropped")
            return
        copies = [payload]
        if s.duplicate_rate and rng.random() < s.duplicate_rate:
            raft_only = _raft_only(payload)
            if raft_only is not None:
                copies.append(raft_only)
                self.count("peer_duplicated")
        for copy in copies:
            due = sent_at + self.delay()
            if s.reorder_rate and rng.random() < s.reorder_rate:
                due += rng.random() * s.late_max_s
            self._schedule_arrival(due, src, dst, copy, deliver)

    def _schedule_arrival(self, due: float, src: int, dst: int, payload: bytes, deliver: DeliverPeer) -> None:
        self.at(due, lambda: self._arrive(src, dst, payload, deliver))

    def _arrive(self, src: int, dst: int, payload: bytes, deliver: DeliverPeer) -> None:
        if (src, dst) in self.blocked:
            self.count("peer_partitioned")
            return
        deliver(dst, src, payload)


DeliverPeer = Callable[[int, int, bytes], None]


def _raft_only(payload: bytes) -> bytes | None:
    batch = decode_peer_batch(payload)
    if not batch.raft:
        return None
    return encode_peer_batch(replace(batch, forwards=[], forward_replies=[]))
