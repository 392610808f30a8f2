"""Watches on real processes: every acknowledged write is told once, in order, across node kills.

The watcher is the Python client's `AsyncClient.watch`, which resumes a stream at another
replica from the last progress it was told; the checks are tests/watch_validation.py's.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest

from confctl.client import AsyncClient
from confctl.client.types import Version, WatchBatch
from tests.integration.conftest import MakeCluster
from tests.integration.harness import Cluster, Writer, wait_until
from tests.integration.load import WriteStream
from tests.watch_validation import missing_writes, stream_violations


async def _watch_until(
    cluster: Cluster,
    prefix: str,
    batches: list[WatchBatch],
    done: asyncio.Event,
    started: asyncio.Event,
) -> AsyncClient:
    client = AsyncClient(list(cluster.addresses().values()), timeout_s=5.0)
    watch = client.watch(prefix, progress_ms=100)
    async for batch in watch:
        batches.append(batch)
        started.set()
        if done.is_set():
            break
    await watch.aclose()
    return client


def _last_version(stream: WriteStream) -> Version:
    return max(Version.parse(token) for _, token in stream.acked.values())


def test_a_watch_tells_every_acknowledged_write_once_and_in_order_while_its_node_is_killed(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster()
    cluster.wait_for_leader()
    batches: list[WatchBatch] = []

    async def scenario() -> int:
        done, started = asyncio.Event(), asyncio.Event()
        watcher = asyncio.get_running_loop().create_task(
            _watch_until(cluster, "stream/", batches, done, started)
        )
        await asyncio.wait_for(started.wait(), 10.0)
        stream = WriteStream(cluster, threads=3, writes_each=60).start()
        await asyncio.to_thread(wait_until, lambda: stream.count() >= 40, 20.0, "40 writes before the kill")
        served_by = next(b.node_id for b in reversed(batches) if b.node_id is not None)
        assert served_by is not None
        cluster.kill(served_by)
        await asyncio.to_thread(stream.join, 60.0)
        assert not stream.errors, stream.errors
        last = _last_version(stream)
        deadline = time.monotonic() + 20.0
        while not batches or batches[-1].progress < last:
            assert time.monotonic() < deadline, f"the watch never got to {last}: {batches[-1:]}"
            await asyncio.sleep(0.05)
        done.set()
        client = await asyncio.wait_for(watcher, 10.0)
        await client.aclose()
        missing = missing_writes(batches, stream.acked, batches[0].progress)
        assert not missing, missing[:5]
        return served_by

    killed = asyncio.run(scenario())

    assert not stream_violations(batches), stream_violations(batches)[:5]
    assert any(b.node_id not in (None, killed) for b in batches), "the watch never moved off the killed node"


def test_confctl_watch_of_every_namespace_prints_each_put_of_every_shard_once(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(cluster={"partitions": 16, "data_shards": 4})
    cluster.wait_for_preferred_leaders()
    endpoints = ",".join(cluster.addresses().values())
    keys = [f"ns{n}/key" for n in range(12)]
    command = [
        sys.executable,
        "-m",
        "confctl",
        "-e",
        endpoints,
        "-o",
        "json",
        "watch",
        "--count",
        str(len(keys)),
    ]
    watcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: _watching_everywhere(cluster, shards=4), 20.0, "a watch open on each data shard")
        writer = Writer(cluster.addresses())
        for key in keys:
            assert writer.put(key, key.encode(), timeout_s=5.0) is not None
        writer.close()
        out, err = watcher.communicate(timeout=20.0)
    finally:
        watcher.kill()

    assert watcher.returncode == 0, err
    printed = [json.loads(line) for line in out.splitlines()]
    assert sorted(p["key"] for p in printed) == sorted(keys)
    assert all(p["value"] == p["key"] and p["type"] == "put" for p in printed)
    assert len({p["shard"] for p in printed}) > 1


def _watching_everywhere(cluster: Cluster, shards: int) -> bool:
    opened = 0
    for node_id in cluster.addresses():
        status = cluster.status(node_id)
        if status is not None:
            opened += int(status.get("watches", 0))
    return opened >= shards


def test_a_watch_of_every_namespace_follows_a_shard_split_into_the_new_shard(
    make_cluster: MakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("confctl.client.watch.NEW_SHARD_LOOK_S", 0.5)
    cluster = make_cluster(cluster={"partitions": 16, "data_shards": 2})
    cluster.wait_for_preferred_leaders()
    endpoints = ",".join(cluster.addresses().values())
    batches: list[WatchBatch] = []

    async def scenario() -> dict[str, tuple[bytes, str]]:
        done, started = asyncio.Event(), asyncio.Event()
        watcher = asyncio.get_running_loop().create_task(_watch_until(cluster, "", batches, done, started))
        await asyncio.wait_for(started.wait(), 10.0)
        split = [sys.executable, "-m", "confctl", "-e", endpoints, "split", "1"]
        moved = await asyncio.to_thread(subprocess.run, split, capture_output=True, text=True, timeout=120)
        assert moved.returncode == 0, moved.stderr
        acked = await asyncio.to_thread(_put_in_many_namespaces, cluster, 48)
        deadline = time.monotonic() + 20.0
        while missing_writes(batches, acked, Version(0, 0)):
            assert time.monotonic() < deadline, missing_writes(batches, acked, Version(0, 0))[:5]
            await asyncio.sleep(0.1)
        done.set()
        client = await asyncio.wait_for(watcher, 10.0)
        await client.aclose()
        return acked

    acked = asyncio.run(scenario())

    assert len(acked) == 48
    assert {e.shard for b in batches for e in b.events} == {1, 2, 3}  # 3: the shard the split added
    assert not stream_violations(batches), stream_violations(batches)[:5]


def _put_in_many_namespaces(cluster: Cluster, count: int) -> dict[str, tuple[bytes, str]]:
    writer = Writer(cluster.addresses())
    acked = {}
    try:
        for i in range(count):
            key, value = f"ns{i}/k", f"v{i}".encode()
            reply = writer.put(key, value, timeout_s=5.0)
            assert reply is not None, key
            acked[key] = (value, reply["version"])
    finally:
        writer.close()
    return acked
