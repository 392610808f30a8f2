"""A hybrid logical clock (HLC): stamps that follow wall time yet respect causality.

A stamp is one integer, `physical_ms << 16 | logical`, so integer order is
HLC order and a stamp fits a msgpack uint64. The audit records of all shards
merge into one causal order by their stamps (docs/architecture.md §1, the promises).

Invariants:
- Every stamp `now()` or `update()` returns is strictly greater than every
  stamp this clock returned before, even if the wall clock steps back.
- `update(remote)` returns a stamp strictly greater than `remote`: a message's
  receiver orders after its sender.
- A stamp's physical part is never behind the wall clock at the moment it was
  made. When 65,536 stamps share one millisecond, the logical counter
  overflows into the physical part (simple integer increment does it).
- A remote stamp whose physical part is more than `max_offset_ms` ahead of
  the local wall clock is refused (`ClockSkewError`) and changes nothing: one
  node with a runaway clock must not drag every other clock into the future.
- A client's stamp goes through `observe`, which never refuses: a stamp too far
  ahead is ignored (counted in `ignored`) and the request is served anyway, so a
  client that picked up a faulty node's stamp is not locked out of the cluster.
- Peer stamps (`update`) also measure this clock against its peers': per window
  of PEER_WINDOW_MS, the peer stamp closest to the local wall clock. If even that
  one is more than `max_offset_ms` off, this clock (or all of its peers') is
  wrong; `peer_offset_ms()` reports the last window's closest offset, and the
  driver decides what that means (confmand/server/clock_health.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

LOGICAL_BITS: Final = 16
MAX_LOGICAL: Final = (1 << LOGICAL_BITS) - 1
MAX_STAMP: Final = (1 << 64) - 1
MAX_PHYSICAL_MS: Final = MAX_STAMP >> LOGICAL_BITS
PEER_WINDOW_MS: Final = 1_000  # peer stamps are judged per window of this much local wall time


class HlcError(ValueError):
    """A stamp that is not a valid HLC stamp."""


class ClockSkewError(HlcError):
    """A remote stamp too far ahead of the local wall clock; nothing was advanced."""

    def __init__(self, remote_ms: int, local_ms: int, max_offset_ms: int) -> None:
        super().__init__(
            f"remote clock {remote_ms} ms is {remote_ms - local_ms} ms ahead of the local clock "
            f"{local_ms} ms (max_clock_offset_ms = {max_offset_ms})"
        )
        self.remote_ms = remote_ms
        self.local_ms = local_ms
        self.max_offset_ms = max_offset_ms


def pack(physical_ms: int, logical: int) -> int:
    if not 0 <= physical_ms <= MAX_PHYSICAL_MS:
        raise HlcError(f"physical_ms must be in [0, {MAX_PHYSICAL_MS}] (got {physical_ms})")
    if not 0 <= logical <= MAX_LOGICAL:
        raise HlcError(f"logical must be in [0, {MAX_LOGICAL}] (got {logical})")
    return physical_ms << LOGICAL_BITS | logical


def unpack(stamp: int) -> tuple[int, int]:
    """(physical_ms, logical) of `stamp`."""
    _check_stamp(stamp)
    return stamp >> LOGICAL_BITS, stamp & MAX_LOGICAL


def _check_stamp(stamp: object) -> None:
    if type(stamp) is not int or not 0 <= stamp <= MAX_STAMP:
        raise HlcError(f"an HLC stamp is an integer in [0, 2**64) (got {stamp!r})")


class HybridClock:
    """One node's HLC. Not thread-safe: the driver's loop owns it."""

    __slots__ = (
        "_last",
        "_peer_offset",
        "_wall_ms",
        "_window_closest",
        "_window_start",
        "ignored",
        "max_offset_ms",
        "offset_ms",
        "rejected",
    )

    def __init__(self, wall_ms: Callable[[], int], max_offset_ms: int) -> None:
        if max_offset_ms < 0:
            raise ValueError(f"max_offset_ms must be >= 0 (got {max_offset_ms})")
        self._wall_ms = wall_ms
        self.max_offset_ms = max_offset_ms
        # Test-only: added to the wall clock, so fault tests can step one node's clock.
        self.offset_ms = 0
        # How many remote stamps update() refused for skew.
        self.rejected = 0
        # How many client stamps observe() ignored as too far ahead.
        self.ignored = 0
        self._last = 0
        self._window_start: int | None = None  # local wall ms at which the current window began
        self._window_closest: int | None = None  # this window's peer offset closest to 0 (ms)
        self._peer_offset: tuple[int, int] | None = None  # (window start, closest) of the last window

    @property
    def last(self) -> int:
        """The latest stamp handed out (0 before the first)."""
        return self._last

    def wall_ms(self) -> int:
        return max(0, self._wall_ms() + self.offset_ms)

    def now(self) -> int:
        """A fresh stamp, greater than every earlier one."""
        return self._advance(self._last)

    def update(self, remote: int) -> int:
        """Merge a stamp received from elsewhere; returns a fresh stamp greater than `remote` too.

        Raises ClockSkewError (and counts it in `rejected`) if `remote` is more
        than `max_offset_ms` ahead of the wall clock; HlcError if it is not a stamp.
        """
        _check_stamp(remote)
        wall = self.wall_ms()
        remote_ms = remote >> LOGICAL_BITS
        self._note_peer_offset(remote_ms - wall, wall)
        if remote_ms - wall > self.max_offset_ms:
            self.rejected += 1
            raise ClockSkewError(remote_ms, wall, self.max_offset_ms)
        return self._advance(max(self._last, remote), wall)

    def observe(self, remote: int) -> bool:
        """Merge a client's stamp if it is within `max_offset_ms` ahead; returns whether it was.

        A stamp further ahead is ignored (and counted in `ignored`), never refused: the
        client most likely carries a stamp a faulty node handed out, and refusing it would
        lock that client out of every healthy node. Raises HlcError if it is not a stamp.
        """
        _check_stamp(remote)
        wall = self.wall_ms()
        if (remote >> LOGICAL_BITS) - wall > self.max_offset_ms:
            self.ignored += 1
            return False
        self._advance(max(self._last, remote), wall)
        return True

    def peer_offset_ms(self) -> int | None:
        """How far peer clocks are from this one (ms, + when ahead), by the closest peer stamp.

        From the last complete window of peer stamps; None when no peer stamp came in the
        last two windows. A peer stamp is never behind its sender's wall clock, and arrives
        late by its transit time, so the closest stamp of a window bounds the offset well.
        """
        if self._peer_offset is None:
            return None
        start, closest = self._peer_offset
        if not 0 <= self.wall_ms() - start < 3 * PEER_WINDOW_MS:
            return None
        return closest

    def _note_peer_offset(self, offset_ms: int, wall: int) -> None:
        start = self._window_start
        if start is None or not 0 <= wall - start < PEER_WINDOW_MS:  # a new window (or the clock stepped)
            if start is not None and self._window_closest is not None:
                self._peer_offset = (start, self._window_closest)
            self._window_start, self._window_closest = wall, None
        closest = self._window_closest
        if closest is None or abs(offset_ms) < abs(closest):
            self._window_closest = offset_ms

    def _advance(self, floor: int, wall: int | None = None) -> int:
        """The wall clock's stamp if it is past `floor`, else `floor + 1` (overflowing into physical)."""
        candidate = (self.wall_ms() if wall is None else wall) << LOGICAL_BITS
        stamp = candidate if candidate > floor else floor + 1
        if stamp > MAX_STAMP:
            raise HlcError("the HLC reached 2**64: the wall clock is wildly wrong")
        self._last = stamp
        return stamp
