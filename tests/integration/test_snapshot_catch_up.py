"""A follower that was down while the leader compacted its log past it catches up by snapshot.

With snapshots every 50 entries and 10 entries kept behind each, a few
hundred writes while a follower is stopped leave the leader without the
entries the follower needs next; only a snapshot can bring it back.

The leader has applied past its stored snapshot when the follower returns, so the
snapshot it sends is made at its applied index (confmand/storage/shard_storage.py,
"Snapshots"). The puts carry no session: a snapshot whose meta said an older index
than its state would have the follower apply those puts twice, which shows in each
key's change count.
"""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import MakeCluster
from tests.integration.harness import Cluster, ok

RETAIN = 10
KEYS = 20


def pipelined_puts(
    cluster: Cluster, node_id: int, count: int, window: int = 50
) -> dict[str, tuple[bytes, str]]:
    """`count` puts to `node_id`, `window` in flight at a time; per key the last (value, version)."""
    conn = cluster.conn(node_id)
    last: dict[str, tuple[bytes, str]] = {}
    for start in range(0, count, window):
        sent = {}
        for i in range(start, min(start + window, count)):
            rid = 1_000_000 + i
            key, value = f"snap/{i % KEYS:02d}", str(i).encode()
            conn.send({"v": 1, "id": rid, "op": "put", "key": key, "value": value})
            sent[rid] = (key, value)
        while sent:
            reply = ok(conn.receive(5.0), "a pipelined put")
            key, value = sent.pop(reply["id"])
            if key not in last or index_of(reply["version"]) > index_of(last[key][1]):
                last[key] = (value, reply["version"])
    return last


def index_of(version: str) -> int:
    return int(version.split(":")[1])


def test_a_follower_behind_the_compacted_log_catches_up_by_snapshot(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(snapshot_interval_entries=50, log_retain_entries=RETAIN)
    leader = cluster.wait_for_leader()
    follower = cluster.followers(leader)[0]
    first = cluster.put(leader, "snap/first", b"before the stop")
    behind = cluster.wait_applied(follower, index_of(first["version"]))["last_index"]
    assert cluster.terminate(follower) == 0

    latest = pipelined_puts(cluster, leader, 400)
    leader_status = applied_past_snapshot(cluster, leader, latest)
    compacted_to = leader_status["first_index"] - 1
    assert compacted_to > behind + 1, "the leader still holds the entries the follower needs next"
    assert leader_status["snapshot_index"] >= compacted_to

    cluster.start(follower)
    status = cluster.wait_applied(follower, leader_status["applied_index"])
    newest = max((version for _, version in latest.values()), key=index_of)
    reads = {
        key: ok(
            cluster.call(follower, {"op": "get", "key": key, "consistency": "version", "min_version": newest})
        )
        for key in latest
    }
    on_leader = {key: ok(cluster.call(leader, {"op": "get", "key": key})) for key in latest}

    assert status["applied_index"] >= leader_status["applied_index"]
    for key, reply in reads.items():
        assert (reply["value"], reply["version"]) == latest[key]
        assert (reply["create_version"], reply["changes"]) == (
            on_leader[key]["create_version"],
            on_leader[key]["changes"],
        ), key


def applied_past_snapshot(
    cluster: Cluster, leader: int, latest: dict[str, tuple[bytes, str]], past: int = 3
) -> dict[str, Any]:
    """The leader's status once it has applied `past` entries beyond its stored snapshot (a few
    more puts, each recorded in `latest`)."""
    for i in range(60):
        status = cluster.status(leader)
        assert status is not None
        if status["applied_index"] >= status["snapshot_index"] + past:
            return status
        key = f"snap/{i % KEYS:02d}"
        reply = cluster.put(leader, key, b"past the snapshot %d" % i)
        latest[key] = (b"past the snapshot %d" % i, reply["version"])
    raise AssertionError("the leader never got past its latest snapshot")
