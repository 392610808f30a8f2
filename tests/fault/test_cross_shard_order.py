"""Cross-shard order: the merged audit log of every shard follows causality, whatever one clock says.

A client writes A on one shard and, after A's reply, B on another shard whose leader's wall
clock is stepped back several seconds. The client carries A's HLC stamp into B's request; the
stepped node, off from both its peers, stamps nothing and hands its leadership away, so B is
stamped by a node whose clock is sound and comes after A in the merged audit.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from confctl.client import Client
from tests.fault.cluster import FaultCluster, assert_nothing_left_running
from tests.integration.harness import ClusterOptions, Reply, wait_until

BEHIND_MS = -5_000
# Enough shards that two of them have different leaders: all 16 led by one of 3 nodes after the
# first elections has a chance of 3 / 3**16 (with 4 shards it was 1 in 27, and the test failed).
SHARDS = 16


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[FaultCluster]:
    c = FaultCluster(
        tmp_path, size=3, seed=5, options=ClusterOptions(cluster={"partitions": 64, "data_shards": SHARDS})
    )
    try:
        c.boot()
        yield c
    finally:
        c.close()
    assert_nothing_left_running()


def _shard_leaders(cluster: FaultCluster) -> dict[int, int]:
    def all_led() -> dict[int, int] | None:
        status = cluster.status(1)
        if status is None:
            return None
        leaders = {line["shard_id"]: line["leader_id"] for line in status["shards"] if line["shard_id"]}
        return leaders if None not in leaders.values() else None

    return wait_until(all_led, 15.0, "a leader for every data shard")


def test_a_write_after_another_comes_after_it_in_the_merged_audit_though_its_leaders_clock_is_behind(
    cluster: FaultCluster,
) -> None:
    endpoints = [cluster.client_address(n) for n in cluster.node_ids]
    with Client(endpoints, timeout_s=10.0) as client:
        shard_map = client.shard_map().map
        leaders = _shard_leaders(cluster)
        shard_a = min(leaders)
        shard_b = next(s for s in sorted(leaders) if leaders[s] != leaders[shard_a])
        a = next(f"a{i}" for i in range(500) if shard_map.shard_of(f"a{i}") == shard_a)
        b = next(f"b{i}" for i in range(500) if shard_map.shard_of(f"b{i}") == shard_b)
        stepped = leaders[shard_b]
        cluster.step_clock(stepped, BEHIND_MS)

        def faulty() -> Reply | None:
            status = cluster.status(stepped)
            return status if status is not None and status["clock_fault"] else None

        wait_until(faulty, 10.0, f"node {stepped} to see its clock off from its peers")

        client.put(f"{a}/key", b"A")
        client.put(f"{b}/key", b"B")
        audit = client.audit(limit=100)

    order = [r.key for r in audit.records]
    assert order.index(f"{a}/key") < order.index(f"{b}/key"), audit.records
    stamps = {r.key: (r.hlc, r.shard) for r in audit.records}
    assert stamps[f"{a}/key"][0] < stamps[f"{b}/key"][0]
    assert (stamps[f"{a}/key"][1], stamps[f"{b}/key"][1]) == (shard_a, shard_b)
