"""Taking a node out of a running cluster and bringing its id back, by config and SIGHUP alone.

A joined node that holds a replica cannot be removed (the peers stay, the log says which
shards); once its replicas are moved away, deleting its [[peers]] entry and sending SIGHUP
removes it with no restart, and its id may later come back with a new, empty data dir.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

from tests.integration.conftest import MakeCluster
from tests.integration.harness import Cluster, Writer, ok, wait_until

FOUNDERS = [1, 2, 3]


def place(cluster: Cluster, shard: int, nodes: list[int]) -> None:
    """Put `shard` on `nodes` and wait until each of them has exactly those as its voters."""
    ok(cluster.call(1, {"op": "set_replicas", "data_shard": shard, "replicas": nodes}))

    def placed(node_id: int) -> bool:
        status = cluster.status(node_id, shard=shard)
        return status is not None and (status["voters"], status["learners"]) == (sorted(nodes), [])

    wait_until(lambda: all(placed(n) for n in nodes) or None, 30.0, f"shard {shard} on {nodes}")


def peers_of(cluster: Cluster, node_id: int) -> list[int]:
    status = cluster.status(node_id)
    assert status is not None
    return list(status["nodes"])


def confctl(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    endpoints = ",".join(cluster.client_address(n) for n in FOUNDERS)
    command = [sys.executable, "-m", "confctl", "--endpoints", endpoints, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_a_joined_node_is_removed_by_sighup_once_it_holds_nothing_and_its_id_may_come_back(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(size=4, joins=1)
    place(cluster, 1, [1, 2, 4])

    for node_id in FOUNDERS:  # too early: node 4 holds a replica of shard 1
        cluster.rewrite_config(node_id, FOUNDERS)
        cluster.sighup(node_id, "SIGHUP: reloaded")
    refused = [peers_of(cluster, n) for n in FOUNDERS]
    emptied = confctl(cluster, "node", "remove", "4")  # moves shard 1 off node 4
    cluster.terminate(4)
    for node_id in FOUNDERS:
        cluster.sighup(node_id, "removed from the peers")
    removed = [peers_of(cluster, n) for n in FOUNDERS]
    confirmed = confctl(cluster, "node", "remove", "4")
    writer = Writer(cluster.addresses(FOUNDERS))
    write = writer.put("app/without-4", b"1", timeout_s=10.0)
    writer.close()

    shutil.rmtree(cluster.data_dir(4))  # the host comes back empty, under the same id
    for node_id in FOUNDERS:
        cluster.rewrite_config(node_id, [*FOUNDERS, 4])
        cluster.sighup(node_id, "node 4 added to the peers")
    cluster.start(4)
    added = confctl(cluster, "node", "add", "4", "--no-rebalance")
    place(cluster, 1, [1, 2, 4])
    transferred = confctl(cluster, "leader", "transfer", "1", "4", "-o", "json")
    read = ok(cluster.call(4, {"op": "get", "key": "app/without-4"}))

    assert refused == [[1, 2, 3, 4]] * 3
    assert "node 4 still holds replicas of shards [1]" in cluster.log_text(1)
    assert emptied.returncode == 0, emptied.stderr
    assert "nodes [1, 2, 3] still list it" in emptied.stderr
    assert removed == [FOUNDERS] * 3
    assert "node 4 is out of the cluster" in confirmed.stderr
    assert write is not None
    assert "node 4 removed from the peers; its id may come back" in cluster.log_text(1)
    assert added.returncode == 0, added.stderr
    assert transferred.returncode == 0, transferred.stderr
    assert '"leader": 4' in transferred.stdout
    assert read["value"] == b"1"
    assert "refus" not in cluster.log_text(4).lower()
