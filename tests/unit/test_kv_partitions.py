"""Moving a partition between two shards' state machines: freeze, ingest, map move, drop."""

from __future__ import annotations

import msgpack

from confmand.kv.commands import Command, LeaseExpire, LeaseGrant, LeaseRevoke, Put, Session
from confmand.kv.harness import MemoryShard
from confmand.kv.leases import all_leases
from confmand.kv.partitions import (
    GONE,
    LEAVING,
    MAP_KEY,
    OWNED,
    Drop,
    Freeze,
    Ingest,
    MapMove,
    Ownership,
    export_partition,
    state_of,
)
from confmand.kv.queries import audit_records, get_key, key_history
from confmand.kv.snapshot import export_state, restore_writes
from confmand.protocol.shardmap import initial_map, partition_of
from confmand.protocol.types import Version

PARTITIONS = 8
KEY = "payments/db/url"
P = partition_of(KEY, PARTITIONS)
CLIENT = b"client-1"


def shards() -> tuple[MemoryShard, MemoryShard]:
    """Shard 1 owns every partition at first, shard 2 none."""
    source = MemoryShard(ownership=Ownership(PARTITIONS, frozenset(range(PARTITIONS))))
    target = MemoryShard(ownership=Ownership(PARTITIONS, frozenset()), shard_id=2)
    target.next_index = 40  # the two logs are unrelated
    return source, target


def put(key: str, value: bytes, seq: int | None = None, hlc: int = 1 << 16) -> Command:
    session = None if seq is None else Session(CLIENT, seq, seq)
    return Command(Put(key, value), hlc=hlc, session=session)


def move(source: MemoryShard, target: MemoryShard) -> None:
    assert source.apply_one(Command(Freeze(P, 2), hlc=9 << 16)).ok
    export = export_partition(source.store, Ownership(PARTITIONS, frozenset(range(PARTITIONS))), P)
    assert target.apply_one(Command(Ingest(P, 1, 1, export), hlc=10 << 16)).ok
    assert source.apply_one(Command(Drop(P, 1), hlc=11 << 16)).ok


def test_a_frozen_partition_refuses_writes_and_the_refusal_is_not_cached() -> None:
    source, target = shards()
    assert source.apply_one(Command(Freeze(P, 2), hlc=1)).ok
    refused = source.apply_one(put(KEY, b"late", seq=3))
    assert refused.error_code == "PARTITION_MOVING"
    assert get_key(source.store, KEY) is None
    export = export_partition(source.store, Ownership(PARTITIONS, frozenset(range(PARTITIONS))), P)
    assert target.apply_one(Command(Ingest(P, 1, 1, export), hlc=2)).ok
    assert target.apply_one(put(KEY, b"late", seq=3)).ok  # the same seq applies where it now belongs


def test_keys_history_and_audit_move_and_the_source_keeps_none_of_them() -> None:
    source, target = shards()
    source.apply(
        put(KEY, b"v1", hlc=1 << 16), put(KEY, b"v2", hlc=2 << 16), put("other/k", b"x", hlc=3 << 16)
    )
    move(source, target)
    moved = get_key(target.store, KEY)
    assert moved is not None
    assert (moved.value, moved.changes) == (b"v2", 2)
    # Restamped: a version names a place in the log of the shard that holds the key.
    assert moved.version.index == moved.create_version.index == target.next_index - 1
    assert [h.value for h in key_history(target.store, KEY)] == [b"v2", b"v1"]
    assert [h.version.index for h in key_history(target.store, KEY)] == [2, 1]  # the source's, as they were
    assert [r.key for r in audit_records(target.store, None, 100, "").records] == [KEY, KEY]
    assert get_key(source.store, KEY) is None
    assert key_history(source.store, KEY) == []
    assert [r.key for r in audit_records(source.store, None, 100, "").records] == ["other/k"]
    assert get_key(source.store, "other/k") is not None


def test_after_the_move_the_source_names_the_new_shard_and_the_target_serves_writes() -> None:
    source, target = shards()
    source.apply_one(put(KEY, b"v1"))
    move(source, target)
    refused = source.apply_one(put(KEY, b"v2"))
    assert (refused.error_code, refused.shard) == ("WRONG_SHARD", 2)
    assert target.apply_one(put(KEY, b"v2")).ok
    assert [h.value for h in key_history(target.store, KEY)] == [b"v2", b"v1"]


def test_a_write_retried_after_the_move_gets_its_first_answer_in_the_new_shards_versions() -> None:
    source, target = shards()
    first = source.apply_one(put(KEY, b"v1", seq=5))
    move(source, target)
    again = target.apply_one(put(KEY, b"v1", seq=5))
    record = get_key(target.store, KEY)
    assert record is not None
    assert record.changes == 1  # not applied twice
    assert (again.ok, again.op) == (first.ok, first.op)
    # The version a client's token for the new shard takes is one of its log, the key's own.
    assert again.version == record.version != first.version
    assert again.moved
    assert again.to_reply()["moved"] is True  # the client learns the version is the move's


def test_every_step_repeated_changes_nothing() -> None:
    source, target = shards()
    source.apply_one(put(KEY, b"v1"))
    move(source, target)
    before = (source.records(), target.records())
    export = export_partition(source.store, Ownership(PARTITIONS, frozenset(range(PARTITIONS))), P)
    assert target.apply_one(Command(Ingest(P, 1, 1, export), hlc=20 << 16)).ok
    assert source.apply_one(Command(Drop(P, 1), hlc=21 << 16)).ok
    assert (source.records(), target.records()) == before


def test_a_stale_ingest_after_the_partition_moved_on_changes_nothing() -> None:
    source, target = shards()
    source.apply_one(put(KEY, b"v1"))
    stale = Command(Freeze(P, 2), hlc=1)
    move(source, target)
    # The partition goes on to a third shard (gen 2), then an old ingest of gen 1 arrives again.
    assert target.apply_one(Command(Freeze(P, 3), hlc=30 << 16)).ok
    assert target.apply_one(Command(Drop(P, 2), hlc=31 << 16)).ok
    assert target.apply_one(Command(Ingest(P, 1, 1, b"\x93\x90\x90\x90"), hlc=32 << 16)).ok
    own = Ownership(PARTITIONS, frozenset())
    assert state_of(target.store, own, P).state == GONE
    assert source.apply_one(stale).error_code == "INVALID_REQUEST"  # gone: it cannot be frozen again


def test_partition_states_are_part_of_the_snapshot() -> None:
    source, _ = shards()
    source.apply_one(Command(Freeze(P, 2), hlc=1))
    restored = MemoryShard(ownership=Ownership(PARTITIONS, frozenset(range(PARTITIONS))))
    restored.store.apply(restore_writes(restored.store, export_state(source.store)))
    own = Ownership(PARTITIONS, frozenset(range(PARTITIONS)))
    assert state_of(restored.store, own, P).state == LEAVING
    assert state_of(source.store, own, (P + 1) % PARTITIONS).state == OWNED


def meta_with_map() -> MemoryShard:
    meta = MemoryShard()
    first = initial_map([1, 2, 3], data_shards=2, replication=3, partitions=PARTITIONS)
    meta.apply_one(Command(Put(MAP_KEY, msgpack.packb(first.to_wire())), hlc=1))
    return meta


def stored_owner(meta: MemoryShard) -> tuple[int, int]:
    record = get_key(meta.store, MAP_KEY)
    assert record is not None
    wire = msgpack.unpackb(record.value)
    return wire["epoch"], wire["owners"][0]


def test_the_map_moves_once_per_move_whatever_is_repeated() -> None:
    meta = meta_with_map()
    assert stored_owner(meta) == (1, 1)  # partition 0 belongs to shard 1 at first
    assert meta.apply_one(Command(MapMove(0, 1, 2, 1), hlc=2)).ok
    assert meta.apply_one(Command(MapMove(0, 1, 2, 1), hlc=3)).ok
    assert stored_owner(meta) == (2, 2)
    assert meta.apply_one(Command(MapMove(0, 2, 1, 2), hlc=4)).ok
    assert meta.apply_one(Command(MapMove(0, 1, 2, 1), hlc=5)).ok  # a stale repeat of move 1
    assert stored_owner(meta) == (3, 1)


def test_a_map_move_from_a_shard_that_does_not_own_the_partition_is_refused() -> None:
    meta = meta_with_map()
    refused = meta.apply_one(Command(MapMove(0, 2, 1, 1), hlc=2))
    assert refused.error_code == "INVALID_REQUEST"
    assert stored_owner(meta) == (1, 1)
    assert Version(1, 2) == refused.version


def test_a_lease_moves_with_its_namespace_and_keeps_its_id_and_keys() -> None:
    source, target = shards()
    granted = source.apply_one(Command(LeaseGrant("payments/", 5_000), hlc=1 << 16))
    lease = granted.lease
    assert source.apply_one(Command(Put(KEY, b"held", lease), hlc=2 << 16)).ok
    assert source.apply_one(Command(Freeze(P, 2), hlc=9 << 16)).ok

    frozen = source.apply_one(Command(LeaseExpire(lease), hlc=9 << 16))
    export = export_partition(source.store, Ownership(PARTITIONS, frozenset(range(PARTITIONS))), P)
    assert target.apply_one(Command(Ingest(P, 1, 1, export), hlc=10 << 16)).ok
    assert source.apply_one(Command(Drop(P, 1), hlc=11 << 16)).ok

    assert frozen.error_code == "PARTITION_MOVING"  # the copy on its way holds it: not ended here
    assert all_leases(source.store) == []
    assert all_leases(target.store) == [(lease, 5_000)]
    record = get_key(target.store, KEY)
    assert record is not None
    assert target.apply_one(Command(LeaseRevoke("payments/", lease), hlc=12 << 16)).ok
    assert get_key(target.store, KEY) is None
