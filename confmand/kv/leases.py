"""Leases in the state machine: their records, and which keys each one holds.

A lease (docs/protocol.md, *Leases*) lives in one shard: it is granted by a log entry of that
shard, whose index is its id, and holds keys of that shard only. Its records:

| kind | key | value |
|---|---|---|
| `g` lease | id (8 BE) | msgpack `[ttl_ms]` |
| `j` attachment | id (8 BE) + key UTF-8 | empty: the key is attached to the lease |

A key attached to a lease names it in its data record (`DataRecord.lease`), and has exactly one
attachment record: a put with another lease (or none) moves it, a delete removes it. Revoking or
expiring a lease deletes every key attached to it, as deletes of that entry (history, audit and
watch events like any other), then the lease. When a lease expires is the driver's to decide
(confmand/server/leases.py): an expiry is a log entry the leader proposes, so every replica
deletes the same keys at the same index.
"""

from __future__ import annotations

from typing import Final

import msgpack

from confmand.kv.records import u64
from confmand.kv.store import KVStore

LEASE: Final = b"g"
ATTACHED: Final = b"j"
MIN_TTL_MS: Final = 1_000
MAX_TTL_MS: Final = 24 * 3_600_000


def lease_key(lease: int) -> bytes:
    return u64(lease)


def attachment_key(lease: int, key: str) -> bytes:
    return u64(lease) + key.encode("utf-8")


def encode_lease(ttl_ms: int) -> bytes:
    packed: bytes = msgpack.packb([ttl_ms])
    return packed


def lease_ttl_ms(store: KVStore, lease: int) -> int | None:
    """The lease's TTL, or None if there is no such lease (never granted, revoked or expired)."""
    raw = store.get(LEASE, lease_key(lease))
    if raw is None:
        return None
    fields = msgpack.unpackb(raw)
    ttl: int = fields[0]
    return ttl


def all_leases(store: KVStore) -> list[tuple[int, int]]:
    """Every lease of the shard: (id, ttl_ms), by id."""
    return [(int.from_bytes(key, "big"), int(msgpack.unpackb(raw)[0])) for key, raw in store.scan(LEASE)]


def attached_keys(store: KVStore, lease: int) -> list[str]:
    """The keys attached to the lease, in key order."""
    start = u64(lease)
    return [key[8:].decode("utf-8") for key, _ in store.scan(ATTACHED, start, u64(lease + 1))]
