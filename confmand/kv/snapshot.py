"""The config state as one blob: what a Raft snapshot of a shard carries, and how it comes back.

`export_state(store)` packs every record of every kind the state machine owns (`STATE_KINDS`)
into a versioned msgpack blob, kinds in STATE_KINDS order, keys in store order, so equal
states give equal bytes. `decode_state(blob)` checks it strictly (format, known kinds, bytes,
strictly ascending keys, and that each record decodes as its kind) and raises
`SnapshotDecodeError` otherwise: a replica must never install a state it cannot read.
`restore_writes(store, blob)` is what installing means: a WriteSet that deletes every present
state record and writes the snapshot's, for the driver to persist with the snapshot's index.

Blob form: `[1, [[kind, [[key, value], ...]], ...]]`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import msgpack

from confmand.kv.leases import ATTACHED, LEASE
from confmand.kv.partitions import PARTITION, decode_partition_state
from confmand.kv.records import (
    AUDIT,
    DATA,
    HISTORY,
    HISTORY_HEADER,
    RESULT,
    SESSION,
    SWEEP,
    DataRecord,
    SessionHeader,
    SweepState,
    decode_audit,
    decode_history,
    decode_history_header,
    decode_result,
)
from confmand.kv.store import KVStore, WriteSet

SNAPSHOT_FORMAT: Final = 1
STATE_KINDS: Final[tuple[bytes, ...]] = (
    DATA,
    HISTORY_HEADER,
    HISTORY,
    AUDIT,
    SESSION,
    RESULT,
    SWEEP,
    PARTITION,  # which partitions moved in or out (kv/partitions.py): ownership travels with the state
    LEASE,  # leases and the keys each holds (kv/leases.py)
    ATTACHED,
)


def _check_lease(raw: bytes) -> object:
    ttl_ms, namespace = msgpack.unpackb(raw, raw=False)
    if type(ttl_ms) is not int or not isinstance(namespace, str):
        raise ValueError("a lease record is [ttl_ms, namespace]")
    return ttl_ms


def _check_attachment(raw: bytes) -> object:
    if raw:
        raise ValueError("an attachment record is empty")
    return raw


_DECODERS: Final[dict[bytes, Callable[[bytes], object]]] = {
    DATA: DataRecord.decode,
    HISTORY: decode_history,
    AUDIT: decode_audit,
    HISTORY_HEADER: decode_history_header,
    SESSION: SessionHeader.decode,
    RESULT: decode_result,
    SWEEP: SweepState.decode,
    PARTITION: decode_partition_state,
    LEASE: _check_lease,
    ATTACHED: _check_attachment,
}


class SnapshotDecodeError(ValueError):
    """The bytes are not a config state this version can install."""


def export_state(store: KVStore) -> bytes:
    """Every state-machine record of `store`, as one deterministic blob."""
    kinds = [[kind, [[key, value] for key, value in store.scan(kind)]] for kind in STATE_KINDS]
    blob: bytes = msgpack.packb([SNAPSHOT_FORMAT, kinds], use_bin_type=True)
    return blob


def decode_state(data: bytes) -> list[tuple[bytes, bytes, bytes]]:
    """The `(kind, key, value)` records of a blob from `export_state`, checked; else SnapshotDecodeError."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SnapshotDecodeError(f"want bytes, got {type(data).__name__}")
    try:
        raw = msgpack.unpackb(bytes(data), raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # msgpack raises many types; to the caller it is one failure
        raise SnapshotDecodeError(f"not msgpack: {type(exc).__name__}: {exc}") from None
    if not isinstance(raw, list) or len(raw) != 2:
        raise SnapshotDecodeError("want [format, kinds]")
    if type(raw[0]) is not int or raw[0] != SNAPSHOT_FORMAT:
        raise SnapshotDecodeError(f"unsupported snapshot format {raw[0]!r} (want {SNAPSHOT_FORMAT})")
    if not isinstance(raw[1], list):
        raise SnapshotDecodeError("kinds: want an array")
    records: list[tuple[bytes, bytes, bytes]] = []
    seen: set[bytes] = set()
    for group in raw[1]:
        if not isinstance(group, list) or len(group) != 2 or type(group[0]) is not bytes:
            raise SnapshotDecodeError("a kind group: want [kind, records]")
        kind, items = group
        if kind not in _DECODERS or kind in seen:
            raise SnapshotDecodeError(f"unknown or repeated kind {kind!r}")
        seen.add(kind)
        records.extend(_decode_group(kind, items))
    return records


def _decode_group(kind: bytes, items: object) -> list[tuple[bytes, bytes, bytes]]:
    if not isinstance(items, list):
        raise SnapshotDecodeError(f"kind {kind!r}: records: want an array")
    found: list[tuple[bytes, bytes, bytes]] = []
    previous: bytes | None = None
    for item in items:
        if not isinstance(item, list) or len(item) != 2 or not all(type(x) is bytes for x in item):
            raise SnapshotDecodeError(f"kind {kind!r}: a record: want [key bytes, value bytes]")
        key, value = item
        if previous is not None and key <= previous:
            raise SnapshotDecodeError(f"kind {kind!r}: keys not strictly ascending at {key!r}")
        try:
            _DECODERS[kind](value)
        except ValueError as exc:
            raise SnapshotDecodeError(f"kind {kind!r}, key {key!r}: {exc}") from None
        previous = key
        found.append((kind, key, value))
    return found


def restore_writes(store: KVStore, data: bytes) -> WriteSet:
    """The writes that make `store`'s state records exactly the blob's (decoded first: all or nothing)."""
    records = decode_state(data)
    writes = WriteSet()
    for kind in STATE_KINDS:
        for key, _ in store.scan(kind):
            writes.delete(kind, key)
    for kind, key, value in records:
        writes.put(kind, key, value)
    return writes
