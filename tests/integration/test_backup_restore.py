"""Backup and restore across real clusters: every key, version, history and audit record comes back.

A loaded 3-node cluster with two data shards (and a partition moved, so that ownership
travels in the shards' state) is backed up shard by shard from the leaders; each node of a
new cluster is seeded from the file, and the new cluster serves exactly what the old held.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from confmand.protocol.shardmap import ShardMap
from tests.integration.conftest import MakeCluster
from tests.integration.harness import Cluster, Writer, ok, wait_until

NAMESPACES = ("app", "db", "web", "cache", "auth", "queue")


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *command], capture_output=True, text=True, timeout=120, check=False
    )


def everything(cluster: Cluster, node_id: int, shards: list[int]) -> dict[str, Any]:
    """Every key with its versions, every key's history and every shard's audit log, as served."""
    keys: dict[str, Any] = {}
    audit: dict[int, Any] = {}
    for shard in shards:
        page = ok(cluster.call(node_id, {"op": "list", "prefix": "", "shard": shard, "limit": 1000}))
        assert not page["more"]
        keys.update((item["key"], item) for item in page["items"])
        log = ok(cluster.call(node_id, {"op": "audit", "shard": shard, "limit": 1000}))
        assert not log["more"]
        audit[shard] = log["records"]
    history = {key: ok(cluster.call(node_id, {"op": "history", "key": key}))["versions"] for key in keys}
    return {"keys": keys, "history": history, "audit": audit}


def load(cluster: Cluster, leader: int) -> None:
    for round_ in range(3):
        for i, namespace in enumerate(NAMESPACES):
            for k in range(5):
                cluster.put(leader, f"{namespace}/k{k}", f"{round_}-{i}-{k}".encode())
    ok(cluster.call(leader, {"op": "delete", "key": "app/k0"}))


def test_a_cluster_restored_from_a_backup_serves_every_key_version_history_and_audit_record(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    old = make_cluster(cluster={"partitions": 8, "data_shards": 2})
    leader = old.wait_for_leader()
    ok(old.call(leader, {"op": "move_partition", "partition": 0, "to_shard": 2}))
    wait_until(
        lambda: ShardMap.from_wire(ok(old.call(leader, {"op": "shard_map"}))).owners[0] == 2 or None,
        20.0,
        "partition 0 moved to shard 2",
    )
    load(old, leader)
    before = everything(old, leader, [1, 2])

    endpoints = ",".join(old.client_address(n) for n in old.node_ids)
    path = tmp_path / "cluster.backup"
    saved = run("confctl", "--endpoints", endpoints, "snapshot", "save", str(path))
    new = make_cluster(boot=False, cluster={"partitions": 8, "data_shards": 2}, cluster_id="restored")
    truncated = tmp_path / "truncated.backup"
    truncated.write_bytes(path.read_bytes()[:-100])
    refused = run("confmand", "restore", str(truncated), "--config", str(new.config_path(1)))
    wrote_when_refused = new.data_dir(1).exists()
    restored = [
        run("confmand", "restore", str(path), "--config", str(new.config_path(n))) for n in new.node_ids
    ]
    new.start()
    # Every shard led by its preferred leader as every node sees it: the restored map is newer than
    # the first one, so its placement moves leaderships once, and reads between see no leader.
    new.wait_for_preferred_leaders()
    new_leader = new.wait_for_leader()
    writer = Writer(new.addresses())
    write = writer.put("app/after", b"restored", timeout_s=10.0)
    writer.close()
    assert write is not None
    after = everything(new, new_leader, [1, 2])

    assert saved.returncode == 0, saved.stderr
    assert refused.returncode == 4
    assert "corrupt or truncated" in refused.stderr
    assert not wrote_when_refused, "a refused restore writes nothing"
    assert all(r.returncode == 0 for r in restored), [r.stderr for r in restored]
    assert after["keys"].pop("app/after")["version"] == write["version"]
    assert after["history"].pop("app/after")
    assert after["keys"] == before["keys"]
    assert after["history"] == before["history"]
    assert {s: [r for r in records if r["key"] != "app/after"] for s, records in after["audit"].items()} == (
        before["audit"]
    )
    assert ShardMap.from_wire(ok(new.call(new_leader, {"op": "shard_map"}))).owners[0] == 2
