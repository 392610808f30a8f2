"""Snapshots are meta only: a local snapshot writes no copy of the state, and the snapshot a
follower is sent is the written state at the applied index (shard_storage.py, "Snapshots")."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import plyvel
import pytest

from confmand.kv.commands import Command, Put
from confmand.kv.harness import MemoryShard
from confmand.kv.snapshot import decode_state
from confmand.kv.store import WriteSet
from confmand.raft.ready import Ready, SoftState
from confmand.raft.types import Entry, EntryKind, HardState, Membership, Role, Snapshot, SnapshotMeta
from confmand.server.snapshot_source import SnapshotSource
from confmand.storage import NodeStorage, ShardStorage
from confmand.storage.keys import META_FORMAT, SNAPSHOT_DATA, SNAPSHOT_META, shard_prefix
from confmand.storage.records import seal

CLUSTER = "prod-eu"
MEMBERS = Membership(frozenset({1, 2, 3}))
GROWN = Membership(frozenset({1, 2, 3}), frozenset({4}))


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeStorage]:
    storage = NodeStorage.open(tmp_path, CLUSTER, 1)
    yield storage
    storage.close()


def normal(index: int, term: int = 2) -> Entry:
    return Entry(term, index, EntryKind.NORMAL, b"cmd%d" % index)


def write(node: NodeStorage, shard: ShardStorage, entries: list[Entry], applied: int) -> None:
    """Persist `entries`, then apply through `applied` (an empty state change each)."""
    batch = node.new_batch()
    ready = Ready(0, SoftState(Role.FOLLOWER, None), hard_state=HardState(2, None, applied), entries=entries)
    shard.stage_ready(ready, batch)
    term = next((e.term for e in entries if e.index == applied), 2)
    shard.stage_applied(WriteSet(), term, applied, batch)
    node.write(batch, sync=True)


def snapshot_at(node: NodeStorage, shard: ShardStorage, meta: SnapshotMeta, compact_to: int) -> None:
    batch = node.new_batch()
    shard.stage_snapshot(meta, batch)
    shard.stage_compact(compact_to, batch)
    node.write(batch, sync=True)


def test_a_local_snapshot_writes_its_meta_and_no_copy_of_the_state(node: NodeStorage) -> None:
    shard = node.shard(0)
    write(node, shard, [normal(i) for i in range(1, 11)], applied=10)
    big = WriteSet()
    for i in range(1000):
        big.put(b"d", b"key%04d" % i, b"v" * 100)
    batch = node.new_batch()
    shard.stage_applied(big, 2, 10, batch)
    node.write(batch, sync=True)

    batch = node.new_batch()
    shard.stage_snapshot(SnapshotMeta(10, 2, MEMBERS), batch)

    # Its meta, and the delete of a format 2 data record: nothing that grows with the state.
    assert sorted(key for key, _ in batch.ops) == [
        shard_prefix(SNAPSHOT_DATA, 0),
        shard_prefix(SNAPSHOT_META, 0),
    ]


def test_the_snapshot_to_send_is_at_the_applied_index_after_the_stored_one(node: NodeStorage) -> None:
    shard = node.shard(0)
    write(node, shard, [normal(i) for i in range(1, 9)], applied=8)
    snapshot_at(node, shard, SnapshotMeta(6, 2, MEMBERS), compact_to=6)
    write(node, shard, [normal(i, term=3) for i in range(9, 13)], applied=11)

    assert shard.snapshot_meta() == SnapshotMeta(6, 2, MEMBERS)
    assert shard.applied_snapshot_meta() == SnapshotMeta(11, 3, MEMBERS)


def test_the_snapshot_to_send_carries_a_membership_set_after_the_stored_snapshot(node: NodeStorage) -> None:
    shard = node.shard(0)
    write(node, shard, [normal(i) for i in range(1, 5)], applied=4)
    snapshot_at(node, shard, SnapshotMeta(4, 2, MEMBERS), compact_to=4)
    grown = Entry(2, 5, EntryKind.MEMBERSHIP, GROWN.encode())
    write(node, shard, [grown, normal(6), normal(7)], applied=7)

    assert shard.applied_snapshot_meta() == SnapshotMeta(7, 2, GROWN)


def test_a_membership_entry_not_yet_applied_is_not_in_the_snapshot_to_send(node: NodeStorage) -> None:
    shard = node.shard(0)
    write(node, shard, [normal(i) for i in range(1, 5)], applied=4)
    snapshot_at(node, shard, SnapshotMeta(4, 2, MEMBERS), compact_to=4)
    grown = Entry(2, 7, EntryKind.MEMBERSHIP, GROWN.encode())
    write(node, shard, [normal(5), normal(6), grown], applied=6)

    assert shard.applied_snapshot_meta() == SnapshotMeta(6, 2, MEMBERS)


def test_the_leader_sends_the_state_as_written_at_the_applied_index(node: NodeStorage) -> None:
    machine = MemoryShard(term=2)
    machine.apply(*(Command(Put(f"app/{i}", b"v%d" % i), 1 << 16, "alice") for i in range(5)))
    state = WriteSet()
    for kind, key, value in machine.records():
        state.put(kind, key, value)
    shard = node.shard(0)
    write(node, shard, [normal(i) for i in range(1, 6)], applied=5)
    batch = node.new_batch()
    shard.stage_applied(state, 2, 5, batch)
    node.write(batch, sync=True)
    snapshot_at(node, shard, SnapshotMeta(3, 2, MEMBERS), compact_to=3)
    counters: Counter[str] = Counter()

    sent = SnapshotSource(shard, counters).snapshot()

    assert sent is not None
    assert sent.meta == SnapshotMeta(5, 2, MEMBERS)
    assert decode_state(sent.data) == machine.records()
    assert counters == {"snapshots_made_to_send": 1, "snapshots_made_past_stored": 1}


def test_before_any_snapshot_there_is_none_to_send(node: NodeStorage) -> None:
    shard = node.shard(0)
    write(node, shard, [normal(i) for i in range(1, 4)], applied=3)
    assert SnapshotSource(shard, Counter()).snapshot() is None


def test_a_received_snapshot_stores_its_meta_and_not_its_data(node: NodeStorage) -> None:
    shard = node.shard(0)
    batch = node.new_batch()
    received = Snapshot(SnapshotMeta(40, 3, MEMBERS), b"the state, installed as records")
    shard.stage_ready(Ready(0, SoftState(Role.FOLLOWER, None), snapshot=received), batch)

    assert (shard_prefix(SNAPSHOT_DATA, 0), received.data) not in batch.ops
    assert (shard_prefix(SNAPSHOT_DATA, 0), None) in batch.ops


def test_a_format_2_dir_with_snapshot_data_opens_and_its_next_snapshot_deletes_the_data(
    tmp_path: Path,
) -> None:
    node = NodeStorage.open(tmp_path, CLUSTER, 1)
    shard = node.shard(0)
    write(node, shard, [normal(i) for i in range(1, 9)], applied=8)
    node.close()
    db = plyvel.DB(str(tmp_path))  # as format 2 wrote them: meta with the data's length and crc
    meta_key, data_key = shard_prefix(SNAPSHOT_META, 0), shard_prefix(SNAPSHOT_DATA, 0)
    db.put(meta_key, seal(meta_key, [4, 2, MEMBERS.encode(), 5, 12345]))
    db.put(data_key, b"state")
    db.put(META_FORMAT, seal(META_FORMAT, 2))
    db.close()

    node = NodeStorage.open(tmp_path, CLUSTER, 1)
    shard = node.shard(0)
    assert shard.initial_state().snapshot_meta == SnapshotMeta(4, 2, MEMBERS)
    assert shard.applied_snapshot_meta() == SnapshotMeta(8, 2, MEMBERS)
    snapshot_at(node, shard, SnapshotMeta(8, 2, MEMBERS), compact_to=8)
    node.close()

    db = plyvel.DB(str(tmp_path))
    assert db.get(data_key) is None
    db.close()
