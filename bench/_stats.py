"""Latency percentiles for the benchmarks: nearest-rank on the sorted samples, in milliseconds.

Nearest rank (the smallest sample with at least q of all samples at or below
it) is what HdrHistogram and etcd's benchmark report; it never invents a
value between two samples. An empty sample set has no percentiles: 0.0 is
reported, and the caller's op count of 0 says why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The nearest-rank q-quantile (0 < q <= 1) of ascending `sorted_values`; 0.0 when there are none."""
    if not 0.0 < q <= 1.0:
        raise ValueError(f"quantile must be in (0, 1], got {q}")
    if not sorted_values:
        return 0.0
    rank = math.ceil(q * len(sorted_values))  # 1-based
    return sorted_values[max(rank, 1) - 1]


def latency_summary_ms(latencies_s: Sequence[float]) -> dict[str, float]:
    """p50/p99/p99.9 and the mean of latencies given in seconds, as `*_ms` keys, 3 decimals."""
    ordered = sorted(latencies_s)
    mean = sum(ordered) / len(ordered) if ordered else 0.0
    return {
        "p50_ms": round(percentile(ordered, 0.50) * 1000, 3),
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 3),
        "p999_ms": round(percentile(ordered, 0.999) * 1000, 3),
        "mean_ms": round(mean * 1000, 3),
    }
