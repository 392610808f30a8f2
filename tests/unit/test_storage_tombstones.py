"""Deleting a shard's replica (confmand/storage/tombstones.py): every record goes, in bounded steps,
and a crash at any step leaves a dir that opens, with the deletion still to finish."""

from __future__ import annotations

from pathlib import Path

import pytest

from confmand.kv.store import WriteSet
from confmand.raft.ready import Ready, SoftState
from confmand.raft.types import Entry, EntryKind, HardState, Membership, Role
from confmand.storage import DataDirError, NodeStorage, StorageUsageError
from confmand.storage.keys import shard_prefix
from confmand.storage.memory_db import MemoryDisk
from confmand.storage.tombstones import tombstone_key

CLUSTER = "prod-eu"
STATE_KINDS = (b"d", b"v", b"a")  # a few of the state machine's kinds (storage knows none of them)


def filled(node: NodeStorage, shard_id: int, records: int) -> None:
    """A shard with hard state, a log, an applied index and `records` state records of each kind."""
    shard = node.shard(shard_id)
    batch = node.new_batch()
    shard.stage_bootstrap(Membership(frozenset({1, 2, 3})), batch)
    node.write(batch, sync=True)
    entries = [Entry(1, i, EntryKind.NORMAL, b"cmd") for i in range(2, 12)]
    batch = node.new_batch()
    shard.stage_ready(Ready(0, SoftState(Role.FOLLOWER, None), HardState(1, 2, 11), None, entries), batch)
    node.write(batch, sync=True)
    writes = WriteSet()
    for kind in STATE_KINDS:
        for i in range(records):
            writes.put(kind, b"key%05d" % i, b"value")
    batch = node.new_batch()
    shard.stage_applied(writes, 1, 11, batch)
    node.write(batch, sync=True)


def records_of(node: NodeStorage, shard_id: int) -> list[bytes]:
    return [
        key
        for kind in (b"h", b"l", b"x", b"s", b"n", *STATE_KINDS)
        for key in node.keys(shard_prefix(kind, shard_id), shard_prefix(kind, shard_id + 1))
    ]


def delete(node: NodeStorage, shard_id: int, max_keys: int) -> int:
    """Delete the shard in steps of `max_keys`; returns how many steps it took."""
    batch = node.new_batch()
    node.stage_delete_start(shard_id, batch, removed_at=20, term=3, vote=1)
    node.write(batch, sync=True)
    steps, done = 0, False
    while not done:
        batch = node.new_batch()
        done = node.stage_delete_step(shard_id, batch, max_keys)
        node.write(batch, sync=True)
        steps += 1
    return steps


def test_deleting_a_shard_removes_every_record_of_it_and_nothing_of_another(tmp_path: Path) -> None:
    node = NodeStorage.open(tmp_path, CLUSTER, 1)
    for shard_id in (1, 2, 3):
        filled(node, shard_id, records=50)
    others = records_of(node, 1) + records_of(node, 3)

    steps = delete(node, 2, max_keys=64)

    assert records_of(node, 2) == []
    assert records_of(node, 1) + records_of(node, 3) == others
    assert steps == (len(STATE_KINDS) * 50 + 13) // 64 + 1, "bounded steps: 150 state records, 13 Raft ones"
    assert node.shard_ids() == [1, 3]
    assert node.was_deleted(2)
    assert not node.was_deleted(1)
    node.close()


def test_a_deleted_shard_stays_deleted_and_remembered_after_reopen(tmp_path: Path) -> None:
    node = NodeStorage.open(tmp_path, CLUSTER, 1)
    filled(node, 4, records=5)
    delete(node, 4, max_keys=1000)
    node.close()

    again = NodeStorage.open(tmp_path, CLUSTER, 1)
    assert again.shard_ids() == []
    assert again.deleting_shards() == []
    assert again.was_deleted(4)
    tombstone = again.tombstone(4)
    assert tombstone is not None
    assert (tombstone.removed_at, tombstone.term, tombstone.vote) == (20, 3, 1), "what it must not forget"
    assert not again.shard(4).is_bootstrapped(), "a replica started again begins from nothing"
    again.close()


def test_a_crash_halfway_through_resumes_the_deletion_and_opens_cleanly() -> None:
    disk = MemoryDisk()
    node = NodeStorage.open_with(disk.opener, Path("/mem"), CLUSTER, 1)
    filled(node, 5, records=40)
    filled(node, 6, records=3)
    batch = node.new_batch()
    node.stage_delete_start(5, batch, removed_at=20, term=3, vote=None)
    node.write(batch, sync=True)
    batch = node.new_batch()
    # Kinds go in key order: a, d, h, then 4 of the log's 11 entries: loaded, it would have a gap.
    assert not node.stage_delete_step(5, batch, max_keys=85)
    node.write(batch, sync=True)
    disk.power_loss()

    again = NodeStorage.open_with(disk.opener, Path("/mem"), CLUSTER, 1)
    assert again.deleting_shards() == [5]
    assert again.shard_ids() == [6], "a half-deleted shard is never loaded as a replica"
    with pytest.raises(StorageUsageError):
        again.shard(5)
    delete_rest = again.new_batch()
    while not again.stage_delete_step(5, delete_rest, max_keys=1000):
        pass
    again.write(delete_rest, sync=True)
    assert records_of(again, 5) == []
    assert again.deleting_shards() == []


def test_a_corrupt_tombstone_refuses_the_dir(tmp_path: Path) -> None:
    node = NodeStorage.open(tmp_path, CLUSTER, 1)
    batch = node.new_batch()
    batch.put_raw(tombstone_key(9), b"\x00\x00\x00\x00junk")
    node.write(batch, sync=True)
    node.close()
    with pytest.raises(DataDirError, match="tombstone"):
        NodeStorage.open(tmp_path, CLUSTER, 1)
