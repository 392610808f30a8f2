"""bench/vs_etcd.py: its ratios, goals and snapshot-window split, and (where etcd and Go are
installed) one tiny run end to end.

The pure checks always run. The end-to-end run needs Debian's etcd-server and the Go load
generator's build dependencies (`./dev bench vs-etcd` installs them); a machine without them
skips it and says what is missing. It checks that the benchmark runs and reports, not speed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from array import array
from pathlib import Path

import pytest

from bench._loadgen import missing_tools
from bench._report import Value
from bench.vs_etcd import SCENARIOS, _snapshot_spike, etcd_counterpart, goals, parse_args, ratios

REPO_ROOT = Path(__file__).resolve().parents[2]


def round_of(
    etcd: dict[str, dict[str, Value]], confman: dict[str, dict[str, Value]]
) -> dict[str, dict[str, dict[str, Value]]]:
    return {"etcd": etcd, "confman": confman}


def test_ratios_are_medians_of_the_per_round_ratios_confman_over_etcd() -> None:
    rounds = [
        round_of({"put": {"ops_per_s": 100.0}}, {"put": {"ops_per_s": 150.0}}),
        round_of({"put": {"ops_per_s": 100.0}}, {"put": {"ops_per_s": 90.0}}),
        round_of({"put": {"ops_per_s": 200.0}}, {"put": {"ops_per_s": 400.0}}),
    ]

    summary = ratios(rounds)

    assert summary["put_ratio_ops"] == 1.5
    assert summary["put_ratio_ops_rounds"] == "1.500 0.900 2.000"
    assert summary["put_etcd_ops_per_s"] == 100.0
    assert summary["put_confman_ops_per_s"] == 150.0


def test_spread_puts_are_compared_with_etcds_puts_one_raft_group_has_no_shards() -> None:
    rounds = [round_of({"put": {"p99_ms": 10.0}}, {"put_64_shards": {"p99_ms": 5.0}})]

    summary = ratios(rounds)

    assert etcd_counterpart("put_64_shards_1024b") == "put_1024b"
    assert summary["put_64_shards_ratio_p99"] == 0.5


def test_each_goal_is_met_only_on_its_side_of_the_threshold() -> None:
    at_threshold: dict[str, Value] = {
        "put_ratio_ops": 1.5,
        "put_ratio_p99": 1.0,
        "get_ratio_ops": 2.0,
        "seq_put_ratio_p50": 1.0,
        "seq_get_ratio_p50": 1.0,
        "put_ratio_cpu_per_op": 1.0,
        "put_confman_near_snapshot_p999_ms": 20.0,
        "put_confman_away_from_snapshot_p99_ms": 10.0,
    }
    beyond: dict[str, Value] = {
        k: (v * 0.99 if k in {"put_ratio_ops", "get_ratio_ops"} else v * 1.01)
        for k, v in at_threshold.items()
        if isinstance(v, float)
    }
    beyond["put_confman_away_from_snapshot_p99_ms"] = 10.0

    assert all(goals(at_threshold).values())
    assert not any(goals(beyond).values())
    assert set(goals({}).values()) == {None}, "a goal whose figure was not measured is neither met nor not"


def test_replies_within_half_a_second_of_a_snapshot_are_judged_apart_from_the_rest() -> None:
    second = 1_000_000_000
    ms = 1_000_000
    replies = [(10 * second + i * ms, 5 * ms) for i in range(1000)]  # 10.000-10.999 s, 5 ms each
    replies += [(20 * second + i * ms, (50 if i == 0 else 6) * ms) for i in range(100)]  # near 20.05 s
    samples = array("q", [x for pair in replies for x in pair])

    spike = _snapshot_spike(samples, [20.05])

    assert spike["near_snapshot_replies"] == 100
    assert spike["near_snapshot_p999_ms"] == 50.0
    assert spike["away_from_snapshot_p99_ms"] == 5.0
    assert spike["snapshots_in_window"] == 1


def test_unknown_scenarios_are_refused_by_name() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--scenarios", "put,puts"])
    assert parse_args(["--scenarios", ",".join(SCENARIOS)]).scenarios == list(SCENARIOS)


@pytest.mark.skipif(bool(missing_tools()), reason=f"etcd / Go build tools missing: {missing_tools()}")
def test_a_tiny_run_against_both_systems_reports_every_figure_and_goal() -> None:
    done = subprocess.run(
        [
            sys.executable, "bench/vs_etcd.py", "--json", "--rounds", "1",
            "--scenarios", "put,get,seq_put,seq_get", "--values", "100", "--curve", "",
            "--clients", "8", "--conns", "2", "--keys", "64", "--warmup", "0.3", "--duration", "1",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,  # only a guard against a hang: a loaded 2-core machine is slow
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for name in ("put", "get", "seq_put", "seq_get"):
        for system in ("etcd", "confman"):
            assert result[f"{name}_{system}_ops_per_s"] > 0
            assert result[f"{name}_{system}_errors"] == 0
        assert result[f"{name}_ratio_ops"] > 0
    assert result["put_confman_server_cpu_ms_per_op"] > 0
    assert isinstance(result["goal_writes_1_5x_etcd_met"], bool)
    assert isinstance(result["goal_one_client_get_p50_met"], bool)
