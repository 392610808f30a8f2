"""Chunks of whole-daemon seeds for `tests.sim.batch.Batch` (worker processes, one per core)."""

from __future__ import annotations

import logging

from confmand.server.faults import DriverFaults
from tests.sim.batch import SeedReport
from tests.sim.daemon.engine import run_seed


def run_daemon_chunk(
    seeds: list[int], duration_s: int | None = None, faults: tuple[str, ...] = ()
) -> list[SeedReport]:
    """Run `seeds` in order (the nodes' own log lines are silenced: the trace says what happened)."""
    logging.disable(logging.CRITICAL)
    switches = DriverFaults.parse(",".join(faults))
    reports = []
    for seed in seeds:
        result = run_seed(seed, switches, None if duration_s is None else float(duration_s))
        violation = result.violation
        reports.append(
            SeedReport(
                seed,
                result.stats.get("turns", 0),
                result.scenario.profile,
                None if violation is None else str(violation),
                None if violation is None else violation.invariant,
            )
        )
    return reports
