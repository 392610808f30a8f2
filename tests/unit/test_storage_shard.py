"""ShardStorage as the state machine's KVStore, and the rules of staging and writing batches."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from confmand.kv.store import MemoryKVStore, WriteSet
from confmand.raft.ready import Ready, SoftState
from confmand.raft.types import Entry, EntryKind, HardState, Membership, Role, SnapshotMeta
from confmand.storage import NodeStorage, StorageUsageError

MEMBERS = Membership(frozenset({1}))


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeStorage]:
    storage = NodeStorage.open(tmp_path, "c", 1)
    yield storage
    storage.close()


def appended(first: int, last: int, term: int = 1) -> Ready:
    entries = [Entry(term, i, EntryKind.NORMAL, b"e%d" % i) for i in range(first, last + 1)]
    return Ready(0, SoftState(Role.FOLLOWER, None), hard_state=HardState(term=term), entries=entries)


def apply(node: NodeStorage, shard_id: int, writes: WriteSet, index: int) -> None:
    batch = node.new_batch()
    node.shard(shard_id).stage_applied(writes, 1, index, batch)
    node.write(batch, sync=True)


# ---------------------------------------------------------------- KVStore


keys = st.binary(max_size=3)
changes = st.lists(
    st.tuples(st.sampled_from([b"d", b"v"]), keys, st.none() | st.binary(max_size=4)), max_size=20
)


@settings(max_examples=40, deadline=None)
@given(
    batches=st.lists(changes, min_size=1, max_size=3),
    start=keys,
    stop=st.none() | keys,
    reverse=st.booleans(),
)
def test_get_and_scan_agree_with_the_in_memory_store(
    batches: list[list[tuple[bytes, bytes, bytes | None]]], start: bytes, stop: bytes | None, reverse: bool
) -> None:
    model = MemoryKVStore()
    with tempfile.TemporaryDirectory() as tmp:
        node = NodeStorage.open(Path(tmp), "c", 1)
        shard = node.shard(4)
        for index, made in enumerate(batches, start=1):
            writes = WriteSet()
            for kind, key, value in made:
                if value is None:
                    writes.delete(kind, key)
                else:
                    writes.put(kind, key, value)
            model.apply(writes)
            apply(node, 4, writes, index)
        for kind in (b"d", b"v"):
            assert list(shard.scan(kind, start, stop, reverse)) == list(
                model.scan(kind, start, stop, reverse)
            )
            for _, key, _ in batches[0]:
                assert shard.get(kind, key) == model.get(kind, key)
        node.close()


def test_state_machine_records_of_one_shard_are_invisible_to_another(node: NodeStorage) -> None:
    writes = WriteSet()
    writes.put(b"d", b"k", b"one")
    apply(node, 1, writes, 1)
    assert node.shard(2).get(b"d", b"k") is None
    assert list(node.shard(2).scan(b"d")) == []
    assert list(node.shard(1).scan(b"d")) == [(b"k", b"one")]


def test_kinds_owned_by_storage_are_refused_to_the_state_machine(node: NodeStorage) -> None:
    writes = WriteSet()
    writes.put(b"l", b"k", b"v")
    with pytest.raises(StorageUsageError, match="belongs to node storage"):
        node.shard(0).stage_applied(writes, 1, 1, node.new_batch())
    with pytest.raises(StorageUsageError, match="exactly one byte"):
        node.shard(0).scan(b"dd")
    with pytest.raises(StorageUsageError, match="shard id"):
        node.shard(2**32)


def test_installing_state_replaces_the_given_kinds_and_keeps_the_others(node: NodeStorage) -> None:
    writes = WriteSet()
    writes.put(b"d", b"old", b"1")
    writes.put(b"a", b"audit", b"2")
    apply(node, 0, writes, 5)
    writes = WriteSet()
    writes.put(b"d", b"staged-not-written", b"3")
    earlier = node.new_batch()
    node.shard(0).stage_applied(writes, 1, 6, earlier)
    batch = node.new_batch()

    node.shard(0).stage_install_state([(b"d", b"new", b"4")], [b"d"], 3, 90, batch)
    node.write(earlier, sync=True)
    node.write(batch, sync=True)

    assert list(node.shard(0).scan(b"d")) == [(b"new", b"4")]
    assert node.shard(0).get(b"a", b"audit") == b"2"
    assert node.shard(0).applied() == (3, 90)


# ---------------------------------------------------------------- staging and writing


def test_a_batch_can_be_staged_while_the_previous_one_is_unwritten(node: NodeStorage) -> None:
    shard = node.shard(0)
    first = node.new_batch()
    shard.stage_ready(appended(1, 10), first)
    second = node.new_batch()
    shard.stage_ready(appended(6, 7, term=2), second)  # truncates entries staged in `first`
    assert shard.log_bounds() == (1, 0)

    node.write(first, sync=True)
    assert shard.log_bounds() == (1, 10)
    node.write(second, sync=True)
    assert shard.log_bounds() == (1, 7)
    assert [(e.index, e.term) for e in shard.initial_state().entries][-3:] == [(5, 1), (6, 2), (7, 2)]


def test_staging_into_a_sealed_batch_is_refused(node: NodeStorage) -> None:
    old = node.new_batch()
    node.new_batch()
    with pytest.raises(StorageUsageError, match="sealed"):
        node.shard(0).stage_ready(appended(1, 1), old)


def test_a_batch_is_written_once_and_only_by_its_own_node(node: NodeStorage, tmp_path: Path) -> None:
    batch = node.new_batch()
    node.shard(0).stage_ready(appended(1, 1), batch)
    node.write(batch, sync=False)
    with pytest.raises(StorageUsageError, match="already written"):
        node.write(batch, sync=True)
    other = NodeStorage.open(tmp_path / "other", "c", 2)
    foreign = other.new_batch()
    with pytest.raises(StorageUsageError, match="another NodeStorage"):
        node.write(foreign, sync=True)
    other.close()


def test_a_refused_stage_leaves_the_batch_unchanged(node: NodeStorage) -> None:
    batch = node.new_batch()
    node.shard(0).stage_ready(appended(1, 2), batch)
    before = list(batch.ops)
    with pytest.raises(StorageUsageError, match="gap in the log"):
        node.shard(0).stage_ready(appended(5, 6), batch)
    assert batch.ops == before


@pytest.mark.parametrize(
    ("stage", "complaint"),
    [
        (lambda s, b: s.stage_compact(3, b), "snapshot covers only 0"),
        (lambda s, b: s.stage_bootstrap(MEMBERS, b), "already has Raft state"),
        (lambda s, b: s.stage_applied(WriteSet(), 1, 0, b), "applied index would go back"),
        (lambda s, b: s.stage_snapshot(SnapshotMeta(3, 1, MEMBERS), b), "ahead of the state, applied to 2"),
        (lambda s, b: s.stage_snapshot(SnapshotMeta(0, 0, MEMBERS), b), None),
    ],
)
def test_staging_checks_its_preconditions(node: NodeStorage, stage: object, complaint: str | None) -> None:
    shard = node.shard(0)
    batch = node.new_batch()
    shard.stage_ready(appended(1, 4), batch)
    shard.stage_applied(WriteSet(), 1, 2, batch)
    node.write(batch, sync=True)
    batch = node.new_batch()
    assert callable(stage)
    if complaint is None:
        stage(shard, batch)  # a snapshot at the stored index is no regression
        assert len(batch) == 2
    else:
        with pytest.raises(StorageUsageError, match=complaint):
            stage(shard, batch)


def test_an_older_local_snapshot_is_refused(node: NodeStorage) -> None:
    batch = node.new_batch()
    node.shard(0).stage_ready(appended(1, 9), batch)
    node.shard(0).stage_applied(WriteSet(), 1, 9, batch)
    node.shard(0).stage_snapshot(SnapshotMeta(8, 1, MEMBERS), batch)
    with pytest.raises(StorageUsageError, match="older than the stored 8"):
        node.shard(0).stage_snapshot(SnapshotMeta(5, 1, MEMBERS), batch)


def test_compacting_short_of_the_snapshot_keeps_the_later_entries_on_disk(node: NodeStorage) -> None:
    shard = node.shard(0)
    batch = node.new_batch()
    shard.stage_ready(appended(1, 9), batch)
    shard.stage_applied(WriteSet(), 1, 9, batch)
    shard.stage_snapshot(SnapshotMeta(6, 1, MEMBERS), batch)
    shard.stage_compact(3, batch)
    node.write(batch, sync=True)

    assert shard.log_bounds() == (4, 9)
    assert [e.index for e in shard.initial_state().entries] == [7, 8, 9]
    batch = node.new_batch()
    shard.stage_ready(appended(10, 10), batch)
    node.write(batch, sync=True)
    assert shard.log_bounds() == (4, 10)


def test_a_reverse_scan_finds_a_lone_key_equal_to_start(node: NodeStorage) -> None:
    # plyvel 1.5 alone returns nothing here; ShardStorage.scan must not.
    writes = WriteSet()
    writes.put(b"d", b"k", b"v")
    apply(node, 0, writes, 1)
    assert list(node.shard(0).scan(b"d", b"k", reverse=True)) == [(b"k", b"v")]
