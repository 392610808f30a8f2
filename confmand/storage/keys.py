"""The key layout of the node's one LevelDB: a kind byte, the shard id, then a suffix.

Invariants:
- Every key but node metadata is `kind(1) + shard_id(4, big-endian) + suffix`;
  node metadata is `b"m" + name`. Integers are fixed-width big-endian, so
  LevelDB's byte order is numeric order (log entries sort by index).
- Storage owns the kinds in `RAFT_KINDS`, `TOMBSTONE` and `META`; every other
  single byte is the state machine's, and storage knows nothing of its suffixes.
- A shard's tombstone (`t` + shard id) outlives the shard's other records: it
  says the node deleted its replica of the shard once (tombstones.py).
"""

from __future__ import annotations

from confmand.storage.errors import StorageUsageError

HARD_STATE = b"h"
LOG_ENTRY = b"l"
SNAPSHOT_META = b"s"
SNAPSHOT_DATA = b"n"  # format 1 and 2 only: a copy of the state, deleted with the next snapshot
APPLIED = b"x"
TOMBSTONE = b"t"
META = b"m"

RAFT_KINDS = frozenset({HARD_STATE, LOG_ENTRY, SNAPSHOT_META, SNAPSHOT_DATA, APPLIED})
RESERVED_KINDS = RAFT_KINDS | {META, TOMBSTONE}

META_FORMAT = META + b"format_version"
META_CLUSTER = META + b"cluster_id"
META_NODE = META + b"node_id"
META_SHAPE = META + b"cluster_shape"  # what the cluster was created with (partitions, shards, ...)
META_DIR_ID = META + b"dir_id"  # drawn once, when this dir first runs a node (identity.py)
META_PEER_DIRS = META + b"peer_dir_ids"  # node id -> the dir id it first showed (identity.py)

SHARD_ID_MAX = 2**32 - 1
INDEX_MAX = 2**64 - 1

_KIND_NAMES = {
    HARD_STATE: "hard state",
    LOG_ENTRY: "log entry",
    SNAPSHOT_META: "snapshot meta",
    SNAPSHOT_DATA: "snapshot data",
    APPLIED: "applied index",
    TOMBSTONE: "tombstone",
}


def check_shard_id(shard_id: int) -> None:
    if not 0 <= shard_id <= SHARD_ID_MAX:
        raise StorageUsageError(f"shard id {shard_id} is outside 0..{SHARD_ID_MAX}")


def check_kv_kind(kind: bytes) -> None:
    """A state-machine kind is one byte that storage does not own."""
    if len(kind) != 1:
        raise StorageUsageError(f"a record kind is exactly one byte, got {kind!r}")
    if kind in RESERVED_KINDS:
        raise StorageUsageError(f"kind {kind!r} belongs to node storage, not to the state machine")


def shard_prefix(kind: bytes, shard_id: int) -> bytes:
    return kind + shard_id.to_bytes(4, "big")


def log_key(shard_id: int, index: int) -> bytes:
    if not 0 <= index <= INDEX_MAX:
        raise StorageUsageError(f"log index {index} is outside 0..{INDEX_MAX}")
    return LOG_ENTRY + shard_id.to_bytes(4, "big") + index.to_bytes(8, "big")


def log_index_of(key: bytes) -> int:
    return int.from_bytes(key[5:13], "big")


def shard_of(key: bytes) -> int:
    return int.from_bytes(key[1:5], "big")


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with `prefix` (None: no such key)."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


def describe_key(key: bytes) -> str:
    """A human name for a storage key, for error messages: `log entry 42 of shard 0 (key 6c...)`."""
    kind = key[:1]
    if kind == META:
        return f"node metadata {key[1:].decode(errors='replace')!r}"
    name = _KIND_NAMES.get(kind, f"record of kind {kind!r}")
    where = f"of shard {shard_of(key)}" if len(key) >= 5 else "with a truncated key"
    if kind == LOG_ENTRY and len(key) == 13:
        name = f"log entry {log_index_of(key)}"
    return f"{name} {where} (key {key.hex()})"
