"""/health, /health/ready and /metrics of real nodes: a settled cluster, a lost quorum, a stopped loop."""

from __future__ import annotations

import functools
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import MakeCluster
from tests.integration.harness import Cluster, http_get, ok, wait_until


def test_every_node_of_a_settled_cluster_is_healthy_ready_and_scrapable(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(http=True)
    leader = cluster.wait_for_leader()
    ok(cluster.put(leader, "app/x", b"1"))

    for node_id in cluster.node_ids:
        health = http_get(cluster, node_id, "/health")
        ready = wait_until(functools.partial(_ready, cluster, node_id), 5.0, f"node {node_id} ready")
        status, text = http_get(cluster, node_id, "/metrics")
        families = {f.name: f for f in text_string_to_metric_families(text)}

        assert health[0] == 200
        assert ready["reasons"] == []
        assert status == 200
        roles = [s for s in families["confman_shard_role"].samples if s.value == 1]
        assert {s.labels["shard"] for s in roles} == set(ready["shards"])
        round_trips = {
            s.labels["peer"]: s.value
            for s in families["confman_peer_rtt_seconds"].samples
            if s.name == "confman_peer_rtt_seconds_count"
        }
        assert set(round_trips) == {str(n) for n in cluster.node_ids if n != node_id}
        assert all(count > 0 for count in round_trips.values())


def _ready(cluster: Cluster, node_id: int) -> dict[str, Any] | None:
    status, body = http_get(cluster, node_id, "/health/ready")
    return body if status == 200 else None


def test_a_node_cut_off_from_its_quorum_is_not_ready_and_says_why(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(http=True)
    survivor = cluster.wait_for_leader()
    for node_id in cluster.followers(survivor):
        cluster.kill(node_id)

    def not_ready() -> dict[str, Any] | None:
        status, body = http_get(cluster, survivor, "/health/ready")
        return body if status == 503 else None

    body = wait_until(not_ready, 10.0, f"node {survivor} to report not ready")
    assert any(reason.endswith("no leader known") for reason in body["reasons"])
    assert http_get(cluster, survivor, "/health")[0] == 200  # alive, just not able to serve


def test_a_stopped_loop_answers_no_health_check(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(http=True, size=1)

    cluster.pause(1)
    stopped = http_get(cluster, 1, "/health", timeout_s=1.0)
    cluster.resume(1)
    resumed = http_get(cluster, 1, "/health", timeout_s=5.0)

    assert stopped[0] == 0
    assert resumed[0] == 200
