"""A node takes its own clock for the wrong one only when it is off from every peer it hears, and hears 2."""

from __future__ import annotations

import contextlib

from confmand.hlc import ClockSkewError, HybridClock, pack
from confmand.server.clock_health import clock_fault


class Wall:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def clock_seeing_peers(offsets_ms: list[int]) -> HybridClock:
    """A clock that received, over one full window, one stamp per offset (peer minus local, ms)."""
    wall = Wall(1_000_000)
    clock = HybridClock(wall, max_offset_ms=500)
    for offset in offsets_ms:
        with contextlib.suppress(ClockSkewError):  # refused, but it still says how far off the peer is
            clock.update(pack(wall.ms + offset, 0))
    wall.ms += 1_000
    clock.update(pack(wall.ms, 0))  # opens the next window, closing the one measured
    return clock


def test_a_node_47_s_ahead_of_both_its_peers_is_faulty() -> None:
    fault = clock_fault(clock_seeing_peers([-47_000, -46_900]), {2: 10.0, 3: 10.0}, now=10.5)
    assert fault is not None
    assert "47000 ms ahead of its 2 peers'" in fault or "46900 ms ahead of its 2 peers'" in fault


def test_a_node_behind_both_its_peers_is_faulty_too() -> None:
    clock = clock_seeing_peers([30_000, 30_100])
    assert clock_fault(clock, {2: 10.0, 3: 10.0}, now=10.0) is not None


def test_one_peer_close_to_our_clock_means_ours_is_fine() -> None:
    # The node 47 s ahead is the other one: we see it far behind, but our other peer agrees with us.
    assert clock_fault(clock_seeing_peers([-47_000, 3]), {2: 10.0, 3: 10.0}, now=10.0) is None


def test_with_a_single_peer_heard_a_node_cannot_tell_whose_clock_is_wrong_and_keeps_going() -> None:
    assert clock_fault(clock_seeing_peers([-47_000]), {2: 10.0, 3: 1.0}, now=10.0) is None


def test_within_the_bound_is_no_fault() -> None:
    assert clock_fault(clock_seeing_peers([-499, 450]), {2: 10.0, 3: 10.0}, now=10.0) is None
