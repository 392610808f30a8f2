"""A leader stopped with SIGTERM hands its leadership to a follower before it exits."""

from __future__ import annotations

import time

from tests.integration.conftest import MakeCluster
from tests.integration.harness import ok


def test_a_leader_stopped_with_sigterm_hands_leadership_to_the_most_caught_up_follower(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster()
    leader = cluster.wait_for_leader()
    ok(cluster.put(leader, "stop/before", b"1"))

    stopped_at = time.monotonic()
    code = cluster.terminate(leader)
    successor = cluster.wait_for_leader(timeout_s=5.0, among=cluster.followers(leader))
    elected_s = time.monotonic() - stopped_at
    write = ok(cluster.put(successor, "stop/after", b"2"))

    assert code == 0
    assert f"handing leadership to node {successor}" in cluster.log_text(leader)
    # Had the transfer failed, the leader would have waited 2 s for it before exiting.
    assert elected_s < 1.5, f"took {elected_s:.2f} s"
    assert write["node"] == successor
