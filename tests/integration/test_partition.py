"""A follower cut off from the leader and the other follower (both SIGSTOPped) serves only what it may.

A `stale` read is served at once and says how old it may be; a linearizable
read never returns old data (it fails instead); a `version` read with a
token it has not applied fails with NOT_CAUGHT_UP.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.conftest import MakeCluster
from tests.integration.harness import Cluster, ClusterOptions, Reply, error_code, ok, wait_until

VERSION_READ_WAIT_MS = 300


@pytest.fixture(scope="module")
def cut_off(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, int, Reply]]:
    """(cluster, the cut-off follower, the last write it applied); the others are SIGSTOPped.

    Shared by the module's tests: each only reads from the cut-off follower.
    """
    cluster = Cluster(
        tmp_path_factory.mktemp("partition"),
        ClusterOptions(requests={"version_read_wait_ms": VERSION_READ_WAIT_MS}),
    )
    try:
        leader = cluster.boot()
        follower = cluster.followers(leader)[0]
        write = cluster.put(leader, "cut/key", b"old")
        cluster.wait_applied(follower, int(write["version"].split(":")[1]))
        for other in cluster.followers(follower):
            cluster.pause(other)
        yield cluster, follower, write
    finally:
        cluster.close()  # resumes the paused nodes first


def stale_get(cluster: Cluster, node_id: int) -> Reply:
    return ok(cluster.call(node_id, {"op": "get", "key": "cut/key", "consistency": "stale"}), "stale get")


def test_a_cut_off_follower_serves_stale_reads_whose_staleness_grows(
    cut_off: tuple[Cluster, int, Reply],
) -> None:
    cluster, follower, write = cut_off

    first = stale_get(cluster, follower)
    later = wait_until(
        lambda: (r := stale_get(cluster, follower))["staleness_ms"] >= first["staleness_ms"] + 300 and r,
        5.0,
        "staleness_ms to grow by 300 ms",
    )

    assert (first["value"], first["version"]) == (b"old", write["version"])
    assert (later["value"], later["node"]) == (b"old", follower)


def test_a_cut_off_follower_fails_linearizable_reads_rather_than_serve_old_data(
    cut_off: tuple[Cluster, int, Reply],
) -> None:
    cluster, follower, _ = cut_off

    reply = cluster.call(follower, {"op": "get", "key": "cut/key", "timeout_ms": 500}, timeout_s=5.0)

    assert error_code(reply) in {"NO_QUORUM", "NOT_LEADER", "TIMEOUT"}, reply
    assert reply is not None
    assert reply["error"]["retryable"]


def test_a_cut_off_follower_refuses_a_version_read_newer_than_it_applied(
    cut_off: tuple[Cluster, int, Reply],
) -> None:
    cluster, follower, write = cut_off
    term, index = (int(part) for part in write["version"].split(":"))

    reply = cluster.call(
        follower,
        {"op": "get", "key": "cut/key", "consistency": "version", "min_version": f"{term}:{index + 1}"},
    )

    assert error_code(reply) == "NOT_CAUGHT_UP", reply
    assert reply is not None
    assert reply["error"]["retryable"]


def test_a_resumed_old_leader_never_serves_a_linearizable_read_of_old_data(make_cluster: MakeCluster) -> None:
    cluster = make_cluster()
    old_leader = cluster.wait_for_leader()
    cluster.put(old_leader, "cut/deposed", b"old")
    conn = cluster.conn(old_leader)  # connected now, so the read below reaches its socket while paused
    ok(conn.call({"op": "ping"}))
    cluster.pause(old_leader)
    leader = cluster.wait_for_leader(among=cluster.followers(old_leader))
    new = cluster.put(leader, "cut/deposed", b"new")

    conn.send({"v": 1, "id": 1, "op": "get", "key": "cut/deposed", "timeout_ms": 1000})
    cluster.resume(old_leader)  # the read is waiting in its socket before it sees the new term
    reply = conn.receive(5.0)

    assert reply is not None, "no reply from the resumed old leader"
    if reply["ok"]:
        assert (reply["value"], reply["version"]) == (b"new", new["version"])
    else:
        assert reply["error"]["code"] in {"NOT_LEADER", "NO_QUORUM", "TIMEOUT"}, reply
