"""`AsyncClient` over zmq.asyncio against fake nodes (confctl.testing): the same rules as `Client`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from confctl.client import AsyncClient, CasFailed, Unavailable, Version
from confctl.testing import FakeCluster, FakeNode, free_address


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster()


@pytest.fixture
def leader(cluster: FakeCluster) -> Iterator[FakeNode]:
    node = FakeNode(cluster, 1, leader=True)
    yield node
    node.stop()


@pytest.fixture
def follower(cluster: FakeCluster, leader: FakeNode) -> Iterator[FakeNode]:
    node = FakeNode(cluster, 2)
    yield node
    node.stop()


def test_concurrent_puts_from_one_client_each_get_their_own_seq(
    cluster: FakeCluster, leader: FakeNode
) -> None:
    async def scenario() -> list[Version]:
        async with AsyncClient([leader.address]) as client:
            results = await asyncio.gather(*(client.put(f"k{i}", b"v") for i in range(20)))
            return [r.version for r in results]

    versions = asyncio.run(scenario())
    assert len(set(versions)) == 20
    assert sorted(r["seq"] for r in leader.requests) == list(range(1, 21))
    assert cluster.applied_writes == 20


def test_the_async_client_follows_a_leader_hint(leader: FakeNode, follower: FakeNode) -> None:
    async def scenario() -> bytes:
        async with AsyncClient([follower.address]) as client:
            await client.put("k", "v")
            return (await client.get("k")).value

    assert asyncio.run(scenario()) == b"v"
    assert [r["op"] for r in follower.requests] == ["put"]


def test_a_dropped_write_is_retried_with_the_same_seq(cluster: FakeCluster, leader: FakeNode) -> None:
    leader.drop_next = 1

    async def scenario() -> None:
        async with AsyncClient([leader.address], timeout_s=2.0, attempt_timeout_s=0.2) as client:
            await client.put("k", b"v")

    asyncio.run(scenario())
    first, retry = leader.wait_for_requests(2)
    assert (first["seq"], first["client_id"]) == (retry["seq"], retry["client_id"])
    assert cluster.applied_writes == 1


def test_a_dead_endpoint_is_skipped_and_all_dead_is_unavailable(leader: FakeNode) -> None:
    dead = free_address()

    async def scenario() -> None:
        async with AsyncClient([dead, leader.address], timeout_s=2.0, attempt_timeout_s=0.1) as client:
            await client.put("k", b"v")
        async with AsyncClient([dead], timeout_s=0.2) as client:
            await client.get("k")

    with pytest.raises(Unavailable, match=dead):
        asyncio.run(scenario())
    assert leader.requests[0]["op"] == "put"


def test_a_failed_cas_raises_with_the_current_version(leader: FakeNode) -> None:
    async def scenario() -> None:
        async with AsyncClient([leader.address]) as client:
            await client.put("k", b"v")
            await client.cas("k", b"w", expected_version="0:0")

    with pytest.raises(CasFailed) as caught:
        asyncio.run(scenario())
    assert caught.value.current_version == Version(1, 1)


def test_status_all_marks_a_dead_node_unreachable(leader: FakeNode, follower: FakeNode) -> None:
    dead = free_address()

    async def scenario() -> list[tuple[bool, str | None]]:
        async with AsyncClient([leader.address, dead, follower.address], attempt_timeout_s=0.2) as client:
            return [(s.reachable, s.role) for s in await client.status_all()]

    assert asyncio.run(scenario()) == [(True, "leader"), (False, None), (True, "follower")]


def test_stray_replies_are_ignored(leader: FakeNode) -> None:
    leader.stray_replies = True

    async def scenario() -> bytes:
        async with AsyncClient([leader.address]) as client:
            await client.put("k", b"v")
            return (await client.get("k", consistency="stale")).value

    assert asyncio.run(scenario()) == b"v"
