"""Log compaction and InstallSnapshot in chunks (§7)."""

from __future__ import annotations

import random

import pytest

from confmand.raft import Message, Snapshot, SnapshotMeta
from confmand.raft.messages import InstallSnapshot, InstallSnapshotResponse
from tests.unit.raft_harness import Cluster, membership, of_type, storage_with_log

ELECTION_TICKS = 10
STATE = bytes(range(95))  # what the state machine would serialize


def take_snapshot(cluster: Cluster, node_id: int, data: bytes = STATE) -> Snapshot:
    """What a driver does: snapshot the state machine at its applied index, store it, then compact."""
    node = cluster[node_id]
    snapshot = Snapshot(node.snapshot_meta(node.applied_index), data)
    cluster.storages[node_id].save_snapshot(snapshot)
    cluster.storages[node_id].compact(snapshot.meta.index)
    node.compact(snapshot.meta.index)
    return snapshot


def leader_with_compacted_log(**config: int) -> tuple[Cluster, Snapshot]:
    """Leader 1 compacted its log while node 3 was cut off; node 3 needs the snapshot."""
    cluster = Cluster.of(election_ticks=ELECTION_TICKS, **config)
    cluster.elect(1)
    cluster.pump()
    cluster.isolate(3)
    for k in range(10):
        cluster[1].propose(b"p%d" % k)
    cluster.pump()
    snapshot = take_snapshot(cluster, 1)
    cluster[1].propose(b"after the snapshot")
    cluster.pump()
    return cluster, snapshot


def chunk(meta: SnapshotMeta, data: bytes, offset: int, size: int, term: int = 1) -> InstallSnapshot:
    piece = data[offset : offset + size]
    return InstallSnapshot(0, term, 1, 2, meta, offset, piece, offset + len(piece) >= len(data))


def last_snapshot_response(cluster: Cluster) -> InstallSnapshotResponse:
    return of_type(cluster.drain(2).messages, InstallSnapshotResponse)[-1]


def test_compact_drops_the_log_through_the_index() -> None:
    cluster = Cluster.of()
    cluster.elect(1)
    for k in range(5):
        cluster[1].propose(b"p%d" % k)
    cluster.pump()
    node = cluster[1]
    last = node.last_index
    snapshot = take_snapshot(cluster, 1)
    index = snapshot.meta.index
    assert index == node.applied_index == last
    assert node.log.first_index == index + 1
    assert node.log.term_at(index) == snapshot.meta.term
    assert node.log.term_at(index - 1) is None
    assert node.log.entries == []


def test_compact_refuses_to_drop_entries_not_yet_applied() -> None:
    cluster = Cluster.of()
    leader = cluster.elect(1)
    leader.propose(b"x")
    with pytest.raises(ValueError, match="cannot compact"):
        leader.compact(leader.last_index)


def test_follower_behind_the_compacted_log_gets_the_snapshot_in_chunks() -> None:
    cluster, snapshot = leader_with_compacted_log(snapshot_chunk_bytes=10)
    cluster.heal()
    cluster.tick(times=ELECTION_TICKS)
    chunks = [m for m in of_type(cluster.delivered, InstallSnapshot) if m.dst == 3]
    assert [c.offset for c in chunks] == list(range(0, 95, 10))
    assert [c.done for c in chunks] == [False] * 9 + [True]
    assert b"".join(c.data for c in chunks) == STATE
    follower = cluster[3]
    assert cluster.storages[3].latest_snapshot == snapshot
    assert follower.log.snapshot_index == snapshot.meta.index
    assert cluster.log_terms(3) == cluster.log_terms(1)
    assert follower.commit_index == cluster[1].commit_index == cluster[1].last_index


@pytest.mark.parametrize("seed", range(4))
def test_snapshot_arrives_whole_although_chunks_are_lost_duplicated_and_reordered(seed: int) -> None:
    rng = random.Random(seed)
    cluster, snapshot = leader_with_compacted_log(snapshot_chunk_bytes=7)
    cluster.heal()
    for _ in range(50 * ELECTION_TICKS):
        if cluster.storages[3].latest_snapshot == snapshot:
            break
        for node in cluster.nodes.values():
            node.tick()
        in_flight: list[Message] = []
        for node_id, node in cluster.nodes.items():
            if node.has_ready():
                in_flight.extend(cluster.drain(node_id).messages)
        faulty: list[Message] = []
        for msg in in_flight:
            if isinstance(msg, InstallSnapshot | InstallSnapshotResponse):
                if rng.random() < 0.3:
                    continue
                if rng.random() < 0.3:
                    faulty.append(msg)
            faulty.append(msg)
        rng.shuffle(faulty)
        cluster.deliver(faulty)
    assert cluster.storages[3].latest_snapshot == snapshot
    assert cluster[3].log.snapshot_index == snapshot.meta.index


def test_installing_a_snapshot_yields_it_in_the_ready_and_resets_the_log() -> None:
    cluster = Cluster()
    follower = cluster.add(2, storage_with_log((1, 2, 3), [1, 1, 2, 2], term=2, commit=1))
    meta = SnapshotMeta(5, 3, membership((1, 2, 3), (4,)))
    data = b"state at index 5"
    follower.step(chunk(meta, data, 0, len(data), term=3))
    rd = follower.ready()
    assert rd.snapshot == Snapshot(meta, data)
    assert rd.entries == []
    assert rd.hard_state is not None
    assert rd.hard_state.commit == 5
    log = follower.log
    assert (log.snapshot_index, log.snapshot_term, log.entries) == (5, 3, [])
    assert (log.commit, log.handed_out, log.applied) == (5, 5, 0)  # applied moves on advance
    assert follower.membership == meta.membership
    [response] = of_type(rd.messages, InstallSnapshotResponse)
    assert (response.snapshot_index, response.installed) == (5, True)
    follower.advance(rd)
    assert (follower.applied_term, follower.applied_index) == (3, 5)


def test_follower_reassembles_chunks_whatever_order_they_arrive_in() -> None:
    cluster = Cluster.of()
    follower = cluster[2]
    meta = SnapshotMeta(10, 1, membership((1, 2, 3)))
    data = bytes(range(30))

    def send(offset: int) -> InstallSnapshotResponse:
        follower.step(chunk(meta, data, offset, 10))
        return last_snapshot_response(cluster)

    assert (send(10).next_offset, follower.log.snapshot_index) == (0, 0), "no first chunk yet"
    assert send(0).next_offset == 10
    assert send(0).next_offset == 10, "a duplicate changes nothing"
    response = send(20)
    assert (response.next_offset, response.installed) == (10, False), "a gap asks for the missing bytes"
    assert send(10).next_offset == 20
    response = send(20)
    assert (response.next_offset, response.installed) == (30, True)
    assert cluster.storages[2].latest_snapshot == Snapshot(meta, data)


def test_snapshot_with_other_meta_restarts_the_transfer() -> None:
    cluster = Cluster.of()
    follower = cluster[2]
    old = SnapshotMeta(10, 1, membership((1, 2, 3)))
    new = SnapshotMeta(12, 1, membership((1, 2, 3)))
    follower.step(chunk(old, bytes(30), 0, 10))
    follower.step(chunk(new, bytes(30), 10, 10))
    assert last_snapshot_response(cluster).next_offset == 0


def test_snapshot_older_than_the_followers_commit_is_acknowledged_without_replacing_anything() -> None:
    cluster = Cluster()
    follower = cluster.add(2, storage_with_log((1, 2, 3), [1, 1, 1, 1, 1], term=1, commit=4))
    follower.step(chunk(SnapshotMeta(3, 1, membership((1, 2, 3))), b"old", 0, 3))
    rd = cluster.drain(2)
    assert rd.snapshot is None
    assert cluster.log_terms(2) == [1] * 5
    assert follower.log.snapshot_index == 0
    [response] = of_type(rd.messages, InstallSnapshotResponse)
    assert (response.installed, response.snapshot_index) == (True, 4)


def test_snapshot_whose_last_entry_the_follower_holds_only_advances_its_commit() -> None:
    cluster = Cluster()
    follower = cluster.add(2, storage_with_log((1, 2, 3), [1, 1, 1, 1, 1], term=1, commit=2))
    follower.step(chunk(SnapshotMeta(4, 1, membership((1, 2, 3))), b"state", 0, 5))
    rd = cluster.drain(2)
    assert rd.snapshot is None
    assert cluster.log_terms(2) == [1] * 5
    assert follower.commit_index == 4
