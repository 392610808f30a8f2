"""The backup file: every shard's state at its own applied version, the shard map, one checksum.

Layout: `MAGIC`, then one msgpack array `[header, states]`, then the SHA-256 of everything
before it (32 bytes). `header` is a map: `format`, `created_ms`, `confman_version`, `map` (the
shard map's wire form), and `shards`, one map per shard in `states` order (the meta shard
first): `shard`, `applied` ("term:index"), `owns` and `initial` (partitions; empty for the
meta shard), `bytes` and `sha256` of its state. `states` holds each shard's state blob
(kv/snapshot.py).

`decode_backup` refuses, with a message that says what is wrong, a file that is not a
backup, was cut short, had a byte changed (the trailing checksum), or does not hold a
consistent copy (a data shard missing, or owning other partitions than the map gives it).
Whether each state's records are ones this version can install is the restore's check
(confmand/backup/restore.py): this module is the protocol's, which confctl shares, and pure
(bytes in, bytes out); confctl writes and reads the files (confctl/backup_files.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from confmand.protocol.shardmap import META_SHARD, ShardMap
from confmand.protocol.types import Version, WireError

MAGIC: Final = b"CONFMAN-BACKUP\n"
BACKUP_FORMAT: Final = 1
DIGEST_BYTES: Final = 32


class BackupError(Exception):
    """The file is not a complete, consistent backup this version can read."""


@dataclass(frozen=True, slots=True)
class ShardCopy:
    shard: int
    applied: Version  # the leader's applied version the state is at
    state: bytes  # kv/snapshot.py's blob
    owns: tuple[int, ...] = ()  # the partitions the shard owned then (data shards)
    initial: tuple[int, ...] = ()  # the partitions the cluster's first map gave it


@dataclass(frozen=True, slots=True)
class Backup:
    shard_map: ShardMap
    shards: tuple[ShardCopy, ...]  # the meta shard first, then the data shards in id order
    created_ms: int
    confman_version: str

    @property
    def meta(self) -> ShardCopy:
        return self.shards[0]

    @property
    def data_shards(self) -> tuple[ShardCopy, ...]:
        return self.shards[1:]


def encode_backup(backup: Backup) -> bytes:
    header = {
        "format": BACKUP_FORMAT,
        "created_ms": backup.created_ms,
        "confman_version": backup.confman_version,
        "map": backup.shard_map.to_wire(),
        "shards": [
            {
                "shard": c.shard,
                "applied": str(c.applied),
                "owns": list(c.owns),
                "initial": list(c.initial),
                "bytes": len(c.state),
                "sha256": hashlib.sha256(c.state).hexdigest(),
            }
            for c in backup.shards
        ],
    }
    body: bytes = msgpack.packb([header, [c.state for c in backup.shards]], use_bin_type=True)
    signed = MAGIC + body
    return signed + hashlib.sha256(signed).digest()


def decode_backup(data: bytes) -> Backup:
    """The backup in `data`, checked through and through; else BackupError saying why."""
    if not data.startswith(MAGIC):
        raise BackupError("not a Confman backup (it does not start with the backup header)")
    if len(data) < len(MAGIC) + DIGEST_BYTES:
        raise BackupError(f"truncated: {len(data)} bytes is too short for a backup")
    signed, digest = data[:-DIGEST_BYTES], data[-DIGEST_BYTES:]
    if hashlib.sha256(signed).digest() != digest:
        raise BackupError(
            f"corrupt or truncated: the checksum over its {len(data)} bytes does not match "
            "(the file was cut short or changed after it was written)"
        )
    try:
        raw = msgpack.unpackb(signed[len(MAGIC) :], raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises many types; to the caller it is one failure
        raise BackupError(f"unreadable: {type(exc).__name__}: {exc}") from None
    try:
        return _backup_of(raw)
    except (AttributeError, KeyError, TypeError, ValueError, WireError) as exc:
        raise BackupError(f"not a backup this version can read: {exc}") from None


def _backup_of(raw: Any) -> Backup:
    if not isinstance(raw, list) or len(raw) != 2 or not isinstance(raw[0], dict):
        raise ValueError("want [header, states]")
    header, states = raw
    if header.get("format") != BACKUP_FORMAT:
        raise ValueError(f"format {header.get('format')!r} (this version reads {BACKUP_FORMAT})")
    shard_map = ShardMap.from_wire(header["map"])
    lines = header["shards"]
    if not isinstance(lines, list) or not isinstance(states, list) or len(lines) != len(states):
        raise ValueError("the shard list and the states differ in length")
    copies = tuple(_copy_of(line, state) for line, state in zip(lines, states, strict=True))
    ids = [c.shard for c in copies]
    want = [META_SHARD, *shard_map.data_shards]
    if ids != want:
        raise ValueError(f"it holds shards {ids}; its map has {want}")
    for copy in copies[1:]:
        if list(copy.owns) != shard_map.partitions_of(copy.shard):
            raise ValueError(
                f"shard {copy.shard} owns partitions {list(copy.owns)}, "
                f"the map gives it {shard_map.partitions_of(copy.shard)}"
            )
    created, version = header["created_ms"], header["confman_version"]
    if not isinstance(created, int) or not isinstance(version, str):
        raise ValueError("created_ms and confman_version: want an int and a string")
    return Backup(shard_map, copies, created, version)


def _copy_of(line: Any, state: Any) -> ShardCopy:
    shard = line["shard"]
    if not isinstance(state, bytes) or not isinstance(shard, int):
        raise ValueError("a shard's state: want bytes")
    if len(state) != line["bytes"] or hashlib.sha256(state).hexdigest() != line["sha256"]:
        raise ValueError(f"shard {shard}: its state does not match its own checksum")
    owns, initial = line["owns"], line["initial"]
    if not all(isinstance(p, int) for p in [*owns, *initial]):
        raise ValueError(f"shard {shard}: partitions: want integers")
    return ShardCopy(shard, Version.parse(line["applied"]), state, tuple(owns), tuple(initial))
