"""A node whose data dir was wiped is refused by its peers: it cannot vote or acknowledge again."""

from __future__ import annotations

import shutil

from tests.integration.conftest import MakeCluster
from tests.integration.harness import ok, wait_until


def test_a_node_restarted_on_an_empty_data_dir_is_refused_and_stops_with_how_to_re_add_it(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster()
    leader = cluster.wait_for_leader()
    ok(cluster.put(leader, "app/before", b"1"))
    victim = cluster.followers(leader)[0]
    cluster.kill(victim)
    shutil.rmtree(cluster.data_dir(victim))

    cluster.start(victim)
    process = cluster.process(victim)
    wait_until(lambda: process.poll() is not None, 15.0, f"node {victim} to stop")
    code = process.returncode
    refused = {
        n: ok(cluster.status(n))["counters"].get("peer_dir_refused", 0)
        for n in cluster.node_ids
        if n != victim
    }
    after = ok(cluster.put(leader, "app/after", b"2"))
    before = ok(cluster.call(leader, {"op": "get", "key": "app/before"}))

    assert code == 3  # a data dir problem: systemd does not restart it (RestartPreventExitStatus)
    log = cluster.log_text(victim)
    assert "refuses this node" in log
    assert f"confctl drain {victim}" in log
    assert sum(refused.values()) >= 1
    assert after["ok"]
    assert before["value"] == b"1"


def test_a_node_restarted_on_its_own_data_dir_is_welcomed_back(make_cluster: MakeCluster) -> None:
    cluster = make_cluster()
    leader = cluster.wait_for_leader()
    victim = cluster.followers(leader)[0]

    cluster.kill(victim)
    cluster.start(victim)
    ok(cluster.put(leader, "app/x", b"1"))

    def applied_there() -> bool:
        reply = cluster.call(victim, {"op": "get", "key": "app/x", "consistency": "stale"})
        return reply is not None and bool(reply["ok"])

    caught_up = wait_until(applied_there, 10.0, f"node {victim} to apply the write")

    assert caught_up
    assert cluster.process(victim).poll() is None
    assert all(ok(cluster.status(n))["counters"].get("peer_dir_refused", 0) == 0 for n in cluster.node_ids)
