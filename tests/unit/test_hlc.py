"""The hybrid logical clock: monotonic stamps, causality across skewed nodes, refusal of runaway clocks."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from confmand.hlc import MAX_LOGICAL, ClockSkewError, HlcError, HybridClock, pack, unpack


class FakeWall:
    """A wall clock the test moves by hand."""

    def __init__(self, ms: int = 1_000_000) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


MAX_PHYSICAL = (1 << 48) - 1


@given(st.integers(0, MAX_PHYSICAL), st.integers(0, MAX_LOGICAL))
@example(MAX_PHYSICAL, MAX_LOGICAL)  # the largest stamp: no stamp follows it (pack would refuse one)
@example(MAX_PHYSICAL - 1, MAX_LOGICAL)  # the last carry into the physical part
def test_pack_and_unpack_are_inverse_and_preserve_order(physical: int, logical: int) -> None:
    stamp = pack(physical, logical)

    assert unpack(stamp) == (physical, logical)
    if logical < MAX_LOGICAL:
        assert stamp < pack(physical, logical + 1)
    elif physical < MAX_PHYSICAL:
        assert stamp < pack(physical + 1, 0)


OUT_OF_RANGE = [(-1, 0), (0, -1), (0, MAX_LOGICAL + 1), (MAX_PHYSICAL + 1, 0)]


@pytest.mark.parametrize(("physical", "logical"), OUT_OF_RANGE)
def test_pack_rejects_out_of_range_parts(physical: int, logical: int) -> None:
    with pytest.raises(HlcError):
        pack(physical, logical)


def test_now_follows_the_wall_clock_when_it_moves_forward() -> None:
    wall = FakeWall(5_000)
    clock = HybridClock(wall, max_offset_ms=500)
    assert clock.now() == pack(5_000, 0)
    wall.ms = 5_001
    assert clock.now() == pack(5_001, 0)


def test_now_counts_logically_while_the_wall_clock_stands_still_or_goes_back() -> None:
    wall = FakeWall(5_000)
    clock = HybridClock(wall, max_offset_ms=500)
    clock.now()
    assert clock.now() == pack(5_000, 1)
    wall.ms = 4_000
    assert clock.now() == pack(5_000, 2)


def test_logical_overflow_bumps_the_physical_part() -> None:
    clock = HybridClock(FakeWall(5_000), max_offset_ms=500)
    clock.update(pack(5_000, MAX_LOGICAL))
    assert unpack(clock.now()) == (5_001, 1)


def test_update_orders_after_a_remote_stamp_from_a_clock_that_runs_ahead() -> None:
    clock = HybridClock(FakeWall(5_000), max_offset_ms=500)
    assert clock.update(pack(5_400, 7)) == pack(5_400, 8)


def test_update_refuses_a_stamp_too_far_ahead_and_does_not_advance() -> None:
    clock = HybridClock(FakeWall(5_000), max_offset_ms=500)
    before = clock.now()
    with pytest.raises(
        ClockSkewError, match=r"remote clock 5501 ms is 501 ms ahead of the local clock 5000 ms"
    ):
        clock.update(pack(5_501, 0))
    assert clock.rejected == 1
    assert clock.last == before
    assert clock.now() == before + 1


def test_the_test_offset_shifts_the_wall_clock() -> None:
    clock = HybridClock(FakeWall(5_000), max_offset_ms=500)
    clock.offset_ms = 2_000
    assert unpack(clock.now()) == (7_000, 0)
    clock.update(pack(7_400, 0))  # within bounds only thanks to the offset


@pytest.mark.parametrize("stamp", [-1, 1 << 64, "12", 1.5, True])
def test_update_rejects_what_is_not_a_stamp(stamp: object) -> None:
    clock = HybridClock(FakeWall(), max_offset_ms=500)
    with pytest.raises(HlcError):
        clock.update(stamp)  # type: ignore[arg-type]


def _skewed(wall: FakeWall, skew_ms: int) -> Callable[[], int]:
    return lambda: wall() + skew_ms


# A step of the clock property: ("now", wall change) or ("update", wall change, remote offset ms, logical).
steps = st.lists(
    st.one_of(
        st.tuples(st.just("now"), st.integers(-50, 50)),
        st.tuples(
            st.just("update"), st.integers(-50, 50), st.integers(-1_000, 600), st.integers(0, MAX_LOGICAL)
        ),
    ),
    max_size=60,
)


@given(steps)
def test_stamps_strictly_increase_and_updates_order_after_their_input(
    plan: list[tuple[int | str, ...]],
) -> None:
    wall = FakeWall()
    clock = HybridClock(wall, max_offset_ms=500)
    previous = 0
    for step in plan:
        wall.ms += int(step[1])
        if step[0] == "now":
            stamp = clock.now()
        else:
            remote = pack(max(0, wall.ms + int(step[2])), int(step[3]))
            try:
                stamp = clock.update(remote)
            except ClockSkewError:
                assert int(step[2]) > 500
                continue
            assert stamp > remote
        assert stamp > previous
        assert unpack(stamp)[0] >= wall.ms  # never behind the wall clock
        previous = stamp


@given(
    st.lists(st.integers(-400, 400), min_size=3, max_size=3),
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 30)), max_size=80),
)
def test_causality_holds_across_nodes_with_skewed_clocks(
    skews: list[int], sends: list[tuple[int, int, int]]
) -> None:
    """A message's receive stamp exceeds its send stamp, so every causal chain is stamp-ordered."""
    true_time = FakeWall(1_000_000)
    clocks = [HybridClock(_skewed(true_time, skew), max_offset_ms=1_000) for skew in skews]
    last_event = [0, 0, 0]  # each node's latest stamp: a causal chain runs through it
    for sender, receiver, elapsed in sends:
        true_time.ms += elapsed
        sent = clocks[sender].now()
        assert sent > last_event[sender]
        received = clocks[receiver].update(sent)
        assert received > sent
        assert received > last_event[receiver]
        last_event[sender], last_event[receiver] = sent, received


def test_observe_merges_a_client_stamp_within_the_bound() -> None:
    clock = HybridClock(FakeWall(5_000), max_offset_ms=500)
    assert clock.observe(pack(5_400, 7)) is True
    assert clock.now() == pack(5_400, 9)


def test_observe_ignores_a_client_stamp_too_far_ahead_instead_of_refusing_it() -> None:
    clock = HybridClock(FakeWall(5_000), max_offset_ms=500)
    before = clock.now()
    assert clock.observe(pack(52_000, 0)) is False
    assert (clock.ignored, clock.rejected) == (1, 0)
    assert clock.now() == before + 1
    with pytest.raises(HlcError):
        clock.observe(-1)


def test_peer_offset_is_the_closest_peer_stamp_of_the_last_complete_window() -> None:
    wall = FakeWall(100_000)
    clock = HybridClock(wall, max_offset_ms=500)
    assert clock.peer_offset_ms() is None
    clock.update(pack(100_000 - 47_000, 0))
    clock.update(pack(100_000 - 46_000, 0))
    assert clock.peer_offset_ms() is None  # the window is not over yet
    wall.ms += 1_000
    clock.update(pack(wall.ms - 3, 0))
    assert clock.peer_offset_ms() == -46_000
    wall.ms += 1_000
    clock.update(pack(wall.ms + 400, 0))
    assert clock.peer_offset_ms() == -3
    wall.ms += 10_000  # no peer heard for long: no opinion
    assert clock.peer_offset_ms() is None


def test_a_peer_stamp_refused_as_too_far_ahead_still_counts_as_a_peer_offset() -> None:
    wall = FakeWall(100_000)
    clock = HybridClock(wall, max_offset_ms=500)
    with pytest.raises(ClockSkewError):
        clock.update(pack(147_000, 0))
    wall.ms += 1_000
    clock.update(pack(wall.ms, 0))
    assert clock.peer_offset_ms() == 47_000
