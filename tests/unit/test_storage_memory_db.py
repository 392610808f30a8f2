"""The in-memory LevelDB twin keeps LevelDB's durability rules, and NodeStorage runs on it unchanged."""

from __future__ import annotations

import errno
import random
from pathlib import Path

import pytest

from confmand.raft import Membership
from confmand.storage import NodeStorage, StorageFullError
from confmand.storage.memory_db import MemoryDisk, Op

PATH = Path("/nonexistent/memory-disk")


def _write(disk: MemoryDisk, ops: list[Op], sync: bool) -> None:
    db = disk.opener(PATH, True)
    wb = db.write_batch(sync=sync)
    for key, value in ops:
        if value is None:
            wb.delete(key)
        else:
            wb.put(key, value)
    wb.write()
    db.close()


def _items(disk: MemoryDisk) -> list[tuple[bytes, bytes]]:
    db = disk.opener(PATH, True)
    with db.iterator() as it:
        items = list(it)
    db.close()
    return items  # type: ignore[return-value]


def test_an_unsynced_write_is_visible_and_lost_on_power_loss() -> None:
    disk = MemoryDisk()
    _write(disk, [(b"a", b"1")], sync=False)
    assert _items(disk) == [(b"a", b"1")]
    assert disk.power_loss() == 1
    assert _items(disk) == []


def test_a_synced_write_makes_every_earlier_write_durable() -> None:
    disk = MemoryDisk()
    _write(disk, [(b"a", b"1")], sync=False)
    _write(disk, [(b"b", b"2"), (b"a", None)], sync=True)
    _write(disk, [(b"c", b"3")], sync=False)
    disk.power_loss()
    assert _items(disk) == [(b"b", b"2")]


def test_power_loss_keeps_a_prefix_of_the_unsynced_writes() -> None:
    for seed in range(20):
        disk = MemoryDisk()
        for i in range(5):
            _write(disk, [(b"k%d" % i, b"v")], sync=False)
        disk.power_loss(random.Random(seed))
        kept = [k for k, _ in _items(disk)]
        assert kept == [b"k%d" % i for i in range(len(kept))]


def test_one_handle_at_a_time_like_leveldbs_lock() -> None:
    disk = MemoryDisk()
    db = disk.opener(PATH, True)
    with pytest.raises(OSError, match="lock"):
        disk.opener(PATH, True)
    db.close()
    disk.opener(PATH, True)


def test_iterators_are_snapshots_and_seek() -> None:
    disk = MemoryDisk()
    _write(disk, [(b"a", b"1"), (b"c", b"3"), (b"e", b"5")], sync=True)
    db = disk.opener(PATH, True)
    it = db.iterator(include_value=False)
    db.write_batch(sync=False).put(b"b", b"2")  # never written: a batch lands only on write()
    it.seek(b"b")
    assert list(it) == [b"c", b"e"]
    assert list(db.iterator(start=b"b", stop=b"e", reverse=True)) == [(b"c", b"3")]


def test_node_storage_recovers_from_what_survived_a_power_loss() -> None:
    disk = MemoryDisk()
    storage = NodeStorage.open_with(disk.opener, PATH, "sim", 1)
    shard = storage.shard(1)
    batch = storage.new_batch()
    shard.stage_bootstrap(Membership(frozenset({1, 2, 3})), batch)
    storage.write(batch, sync=True)
    disk.power_loss()
    again = NodeStorage.open_with(disk.opener, PATH, "sim", 1)
    assert again.shard(1).is_bootstrapped()


def test_a_full_disk_refuses_the_write_and_storage_retries_it_later() -> None:
    disk = MemoryDisk()
    storage = NodeStorage.open_with(disk.opener, PATH, "sim", 1)
    full = [True]

    def refuse(sync: bool, ops: list[Op]) -> None:
        if full[0]:
            raise OSError(errno.ENOSPC, "IO error: No space left on device")

    disk.before_write = refuse
    batch = storage.new_batch()
    storage.shard(1).stage_bootstrap(Membership(frozenset({1})), batch)
    with pytest.raises(StorageFullError):
        storage.write(batch, sync=True)
    full[0] = False
    storage.write(batch, sync=True)  # the same batch, through a reopened handle
    disk.power_loss()
    assert NodeStorage.open_with(disk.opener, PATH, "sim", 1).shard(1).is_bootstrapped()


def test_a_new_log_file_leaves_the_old_ones_unsynced_tail_at_risk() -> None:
    """LevelDB closes a full log file without syncing it (google/leveldb#193): a synced batch in
    the next file does not cover the older unsynced one until it is flushed to a table."""
    disk = MemoryDisk(log_bytes_max=10, flush_after_writes=3)
    _write(disk, [(b"a", b"12345678")], sync=False)
    _write(disk, [(b"b", b"12345678")], sync=True)  # starts log file 2, syncs only that
    disk.power_loss()
    assert _items(disk) == [(b"b", b"12345678")]


def test_the_old_log_file_is_safe_once_flushed() -> None:
    disk = MemoryDisk(log_bytes_max=10, flush_after_writes=2)
    _write(disk, [(b"a", b"12345678")], sync=False)
    _write(disk, [(b"b", b"12345678")], sync=True)
    _write(disk, [(b"c", b"1")], sync=True)  # the flush of the first file is done by now
    disk.power_loss()
    assert [k for k, _ in _items(disk)] == [b"a", b"b", b"c"]
