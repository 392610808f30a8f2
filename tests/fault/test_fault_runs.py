"""The quick tier of the fault tests: a few short seeded runs mixing faults and all workloads.

Each run boots 3 real nodes behind fault proxies, runs the four workloads under a seeded
schedule, and must end with zero violations and no node exiting unless a fault made it. A
failure prints the history's verdict, the schedule and the command that replays it. One
shorter run kills a node behind the cluster's back and must fail, naming it. The long run is
`./dev jepsen` (tests/fault/run.py).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.fault.cluster import FaultCluster
from tests.fault.report import render_markdown
from tests.fault.runner import RunSettings, run

QUICK_RUNS = [
    RunSettings(seed=1, duration_s=12, nemeses=("kill-leader", "partition-majority-minority", "clock-step")),
    RunSettings(seed=2, duration_s=12, nemeses=("isolate-leader", "pause-random", "one-way-loss")),
    RunSettings(seed=3, duration_s=12, nemeses=("kill-random", "bridge", "restart", "move-partition")),
    RunSettings(seed=4, duration_s=12, nemeses=("move-partition", "kill-leader", "one-way-loss")),
    RunSettings(seed=5, duration_s=12, size=4, nemeses=("move-replica", "kill-random", "move-partition")),
]


@pytest.mark.parametrize("settings", QUICK_RUNS, ids=lambda s: f"seed{s.seed}")
def test_a_short_fault_run_ends_with_no_violation(settings: RunSettings, tmp_path: Path) -> None:
    result = run(settings, tmp_path)

    assert result.ok, result.summary()
    assert result.exits == [], result.summary()  # kill-leader, kill-random and restart are planned
    assert result.linearizability.verdict == "ok", result.summary()
    assert sum(op.outcome == "ok" for op in result.history) > 100, result.summary()


# One fault window (1.65-2.95 s) that touches no process, so the only exit is ours.
SILENT_DEATH_RUN = RunSettings(seed=7, duration_s=4, nemeses=("one-way-loss",), register_clients=3)


def test_a_node_killed_behind_the_clusters_back_fails_the_run_with_its_exit_code_and_log(
    tmp_path: Path,
) -> None:
    victims: list[int] = []

    def kill_a_follower_with_os_kill(cluster: FaultCluster) -> None:
        victim = cluster.followers(cluster.wait_for_leader())[0]
        victims.append(victim)
        os.kill(cluster.process(victim).pid, signal.SIGKILL)

    result = run(SILENT_DEATH_RUN, tmp_path, behind_the_back=kill_a_follower_with_os_kill)

    (victim,) = victims
    assert not result.ok
    assert result.problems == [], result.summary()  # the run itself was fine: only the death fails it
    assert result.linearizability.verdict == "ok", result.summary()
    assert result.verdict == f"UNPLANNED EXIT (node {victim})"
    assert [(e.node_id, e.exit_code, e.how) for e in result.exits] == [
        (victim, -signal.SIGKILL, "killed by SIGKILL")
    ]
    (death,) = result.exits
    log_now = (tmp_path / "logs" / f"node{victim}.log").read_text().splitlines()
    assert 0 < len(death.log_tail) <= 30
    assert _is_contiguous_in(death.log_tail, log_now), "the tail is not a run of the node's log lines"
    assert f"node {victim} exited unplanned (killed by SIGKILL, code -9)" in result.summary()
    assert death.log_tail[-1] in result.summary()
    report = render_markdown(result, picture_note="(no picture)")
    assert f"UNPLANNED EXIT (node {victim})" in report.splitlines()[0]
    assert "## Unplanned node exits" in report
    assert death.log_tail[-1] in report


def _is_contiguous_in(lines: tuple[str, ...], log: list[str]) -> bool:
    return any(tuple(log[i : i + len(lines)]) == lines for i in range(len(log) - len(lines) + 1))
