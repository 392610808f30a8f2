"""Leader failure: kill -9 of the leader, a new leader soon, no acknowledged write lost, catch-up by log.

Each test kills a node, so each gets a fresh cluster.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from tests.integration.conftest import MakeCluster
from tests.integration.harness import Cluster, Reply, Writer, ok, wait_until

FAILOVER_BOUND_S = 2.0


def read_all(cluster: Cluster, node_id: int, prefix: str) -> dict[str, Reply]:
    """Every key under `prefix`, by linearizable list pages from `node_id`."""
    items: dict[str, Reply] = {}
    after: str | None = None
    while True:
        request: dict[str, Any] = {"op": "list", "prefix": prefix, "limit": 1000}
        if after is not None:
            request["after"] = after
        page = ok(cluster.call(node_id, request), "list")
        items.update((item["key"], item) for item in page["items"])
        if not page["more"]:
            return items
        after = page["next"]


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


class _Stream:
    """A few writer threads, each putting its own keys; records what was acknowledged."""

    def __init__(self, cluster: Cluster, threads: int, writes_each: int) -> None:
        self.addresses = cluster.addresses()
        self.writes_each = writes_each
        self.acked: dict[str, tuple[bytes, str]] = {}  # key -> (value, version)
        self.unknown: list[str] = []
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(t,)) for t in range(threads)]

    def _run(self, thread: int) -> None:
        writer = Writer(self.addresses, attempt_s=0.5)
        try:
            for i in range(self.writes_each):
                key, value = f"stream/{thread}/{i:04d}", f"{thread}-{i}".encode()
                reply = writer.put(key, value, timeout_s=4.0)
                with self.lock:
                    if reply is None:
                        self.unknown.append(key)
                    else:
                        self.acked[key] = (value, reply["version"])
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.errors.append(exc)
        finally:
            writer.close()

    def count(self) -> int:
        with self.lock:
            return len(self.acked) + len(self.unknown)


def test_no_acknowledged_write_is_lost_when_the_leader_is_killed_mid_stream(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster()
    old_leader = cluster.wait_for_leader()
    stream = _Stream(cluster, threads=3, writes_each=100)

    for thread in stream.threads:
        thread.start()
    wait_until(lambda: stream.count() >= 90, 20.0, "90 writes before the kill")
    cluster.kill(old_leader)
    acked_before_kill = len(stream.acked)
    for thread in stream.threads:
        thread.join(timeout=60.0)

    assert not stream.errors, stream.errors
    assert len(stream.acked) > acked_before_kill, "no write was acknowledged after the kill"
    leader = cluster.wait_for_leader(among=cluster.followers(old_leader))
    stored = read_all(cluster, leader, "stream/")
    lost = {k for k in stream.acked if k not in stored}
    assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {sorted(lost)[:5]}"
    for key, (value, version) in stream.acked.items():
        assert (stored[key]["value"], stored[key]["version"]) == (value, version), key
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
