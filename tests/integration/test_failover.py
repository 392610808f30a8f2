"""Leader failure: kill -9 of the leader, a new leader soon, no acknowledged write lost, catch-up by log.

Each test kills a node, so each gets a fresh cluster.
"""

from __future__ import annotations

import time

from tests.integration.conftest import MakeCluster
from tests.integration.harness import Reply, Writer, ok, wait_until
from tests.integration.load import WriteStream, lost_or_changed, read_all

FAILOVER_BOUND_S = 2.0


def test_a_new_leader_serves_a_write_within_two_seconds_of_a_kill_9_of_the_leader(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster()
    old_leader = cluster.wait_for_leader()
    survivors = cluster.followers(old_leader)
    writer = Writer(cluster.addresses(survivors), attempt_s=0.2)

    killed_at = time.monotonic()
    cluster.kill(old_leader)
    reply = writer.put("failover/first", b"after the kill", timeout_s=5.0)
    elapsed_s = time.monotonic() - killed_at
    writer.close()

    assert reply is not None, "no write was acknowledged within 5 s of the kill"
    assert reply["node"] in survivors
    assert elapsed_s < FAILOVER_BOUND_S, f"first acknowledged write {elapsed_s:.2f} s after the kill"


def test_no_acknowledged_write_is_lost_when_the_leader_is_killed_mid_stream(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster()
    old_leader = cluster.wait_for_leader()
    stream = WriteStream(cluster, threads=3, writes_each=100).start()

    wait_until(lambda: stream.count() >= 90, 20.0, "90 writes before the kill")
    cluster.kill(old_leader)
    acked_before_kill = len(stream.acked)
    stream.join(timeout_s=60.0)

    assert not stream.errors, stream.errors
    assert len(stream.acked) > acked_before_kill, "no write was acknowledged after the kill"
    leader = cluster.wait_for_leader(among=cluster.followers(old_leader))
    stored = read_all(cluster, leader, "stream/")
    lost = lost_or_changed(stream, stored)
    assert not lost, f"{len(lost)} acknowledged writes lost or changed, e.g. {lost[:5]}"
    retried_twice = {k: item["changes"] for k, item in stored.items() if item["changes"] != 1}
    assert not retried_twice, (
        f"writes retried across the failover were applied more than once: {retried_twice}"
    )


def test_a_killed_leader_restarted_on_its_data_dir_catches_up_by_log(make_cluster: MakeCluster) -> None:
    cluster = make_cluster()
    old_leader = cluster.wait_for_leader()
    cluster.put(old_leader, "catchup/before", b"0")
    cluster.kill(old_leader)
    leader = cluster.wait_for_leader(among=cluster.followers(old_leader))
    last: Reply = {}
    for i in range(30):
        last = cluster.put(leader, f"catchup/{i % 5}", str(i).encode())
    leader_applied = cluster.status(leader)
    assert leader_applied is not None

    cluster.start(old_leader)
    status = cluster.wait_applied(old_leader, leader_applied["applied_index"])
    read = ok(
        cluster.call(
            old_leader,
            {"op": "get", "key": "catchup/4", "consistency": "version", "min_version": last["version"]},
        )
    )

    assert (status["role"], status["leader_id"]) == ("follower", leader)
    assert leader_applied["first_index"] == 1, "the leader compacted its log: not a log catch-up"
    assert (read["value"], read["version"], read["node"]) == (b"29", last["version"], old_leader)
