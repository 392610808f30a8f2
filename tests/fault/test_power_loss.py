"""Power loss on real processes: acknowledged writes survive the plug being pulled.

Each node's data dir is a lazy filesystem (tests/fault/lazyfs.py) that drops
every byte not fsynced when the power goes. The machinery first: a node's
data dir is such a mount, an acknowledged write survives a power cut of
every node, and a node whose disk lost a file refuses to start, saying so,
instead of serving. Then the quick run: the four workloads under a seeded
schedule of power cuts (one node, the leader, a majority in turn, a node
inside an fsync), judged by the same checks as every fault run: zero
violations, no acknowledged write lost, every node back up.

Longer runs: `./dev jepsen NEMESIS=power` (docs/testing.md). Skipped, with
the reason, where FUSE cannot be mounted (not root, no /dev/fuse, no libfuse3).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fault.cluster import assert_nothing_left_running
from tests.fault.lazymount import MOUNTS, is_mounted, unavailable
from tests.fault.power import PowerCluster
from tests.fault.power_report import power_totals
from tests.fault.runner import WRITES, RunSettings, run
from tests.integration.harness import ok, wait_until

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=unavailable() or "")

# Seed 149 over 18 s: a follower cut inside an fsync, the whole cluster at once, a majority in
# turn, the leader, then a planned node: eight power cuts.
POWER_RUN = RunSettings(
    seed=149,
    duration_s=18,
    nemeses=(
        "power-loss-leader",
        "power-loss-mid-write",
        "power-loss-majority-in-turn",
        "power-loss-random",
        "power-loss-all",
    ),
)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[PowerCluster]:
    cluster = PowerCluster(tmp_path, size=3, seed=5)
    try:
        cluster.boot()
        yield cluster
    finally:
        cluster.close()
        assert not MOUNTS, "a lazy filesystem outlived its cluster"
        assert_nothing_left_running()


def test_every_data_dir_is_a_lazy_mount_over_its_own_disk(cluster: PowerCluster) -> None:
    for node in cluster.node_ids:
        assert is_mounted(cluster.data_dir(node))
        assert os.listdir(cluster.mounts[node].backing), f"node {node} wrote nothing to its disk"


def test_an_acknowledged_write_survives_a_power_cut_of_every_node(cluster: PowerCluster) -> None:
    leader = cluster.wait_for_leader()
    version = ok(cluster.call(leader, {"op": "put", "key": "pl/k", "value": b"durable"}))["version"]

    for node in cluster.node_ids:
        cluster.power_loss(node)
    assert not any(is_mounted(cluster.data_dir(n)) for n in cluster.node_ids)
    cluster.start()
    leader = cluster.wait_for_leader()

    reply = ok(cluster.call(leader, {"op": "get", "key": "pl/k"}))
    assert reply["value"] == b"durable"
    assert reply["version"] == version


def test_a_power_cut_inside_an_fsync_loses_nothing_acknowledged(cluster: PowerCluster) -> None:
    leader = cluster.wait_for_leader()
    ok(cluster.call(leader, {"op": "put", "key": "pl/before", "value": b"v"}))
    cluster.mounts[leader].arm_hang()
    # This write's fsync on the leader never returns; a majority of the others may still commit it.
    cluster.conn(leader).send({"v": 1, "id": 1, "op": "put", "key": "pl/during", "value": b"w"})
    assert cluster.mounts[leader].wait_hung(timeout_s=5.0) is not None

    loss = cluster.power_loss(leader)
    cluster.start(leader)
    new_leader = cluster.wait_for_leader()

    assert loss.dirty_files >= 1, "the hung fsync's data was still unsynced when the power went"
    assert ok(cluster.call(new_leader, {"op": "get", "key": "pl/before"}))["value"] == b"v"
    cluster.wait_applied(leader, ok(cluster.call(new_leader, {"op": "status"}))["commit_index"])


def test_a_node_whose_disk_lost_a_file_refuses_to_start_and_says_why(cluster: PowerCluster) -> None:
    leader = cluster.wait_for_leader()
    ok(cluster.call(leader, {"op": "put", "key": "pl/k", "value": b"v"}))
    victim = cluster.followers(leader)[0]
    cluster.power_loss(victim)
    (cluster.mounts[victim].backing / "CURRENT").unlink()  # what a lost directory entry would do

    cluster.start(victim)
    process = cluster.process(victim)
    wait_until(lambda: process.poll() is not None, 15.0, f"node {victim} to refuse to start")

    assert process.returncode > 0
    assert "CURRENT" in cluster.log_text(victim), cluster.log_text(victim)[-2000:]
    assert cluster.refusals(), "a refusal is reported as a problem of the run"


def test_a_short_power_loss_run_loses_no_acknowledged_write(tmp_path: Path) -> None:
    result = run(POWER_RUN, tmp_path)

    ops = list(result.history)
    acknowledged = sum(op.outcome == "ok" and op.kind in WRITES for op in ops)
    power = power_totals(result.windows)
    print(f"power-loss run: {len(ops)} ops, {acknowledged} acknowledged writes, {power.line()}")
    assert result.ok, result.summary()
    assert result.linearizability.verdict == "ok", result.summary()
    assert {w.name for w in result.windows} == set(POWER_RUN.nemeses), result.summary()
    assert power.cuts >= 7, result.summary()
    assert power.mid_fsync >= 1, "no power cut landed inside an fsync"
    assert acknowledged > 100, result.summary()
