"""Snapshots: export -> decode -> install reproduces the state; garbage is refused before installing."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from confmand.kv.commands import Command, Delete, Put, Session, Txn, TxnOp
from confmand.kv.harness import MemoryShard
from confmand.kv.queries import audit_records, get_key, key_history, list_keys
from confmand.kv.records import DATA, SESSION
from confmand.kv.snapshot import (
    STATE_KINDS,
    SnapshotDecodeError,
    decode_state,
    export_state,
    restore_writes,
)
from confmand.kv.store import MemoryKVStore, WriteSet


def busy_shard() -> MemoryShard:
    s = MemoryShard(history_limit=2)
    s.apply(
        Command(Put("a/1", b"x"), 1 << 16, "alice", Session(b"c", 1)),
        Command(Put("a/1", b"y"), 2 << 16),
        Command(Put("a/1", b"z"), 3 << 16),
        Command(Txn((), (TxnOp("put", "a/2", b"q"), TxnOp("put", "b/1", b"r"))), 4 << 16),
        Command(Delete("b/1"), 5 << 16, "bob"),
    )
    return s


def installed(blob: bytes) -> MemoryKVStore:
    fresh = MemoryKVStore()
    for kind, key, value in decode_state(blob):
        writes = WriteSet()
        writes.put(kind, key, value)
        fresh.apply(writes)
    return fresh


def test_export_decode_install_reproduces_every_query_answer() -> None:
    source = busy_shard().store
    copy = installed(export_state(source))
    assert list_keys(copy).to_reply() == list_keys(source).to_reply()
    assert get_key(copy, "a/1") == get_key(source, "a/1")
    assert key_history(copy, "a/1") == key_history(source, "a/1")
    assert audit_records(copy) == audit_records(source)
    assert copy.get(SESSION, b"c") == source.get(SESSION, b"c")


def test_a_restored_replica_goes_on_exactly_like_the_original() -> None:
    original = busy_shard()
    restored = MemoryShard(installed(export_state(original.store)), history_limit=2)
    restored.next_index = original.next_index
    retry = Command(Put("a/1", b"x"), 9 << 16, "alice", Session(b"c", 1))
    assert restored.apply(retry, Command(Put("n", b""), 9 << 16)) == original.apply(
        retry, Command(Put("n", b""), 9 << 16)
    )
    assert restored.records() == original.records()


def test_equal_states_export_identical_bytes() -> None:
    assert export_state(busy_shard().store) == export_state(busy_shard().store)


def test_export_leaves_out_records_of_other_kinds() -> None:
    store = busy_shard().store
    writes = WriteSet()
    writes.put(b"x", b"applied", b"\x01")
    store.apply(writes)
    assert {kind for kind, _, _ in decode_state(export_state(store))} <= set(STATE_KINDS)


def test_restore_writes_replace_the_old_state_with_the_snapshots() -> None:
    target = MemoryShard()
    target.apply(Command(Put("stale", b"gone"), 1))
    target.store.apply(restore_writes(target.store, export_state(busy_shard().store)))
    assert get_key(target.store, "stale") is None
    assert target.records() == busy_shard().records()


def pack(*fields: Any) -> bytes:
    packed: bytes = msgpack.packb(list(fields))
    return packed


@pytest.mark.parametrize(
    ("blob", "complaint"),
    [
        (b"\xc1", "not msgpack"),
        (pack(2, []), "format"),
        (pack(1), "format, kinds"),
        (pack(1, [[b"h", []]]), "unknown or repeated kind"),
        (pack(1, [[b"d", []], [b"d", []]]), "unknown or repeated kind"),
        (pack(1, [[b"d", [[b"k", "text"]]]]), "key bytes, value bytes"),
        (pack(1, [[b"d", [[b"k", b"\x00"]]]]), "kind b'd', key b'k'"),
        (pack(1, [[b"a", [[b"2", b""], [b"1", b""]]]]), "kind b'a'"),
    ],
)
def test_a_malformed_snapshot_is_refused_with_a_reason(blob: bytes, complaint: str) -> None:
    with pytest.raises(SnapshotDecodeError, match=complaint):
        decode_state(blob)


def test_keys_out_of_order_in_a_snapshot_are_refused() -> None:
    good = busy_shard().store
    records = [[key, value] for key, value in good.scan(DATA)]
    with pytest.raises(SnapshotDecodeError, match="strictly ascending"):
        decode_state(pack(1, [[DATA, list(reversed(records))]]))


@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_raise_only_snapshot_decode_error(blob: bytes) -> None:
    outcome = decode_or_reason(blob)
    assert outcome if isinstance(outcome, str) else all(kind in STATE_KINDS for kind, _, _ in outcome)


def decode_or_reason(blob: bytes) -> list[tuple[bytes, bytes, bytes]] | str:
    try:
        return decode_state(blob)
    except SnapshotDecodeError as exc:  # any other exception type fails the test
        return str(exc)


def test_a_snapshot_that_fails_to_decode_changes_nothing() -> None:
    target = busy_shard()
    with pytest.raises(SnapshotDecodeError):
        restore_writes(target.store, b"junk")
    assert target.records() == busy_shard().records()
