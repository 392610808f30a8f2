"""Leases in the state machine: their records, and which keys each one holds.

A lease (docs/protocol.md, *Leases*) belongs to one namespace: it holds keys of that namespace
only, so it lives where the namespace does, and moves with its partition (partitions.py exports
and ingests it). It is granted by a log entry; its id is that entry's shard and index,
`shard << 40 | index` (`lease_id`), unique in the cluster whichever shard it moves to. Its
records:

| kind | key | value |
|---|---|---|
| `g` lease | id (8 BE) | msgpack `[ttl_ms, namespace]` |
| `j` attachment | id (8 BE) + key UTF-8 | empty: the key is attached to the lease |

A key attached to a lease names it in its data record (`DataRecord.lease`), and has exactly one
attachment record: a put with another lease (or none) moves it, a delete removes it. Revoking or
expiring a lease deletes every key attached to it, as deletes of that entry (history, audit and
watch events like any other), then the lease. When a lease expires is the driver's to decide
(confmand/server/leases.py): an expiry is a log entry the leader proposes, so every replica
deletes the same keys at the same index.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import msgpack

from confmand.kv.records import u64
from confmand.kv.store import KVStore

LEASE: Final = b"g"
ATTACHED: Final = b"j"
MIN_TTL_MS: Final = 1_000
MAX_TTL_MS: Final = 24 * 3_600_000
SHARD_SHIFT: Final = 40  # a shard's log reaches 2**40 entries long after its disks are replaced


def lease_id(shard_id: int, index: int) -> int:
    """The id of the lease granted by the entry at `index` of shard `shard_id`'s log."""
    return shard_id << SHARD_SHIFT | index


def lease_key(lease: int) -> bytes:
    return u64(lease)


def attachment_key(lease: int, key: str) -> bytes:
    return u64(lease) + key.encode("utf-8")


def encode_lease(ttl_ms: int, namespace: str) -> bytes:
    packed: bytes = msgpack.packb([ttl_ms, namespace])
    return packed


def lease_record(store: KVStore, lease: int) -> tuple[int, str] | None:
    """(ttl_ms, namespace) of the lease, or None if there is none here (never granted, ended,
    or moved away with its namespace)."""
    raw = store.get(LEASE, lease_key(lease))
    if raw is None:
        return None
    ttl_ms, namespace = msgpack.unpackb(raw, raw=False)
    return int(ttl_ms), str(namespace)


def lease_ttl_ms(store: KVStore, lease: int) -> int | None:
    record = lease_record(store, lease)
    return None if record is None else record[0]


def all_leases(store: KVStore) -> list[tuple[int, int]]:
    """Every lease here: (id, ttl_ms), by id."""
    return [
        (int.from_bytes(key, "big"), int(msgpack.unpackb(raw, raw=False)[0]))
        for key, raw in store.scan(LEASE)
    ]


def leases_of(store: KVStore, wanted: Callable[[str], bool]) -> list[tuple[int, bytes, list[str]]]:
    """The leases whose namespace `wanted` accepts: (id, record as stored, attached keys)."""
    found = []
    for key, raw in store.scan(LEASE):
        if wanted(str(msgpack.unpackb(raw, raw=False)[1])):
            lease = int.from_bytes(key, "big")
            found.append((lease, raw, attached_keys(store, lease)))
    return found


def attached_keys(store: KVStore, lease: int) -> list[str]:
    """The keys attached to the lease, in key order."""
    return [key[8:].decode("utf-8") for key, _ in store.scan(ATTACHED, u64(lease), u64(lease + 1))]
