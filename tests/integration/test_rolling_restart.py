"""Rolling restart: SIGTERM one node at a time under write load, as an upgrade does (docs/deploy.md §5).

Each node in turn is stopped gracefully (it hands its leaderships away first),
misses some writes, and is started again; a load balancer must not route to
it until /health/ready says so, and that must mean it caught up.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import MakeCluster
from tests.integration.harness import Cluster, http_get, wait_until
from tests.integration.load import WriteStream, lost_or_changed, read_all

MAX_LAG = 20  # entries a ready replica may trail the shard's commit index
MISSED_WRITES = 150  # written while a node is down: far more than MAX_LAG


def committed_by_shard(cluster: Cluster, among: list[int]) -> dict[int, int]:
    """Each shard's commit index, as its leader among `among` reports it."""
    committed: dict[int, int] = {}
    for node_id in among:
        status = cluster.status(node_id)
        assert status is not None, f"node {node_id} did not answer"
        for line in status["shards"]:
            if line["role"] == "leader":
                committed[line["shard_id"]] = line["commit_index"]
    return committed


def readiness(cluster: Cluster, node_id: int, want: int) -> dict[str, Any] | None:
    status, body = http_get(cluster, node_id, "/health/ready", timeout_s=1.0)
    return body if status == want else None


def restart(cluster: Cluster, stream: WriteStream, node_id: int) -> None:
    """SIGTERM `node_id`, let it miss writes, start it again; check what it says until it is ready."""
    others = cluster.followers(node_id)
    stream.wait_for_more(30, 20.0, "writes before the stop")
    code = cluster.terminate(node_id)
    stream.wait_for_more(MISSED_WRITES, 30.0, "writes while it is down")
    committed = committed_by_shard(cluster, others)

    # With its peers stopped it can know no leader: it must say it is not ready, and why.
    for other in others:
        cluster.pause(other)
    cluster.start(node_id)
    not_ready = wait_until(lambda: readiness(cluster, node_id, 503), 15.0, f"node {node_id} not ready")
    for other in others:
        cluster.resume(other)
    ready = wait_until(lambda: readiness(cluster, node_id, 200), 30.0, f"node {node_id} ready")

    assert code == 0, f"node {node_id} exited with {code} on SIGTERM"
    assert any("no leader known" in reason for reason in not_ready["reasons"]), not_ready
    behind = {
        shard: (ready["shards"][str(shard)]["applied_index"], index)
        for shard, index in committed.items()
        if ready["shards"][str(shard)]["applied_index"] < index - MAX_LAG
    }
    assert not behind, f"node {node_id} said ready while behind (applied, committed): {behind}"


def test_a_rolling_restart_under_write_load_loses_no_write_and_fails_no_client(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(http=True, cluster={"data_shards": 2}, ready_max_lag_entries=MAX_LAG)
    stream = WriteStream(cluster, threads=3, prefix="roll", timeout_s=10.0).start()

    for node_id in cluster.node_ids:
        restart(cluster, stream, node_id)
    stream.stop()

    assert not stream.errors, stream.errors
    assert not stream.unknown, f"{len(stream.unknown)} writes not acknowledged within 10 s of retries"
    for node_id in cluster.node_ids:
        lost = lost_or_changed(stream, read_all(cluster, node_id, "roll/"))
        assert not lost, f"node {node_id}: {len(lost)} acknowledged writes lost, e.g. {lost[:5]}"
    status, text = http_get(cluster, cluster.node_ids[-1], "/metrics")
    applied = {
        sample.labels["shard"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "confman_shard_applied_index"
        for sample in family.samples
    }
    assert status == 200
    assert set(applied) == {"0", "1", "2"}
