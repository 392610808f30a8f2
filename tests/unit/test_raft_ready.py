"""The Ready protocol (ready.py): what the driver must persist before the messages that depend on it."""

from __future__ import annotations

import random

import pytest

from confmand.raft import HardState, Membership, MemoryStorage, RaftConfig, RaftNode, ReadyOrderError
from confmand.raft.messages import AppendEntries, AppendEntriesResponse
from confmand.raft.types import Snapshot, SnapshotMeta
from tests.unit.raft_harness import Cluster, entry, of_type, storage_with_log


def settled() -> Cluster:
    cluster = Cluster.of()
    cluster.elect(1)
    cluster.pump()
    return cluster


def test_readies_are_numbered_and_the_numbers_only_go_up() -> None:
    cluster = Cluster.of()
    node = cluster[1]
    numbers = [node.ready().number for _ in range(3)]
    assert numbers == sorted(set(numbers))


def test_hard_state_is_in_a_ready_only_when_it_changed() -> None:
    cluster = settled()
    leader = cluster[1]
    leader.propose(b"x")
    first = cluster.drain(1)
    assert first.hard_state is None, "appending changes neither term, vote nor commit"
    cluster.deliver(first.messages)
    cluster.deliver(cluster.drain(2).messages)
    assert cluster.drain(1).hard_state == HardState(1, 1, 2)


def test_follower_acknowledges_entries_in_the_ready_that_carries_them_for_persisting() -> None:
    cluster = settled()
    cluster[1].propose(b"x")
    [to_2] = [m for m in of_type(cluster.drain(1).messages, AppendEntries) if m.dst == 2]
    cluster.deliver([to_2])
    rd = cluster[2].ready()
    [ack] = of_type(rd.messages, AppendEntriesResponse)
    assert [(e.index, e.term) for e in rd.entries] == [(ack.match_index, 1)]


def test_entries_are_handed_out_for_persisting_once_and_for_applying_once() -> None:
    cluster = settled()
    for k in range(3):
        cluster[1].propose(b"p%d" % k)
        cluster.pump()
    for node in (1, 2, 3):
        persisted = [e.index for e in cluster.storages[node].entries]
        assert persisted == [1, 2, 3, 4]
        assert [e.index for e in cluster.applied[node]] == [1, 2, 3, 4]
    assert not cluster[1].has_ready()
    assert cluster[1].ready().is_empty()


def test_a_ready_advanced_twice_or_out_of_order_is_refused() -> None:
    node = RaftNode(
        RaftConfig(node_id=1), MemoryStorage.bootstrap(Membership(frozenset({1}))), random.Random(1)
    )
    node.campaign()
    first = node.ready()
    node.propose(b"x")
    second = node.ready()
    with pytest.raises(ReadyOrderError, match="Ready 1 is the next"):
        node.advance(second)
    node.advance(first)
    node.advance(second)
    with pytest.raises(ReadyOrderError):
        node.advance(second)


def test_a_long_backlog_of_committed_entries_is_handed_out_over_several_readies() -> None:
    storage = storage_with_log([1, 2, 3], [1] * 2500, commit=2500)
    node = RaftNode(RaftConfig(node_id=1, max_apply_entries=1024), storage, random.Random(0))

    handed = []
    while node.has_ready():
        rd = node.ready()
        handed.append([e.index for e in rd.committed_entries])
        node.advance(rd)

    assert [len(batch) for batch in handed if batch] == [1024, 1024, 452]
    assert [i for batch in handed for i in batch] == list(range(1, 2501))


def test_committed_entries_of_one_ready_stay_within_the_byte_limit_but_always_one() -> None:
    meta = SnapshotMeta(0, 0, Membership(frozenset({1, 2, 3})))
    big = [entry(1, i, bytes(600)) for i in (1, 2, 3)]
    storage = MemoryStorage(HardState(1, None, 3), Snapshot(meta, b""), big)
    node = RaftNode(RaftConfig(node_id=1, max_apply_bytes=1000), storage, random.Random(0))

    sizes = []
    while node.has_ready():
        rd = node.ready()
        sizes.append(len(rd.committed_entries))
        node.advance(rd)

    assert [s for s in sizes if s] == [1, 1, 1]
