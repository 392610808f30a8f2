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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

LOGICAL_BITS: Final = 16
MAX_LOGICAL: Final = (1 << LOGICAL_BITS) - 1
MAX_STAMP: Final = (1 << 64) - 1
MAX_PHYSICAL_MS: Final = MAX_STAMP >> LOGICAL_BITS


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

    __slots__ = ("_last", "_wall_ms", "max_offset_ms", "offset_ms", "rejected")

    def __init__(self, wall_ms: Callable[[], int], max_offset_ms: int) -> None:
        if max_offset_ms < 0:
            raise ValueError(f"max_offset_ms must be >= 0 (got {max_offset_ms})")
        self._wall_ms = wall_ms
        self.max_offset_ms = max_offset_ms
        # Test-only: added to the wall clock, so fault tests can step one node's clock.
        self.offset_ms = 0
        # How many remote stamps update() refused for skew.
        self.rejected = 0
        self._last = 0

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
        if remote_ms - wall > self.max_offset_ms:
            self.rejected += 1
            raise ClockSkewError(remote_ms, wall, self.max_offset_ms)
        return self._advance(max(self._last, remote), wall)

    def _advance(self, floor: int, wall: int | None = None) -> int:
        """The wall clock's stamp if it is past `floor`, else `floor + 1` (overflowing into physical)."""
        candidate = (self.wall_ms() if wall is None else wall) << LOGICAL_BITS
        stamp = candidate if candidate > floor else floor + 1
        if stamp > MAX_STAMP:
            raise HlcError("the HLC reached 2**64: the wall clock is wildly wrong")
        self._last = stamp
        return stamp
