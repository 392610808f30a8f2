"""MemoryStorage, the in-memory twin of the node storage, keeps the log the core persisted."""

from __future__ import annotations

import pytest

from confmand.kv.store import MemoryKVStore, WriteSet
from confmand.raft import Entry, EntryKind, Membership, MemoryStorage, Snapshot, SnapshotMeta

MEMBERS = Membership(frozenset({1, 2, 3}))


def entries(first: int, last: int, term: int = 1) -> list[Entry]:
    return [Entry(term, i, EntryKind.NORMAL, b"%d" % i) for i in range(first, last + 1)]


def test_an_append_after_a_snapshot_saved_without_compaction_truncates_at_the_right_index() -> None:
    storage = MemoryStorage.bootstrap(MEMBERS)
    storage.append(entries(1, 10))
    storage.save_snapshot(Snapshot(SnapshotMeta(5, 1, MEMBERS), b""))

    storage.append(entries(8, 9, term=2))

    assert [(e.index, e.term) for e in storage.entries] == [(i, 1) for i in range(1, 8)] + [(8, 2), (9, 2)]


def test_an_append_inside_the_snapshot_is_refused() -> None:
    storage = MemoryStorage.bootstrap(MEMBERS)
    storage.append(entries(1, 10))
    storage.save_snapshot(Snapshot(SnapshotMeta(5, 1, MEMBERS), b""))

    with pytest.raises(ValueError, match="inside the snapshot"):
        storage.append(entries(5, 6, term=2))


def test_the_memory_kv_store_scans_the_last_possible_kind() -> None:
    store = MemoryKVStore()
    writes = WriteSet()
    writes.put(b"\xff", b"b", b"2")
    writes.put(b"\xff", b"a", b"1")
    writes.put(b"d", b"x", b"0")
    store.apply(writes)

    assert list(store.scan(b"\xff")) == [(b"a", b"1"), (b"b", b"2")]
