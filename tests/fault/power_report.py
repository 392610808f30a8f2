"""What the power cuts of a run did, in numbers: for report.md and the quick tier's output.

Every power-loss nemesis records in its window's `done` the nodes it cut,
the unsynced bytes each cut dropped, and whether the cut landed inside an
fsync (tests/fault/nemesis.py); this module adds them up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tests.fault.nemesis import POWER_NEMESES, FaultWindow


@dataclass(frozen=True, slots=True)
class PowerTotals:
    windows: int
    cuts: int
    mid_fsync: int
    dropped_bytes: int

    def line(self) -> str:
        return (
            f"{self.cuts} power cuts in {self.windows} windows ({self.mid_fsync} inside an fsync), "
            f"{self.dropped_bytes} unsynced bytes dropped"
        )


def power_totals(windows: Sequence[FaultWindow]) -> PowerTotals:
    power = [w for w in windows if w.name in POWER_NEMESES]
    return PowerTotals(
        windows=len(power),
        cuts=sum(len(w.done.get("nodes", [])) for w in power),
        mid_fsync=sum(sum(w.done.get("mid_fsync", [])) for w in power),
        dropped_bytes=sum(sum(w.done.get("dirty_bytes", [])) for w in power),
    )


def power_markdown(windows: Sequence[FaultWindow]) -> list[str]:
    """A report.md section, or nothing when the run cut no power."""
    totals = power_totals(windows)
    if not totals.windows:
        return []
    return ["", "## Power loss", "", f"- {totals.line()}"]
