"""The quick tier of the fault tests: a few short seeded runs mixing faults and all workloads.

Each run boots 3 real nodes behind fault proxies, runs the four workloads under a seeded
schedule, and must end with zero violations. A failure prints the history's verdict, the
schedule and the command that replays it. The long run is `./dev jepsen` (tests/fault/run.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fault.runner import RunSettings, run

QUICK_RUNS = [
    RunSettings(seed=1, duration_s=12, nemeses=("kill-leader", "partition-majority-minority", "clock-step")),
    RunSettings(seed=2, duration_s=12, nemeses=("isolate-leader", "pause-random", "one-way-loss")),
    RunSettings(seed=3, duration_s=12, nemeses=("kill-random", "bridge", "restart")),
]


@pytest.mark.parametrize("settings", QUICK_RUNS, ids=lambda s: f"seed{s.seed}")
def test_a_short_fault_run_ends_with_no_violation(settings: RunSettings, tmp_path: Path) -> None:
    result = run(settings, tmp_path)

    assert result.ok, result.summary()
    assert result.linearizability.verdict == "ok", result.summary()
    assert sum(op.outcome == "ok" for op in result.history) > 100, result.summary()
