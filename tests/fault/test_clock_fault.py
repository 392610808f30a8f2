"""A clock fault on one node costs at most that node: real processes, one wall clock stepped 47 s.

The scenario that once locked clients out of the whole cluster: a node's clock runs 47 s
ahead, clients pick up its stamps, the clock comes back, and every client sending the
largest stamp it saw got CLOCK_SKEW from every node for about 46 s. Now a stamp far ahead
is served without being merged, and the node whose clock is off from both its peers stamps
nothing, hands its leadership away and says so in `status`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from confmand.hlc import unpack
from tests.fault.cluster import FaultCluster, assert_nothing_left_running
from tests.integration.harness import Reply, error_code, ok, wait_until

AHEAD_MS = 47_000


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[FaultCluster]:
    c = FaultCluster(tmp_path, size=3, seed=3)
    try:
        c.boot()
        yield c
    finally:
        c.close()
    assert_nothing_left_running()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def test_a_stamp_from_a_clock_that_ran_ahead_locks_no_client_out(cluster: FaultCluster) -> None:
    leader = cluster.wait_for_leader()
    cluster.step_clock(leader, AHEAD_MS)

    def far_stamp() -> int | None:
        reply = cluster.call(leader, {"op": "ping"}, 1.0)
        stamp = reply.get("hlc") if reply is not None else None
        return stamp if isinstance(stamp, int) and unpack(stamp)[0] > now_ms() + AHEAD_MS // 2 else None

    far = wait_until(far_stamp, 5.0, f"node {leader} to hand out a stamp {AHEAD_MS} ms ahead")
    cluster.step_clock(leader, 0)

    codes: list[str | None] = []
    for node in cluster.node_ids:

        def served(node: int = node) -> Reply | None:
            reply = cluster.call(node, {"op": "put", "key": f"clock/{node}", "value": b"v", "hlc": far}, 2.0)
            codes.append(error_code(reply))
            return reply if reply is not None and reply["ok"] else None

        ok(wait_until(served, 10.0, f"node {node} to serve a put stamped {AHEAD_MS} ms ahead"))
    assert "CLOCK_SKEW" not in codes


def test_a_node_whose_clock_is_off_from_both_peers_stops_stamping_and_leading(cluster: FaultCluster) -> None:
    leader = cluster.wait_for_leader()
    cluster.step_clock(leader, AHEAD_MS)

    def faulty() -> Reply | None:
        status = cluster.status(leader)
        return status if status is not None and status["clock_fault"] else None

    status = wait_until(faulty, 10.0, f"node {leader} to see its clock off from its peers")
    assert status["hlc"] is None
    assert status["clock_peer_offset_ms"] <= -AHEAD_MS // 2

    def written_elsewhere() -> Reply | None:
        reply = cluster.call(leader, {"op": "put", "key": "clock/after", "value": b"v"}, 2.0)
        return reply if reply is not None and reply["ok"] and reply["node"] != leader else None

    put = wait_until(written_elsewhere, 15.0, "a write through the faulty node to commit at another leader")
    assert put["hlc"] is not None
    assert unpack(put["hlc"])[0] < now_ms() + AHEAD_MS // 2
    for node in cluster.followers(leader):
        assert (cluster.status(node) or {}).get("clock_fault") is None
