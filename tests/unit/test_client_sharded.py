"""`Client` and `AsyncClient` against a fake sharded cluster (confctl.testing) on loopback.

The cluster: nodes 1-3, 8 partitions; data shard 1 on nodes 2 and 3 (node 2 leads), data
shard 2 on nodes 1 and 2 (node 1 leads). Namespace `db` lives in shard 1, `app` in shard 2.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from confctl.client import AsyncClient, Client, InvalidArgument, TxnOp
from confctl.testing import FakeCluster, FakeNode, FakeShardedCluster
from confmand.protocol.shardmap import initial_map, partition_of

DB, APP = 1, 2


@pytest.fixture
def cluster() -> Iterator[FakeShardedCluster]:
    sharded = FakeShardedCluster(initial_map([1, 2, 3], data_shards=2, replication=2, partitions=8))
    sharded.start()
    yield sharded
    sharded.stop()


def routed(node: FakeNode) -> list[tuple[str, int | None]]:
    return [(r["op"], r.get("shard")) for r in node.requests]


def test_each_key_goes_to_its_shards_leader_with_the_shard_named(cluster: FakeShardedCluster) -> None:
    n1, n2, n3 = (cluster.nodes[i] for i in (1, 2, 3))
    with Client([n3.address]) as client:
        client.put("db/url", b"d")
        client.put("app/url", b"a")
        assert client.get("db/url").value == b"d"
    assert routed(n2) == [("put", DB), ("get", DB)]
    assert routed(n1) == [("put", APP)]
    assert routed(n3) == []
    assert cluster.shards[DB].data.keys() == {"db/url"}
    assert cluster.shards[APP].data.keys() == {"app/url"}


def test_the_map_is_fetched_once_for_many_calls(cluster: FakeShardedCluster) -> None:
    with Client([cluster.nodes[3].address]) as client:
        for i in range(5):
            client.put(f"db/{i}", b"v")
            client.put(f"app/{i}", b"v")
    assert sum(len(node.map_requests) for node in cluster.nodes.values()) == 1


def test_after_a_partition_moves_wrong_shard_refetches_the_map_and_the_write_lands_once(
    cluster: FakeShardedCluster,
) -> None:
    with Client([cluster.nodes[3].address]) as client:
        client.put("db/before", b"1")
        cluster.move(partition_of("db", cluster.map.partitions), APP)
        written = client.put("db/after", b"2")
        assert client.core.shards.map == cluster.map
    refused, landed = cluster.nodes[2].requests[-1], cluster.nodes[1].requests[-1]
    assert (refused["shard"], landed["shard"]) == (DB, APP)
    assert (refused["seq"], refused["client_id"]) == (landed["seq"], landed["client_id"])
    assert cluster.shards[APP].data["db/after"].version == (written.version.term, written.version.index)
    assert cluster.shards[APP].applied_writes == 1


def test_a_new_leader_of_one_shard_is_followed_by_its_hint(cluster: FakeShardedCluster) -> None:
    with Client([cluster.nodes[1].address]) as client:
        client.put("db/a", b"1")
        cluster.lead(DB, 3)
        client.put("db/b", b"2")
        client.put("app/c", b"3")
        assert client.core.shards.leaders[DB] == cluster.nodes[3].address
        assert client.core.shards.leaders[APP] == cluster.nodes[1].address
    assert routed(cluster.nodes[3]) == [("put", DB)]


def test_version_reads_wait_only_for_their_own_shards_writes(cluster: FakeShardedCluster) -> None:
    """Shard 1's log runs ahead of shard 2's; a read-your-writes read of shard 2 must not wait for it."""
    app_leader = cluster.nodes[1]
    with Client([cluster.nodes[3].address], timeout_s=1.0) as client:
        for i in range(5):
            client.put(f"db/{i}", b"v")  # shard 1 at index 5
        client.put("app/a", b"v")  # shard 2 at index 1
        app_leader.frozen_applied = (1, 1)  # a floor above 1 would never be reached here
        assert client.get("app/a", consistency="version").value == b"v"
    read = app_leader.requests[-1]
    assert (read["op"], read["shard"], read["min_version"]) == ("get", APP, "1:1")


def test_a_list_across_namespaces_pages_through_every_shard_in_key_order(
    cluster: FakeShardedCluster,
) -> None:
    keys = ["app/a", "app/b", "db/a", "db/b", "db/c"]
    seen: list[str] = []
    with Client([cluster.nodes[3].address]) as client:
        for key in keys:
            client.put(key, b"v")
        after = None
        while True:
            page = client.list("", after=after, limit=2)
            seen.extend(item.key for item in page.items)
            if not page.more:
                break
            after = page.next
    assert seen == keys


def test_the_audit_log_merges_the_shards_by_hlc_and_names_each_records_shard(
    cluster: FakeShardedCluster,
) -> None:
    with Client([cluster.nodes[3].address]) as client:
        for key in ["db/a", "app/a", "db/b", "app/b"]:
            client.put(key, b"v")
        audit = client.audit(limit=3)
    assert [(r.key, r.shard) for r in audit.records] == [("db/a", DB), ("app/a", APP), ("db/b", DB)]
    assert audit.more


def test_a_txn_across_namespaces_is_refused_and_nothing_is_sent(cluster: FakeShardedCluster) -> None:
    with Client([cluster.nodes[3].address]) as client, pytest.raises(InvalidArgument):
        client.txn([], [TxnOp("put", "db/a", b"1"), TxnOp("put", "app/a", b"2")])
    assert all(not node.requests and not node.map_requests for node in cluster.nodes.values())


def test_an_old_server_that_does_not_know_shard_map_is_spoken_to_as_before() -> None:
    old = FakeCluster()
    node = FakeNode(old, 1, leader=True)
    try:
        with Client([node.address]) as client:
            client.put("db/a", b"1")
            client.put("app/a", b"2")
            assert [i.key for i in client.list("").items] == ["app/a", "db/a"]
    finally:
        node.stop()
    assert len(node.map_requests) == 1
    assert all("shard" not in r for r in node.requests)


def test_the_async_client_routes_and_merges_the_same_way(cluster: FakeShardedCluster) -> None:
    async def scenario() -> list[str]:
        async with AsyncClient([cluster.nodes[3].address]) as client:
            await client.put("db/a", b"1")
            await client.put("app/a", b"2")
            page = await client.list("")
            return [item.key for item in page.items]

    assert asyncio.run(scenario()) == ["app/a", "db/a"]
    assert routed(cluster.nodes[1])[0] == ("put", APP)


def test_shard_map_shows_each_shards_replicas_leader_and_partitions(cluster: FakeShardedCluster) -> None:
    with Client([cluster.nodes[3].address]) as client:
        result = client.shard_map()
    assert (result.epoch, result.partitions) == (1, 8)
    assert [(s.id, s.replicas, s.leader, s.partitions) for s in result.shards] == [
        (0, (3, 1, 2), 3, 0),
        (1, (2, 3), 2, 4),
        (2, (1, 2), None, 4),  # node 3 holds no replica of shard 2: it knows no leader for it
    ]
    assert result.addresses == {n: node.address for n, node in cluster.nodes.items()}
