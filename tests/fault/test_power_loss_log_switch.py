"""Acknowledged writes must survive a power cut that lands while LevelDB switches log files.

The daemon used to write its state-machine batch unsynced and trust the next
synced Raft batch to make it durable. LevelDB breaks that: when its memtable is full
it closes the old log without syncing it and goes on in a new one
(google/leveldb#193; `test_lazyfs.py` shows it on LevelDB alone). Until the
old memtable is flushed to a table, a power cut loses the old log's unsynced
tail (a state-machine batch) while later synced batches survive, and with
them an applied index past the lost batch: the node then serves a store with
a hole in it.

This test holds every node right there (the flush's table fsync never returns),
writes a few more acknowledged puts, pulls the plug on the whole cluster and
reads every acknowledged key back from every node. It failed in the first
round before the daemon synced its state-machine batch (the fault run
`./dev jepsen TIME=180 NEMESIS=all SEED=7` found it: 215 acknowledged set
elements and a register write lost). The whole-daemon simulator's disk models
the same log switch (confmand/storage/memory_db.py) and catches the old
behaviour as the `apply_batch_unsynced` driver fault.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fault.cluster import assert_nothing_left_running
from tests.fault.lazymount import MOUNTS, unavailable
from tests.fault.power import PowerCluster
from tests.integration.harness import Writer, ok

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=unavailable() or "")

BIG_VALUE = b"x" * 200_000  # LevelDB's 4 MiB memtable fills in about twenty writes
MAX_BIG_WRITES = 80
ROUNDS = 3


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[PowerCluster]:
    cluster = PowerCluster(tmp_path, size=3, seed=9)
    try:
        cluster.boot()
        yield cluster
    finally:
        cluster.close()
        assert not MOUNTS
        assert_nothing_left_running()


def _write_until_every_flush_is_held(cluster: PowerCluster, writer: Writer, prefix: str) -> list[str]:
    acked: list[str] = []
    for i in range(MAX_BIG_WRITES):
        if all(cluster.mounts[n].wait_hung(0.01) is not None for n in cluster.node_ids):
            return acked
        if writer.put(f"{prefix}/big{i}", BIG_VALUE, timeout_s=10.0) is not None:
            acked.append(f"{prefix}/big{i}")
    raise AssertionError(f"not every node switched its LevelDB log within {MAX_BIG_WRITES} writes")


def _missing(cluster: PowerCluster, keys: list[str]) -> dict[int, list[str]]:
    leader = cluster.wait_for_leader()
    commit = ok(cluster.call(leader, {"op": "status"}))["commit_index"]
    missing: dict[int, list[str]] = {}
    for node in cluster.node_ids:
        cluster.wait_applied(node, commit)
        for key in keys:
            reply = cluster.call(node, {"op": "get", "key": key, "consistency": "stale"})
            if reply is None or not reply.get("ok"):
                missing.setdefault(node, []).append(key)
    return missing


def test_acknowledged_writes_survive_a_power_cut_during_a_leveldb_log_switch(cluster: PowerCluster) -> None:
    acked: list[str] = []
    for round_no in range(ROUNDS):
        for node in cluster.node_ids:
            cluster.mounts[node].arm_hang(".ldb")
        writer = Writer(cluster.addresses())
        try:
            acked += _write_until_every_flush_is_held(cluster, writer, f"ls/{round_no}")
            for i in range(5):  # these go to the new log, synced: durable, unlike the old log's tail
                if writer.put(f"ls/{round_no}/small{i}", b"v", timeout_s=10.0) is not None:
                    acked.append(f"ls/{round_no}/small{i}")
        finally:
            writer.close()
        for node in cluster.node_ids:
            cluster.power_loss(node)
        cluster.start()

        missing = _missing(cluster, acked)

        assert not missing, f"round {round_no}: acknowledged writes missing after the power cut: {missing}"
