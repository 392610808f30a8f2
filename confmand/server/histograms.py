"""Fixed-bucket histograms the loop fills as it goes, for /metrics (metrics.py renders them).

An observation is one bisect and two additions on the loop, so the hot path can afford one
per request and per disk write; a scrape copies the counts (`figures`) between two turns.
Bucket bounds are upper bounds, inclusive, as Prometheus means `le`.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import Final

LATENCY_BOUNDS_S: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
SIZE_BOUNDS: Final = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0, 20000.0)


@dataclass(frozen=True, slots=True)
class HistogramFigures:
    bounds: tuple[float, ...]
    counts: tuple[int, ...]  # per bucket, not cumulative; one more than bounds (above the last)
    total: float

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus's buckets: (le, observations at or under it), ending with +Inf."""
        running, out = 0, []
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            out.append((_le(bound), running))
        out.append(("+Inf", running + self.counts[-1]))
        return out


class Histogram:
    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def figures(self) -> HistogramFigures:
        return HistogramFigures(self.bounds, tuple(self.counts), self.total)


class NodeHistograms:
    """What the node times and sizes: disk writes, peer batches, client requests by kind."""

    __slots__ = ("fsync_s", "peer_batch_messages", "peer_rtt_s", "requests", "write_batch_records")

    def __init__(self) -> None:
        self.fsync_s = Histogram(LATENCY_BOUNDS_S)  # a synced LevelDB batch write, fsync included
        self.write_batch_records = Histogram(SIZE_BOUNDS)  # records in each batch written
        self.peer_batch_messages = Histogram(SIZE_BOUNDS)  # Raft messages and forwards per peer batch
        self.requests: dict[tuple[str, str], Histogram] = {}  # (op, consistency) -> seconds to reply
        # Per peer: from sending a batch to hearing back, less the time the peer held it (node.py).
        self.peer_rtt_s: dict[int, Histogram] = {}

    def request(self, op: str, consistency: str, seconds: float) -> None:
        histogram = self.requests.get((op, consistency))
        if histogram is None:
            histogram = self.requests[op, consistency] = Histogram(LATENCY_BOUNDS_S)
        histogram.observe(seconds)

    def round_trip(self, peer: int, seconds: float) -> None:
        histogram = self.peer_rtt_s.get(peer)
        if histogram is None:
            histogram = self.peer_rtt_s[peer] = Histogram(LATENCY_BOUNDS_S)
        histogram.observe(seconds)


def _le(bound: float) -> str:
    return repr(float(bound))
