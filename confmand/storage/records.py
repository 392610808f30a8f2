"""The encoding of storage's own records: msgpack behind a CRC32 that also covers the key.

Value layout: `crc32(key + payload)` (4 bytes, big-endian) then the msgpack
payload. Binding the key into the checksum catches a value that is intact
but stored under the wrong key (e.g. log entry 7's bytes at index 8).

Payloads (lists, so that decoding checks their shape):
- hard state:     [term, vote or None, commit]
- log entry:      [term, index, kind, data]   (index must match the key)
- snapshot meta:  [index, term, membership (Membership.encode)]; format 1 and 2 dirs
                  may hold [index, term, membership, data_len, data_crc], whose data
                  record is no longer read (shard_storage.py, "Snapshots")
- applied index:  [term, index]
- node metadata:  one int or str

Decoding raises `RecordError` with what is wrong; callers turn it into a
`DataDirError` naming the data dir and the key.
"""

from __future__ import annotations

import zlib
from typing import Any

import msgpack

from confmand.raft.types import Entry, EntryKind, HardState, Membership, SnapshotMeta
from confmand.storage.keys import log_index_of

_CRC_BYTES = 4


class RecordError(ValueError):
    """A stored record does not decode: bad checksum, bad msgpack, or a wrong shape."""


def seal(key: bytes, obj: object) -> bytes:
    payload = msgpack.packb(obj, use_bin_type=True)
    return zlib.crc32(key + payload).to_bytes(_CRC_BYTES, "big") + payload


def unseal(key: bytes, value: bytes) -> Any:
    """The payload object of a sealed record; RecordError when the checksum or msgpack is bad."""
    if len(value) < _CRC_BYTES:
        raise RecordError(f"value of {len(value)} bytes is too short to hold a checksum")
    stored = int.from_bytes(value[:_CRC_BYTES], "big")
    payload = value[_CRC_BYTES:]
    if zlib.crc32(key + payload) != stored:
        raise RecordError("checksum mismatch")
    try:
        return msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except (ValueError, TypeError) as exc:  # msgpack errors are ValueErrors
        raise RecordError(f"checksum matches but the payload is not msgpack: {exc}") from exc


def _ints(obj: Any, n: int, what: str) -> list[int]:
    if not isinstance(obj, list) or len(obj) != n or not all(_is_uint(x) for x in obj):
        raise RecordError(f"{what} is not a list of {n} non-negative integers: {obj!r}")
    return obj


def _is_uint(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def encode_hard_state(key: bytes, hs: HardState) -> bytes:
    return seal(key, [hs.term, hs.vote, hs.commit])


def decode_hard_state(key: bytes, value: bytes) -> HardState:
    obj = unseal(key, value)
    if not (isinstance(obj, list) and len(obj) == 3 and (obj[1] is None or _is_uint(obj[1]))):
        raise RecordError(f"hard state has the wrong shape: {obj!r}")
    term, _, commit = _ints([obj[0], 0, obj[2]], 3, "hard state")
    return HardState(term=term, vote=obj[1], commit=commit)


def encode_entry(key: bytes, entry: Entry) -> bytes:
    return seal(key, [entry.term, entry.index, int(entry.kind), entry.data])


def decode_entry(key: bytes, value: bytes) -> Entry:
    obj = unseal(key, value)
    if not (isinstance(obj, list) and len(obj) == 4 and isinstance(obj[3], bytes)):
        raise RecordError(f"log entry has the wrong shape: {obj!r}")
    term, index, kind = _ints(obj[:3], 3, "log entry")
    if index != log_index_of(key):
        raise RecordError(f"entry says index {index} but is stored at index {log_index_of(key)}")
    try:
        entry_kind = EntryKind(kind)
    except ValueError as exc:
        raise RecordError(f"unknown entry kind {kind}") from exc
    return Entry(term, index, entry_kind, obj[3])


def encode_snapshot_meta(key: bytes, meta: SnapshotMeta) -> bytes:
    return seal(key, [meta.index, meta.term, meta.membership.encode()])


def decode_snapshot_meta(key: bytes, value: bytes) -> SnapshotMeta:
    obj = unseal(key, value)
    # Five fields: written by a format 1 or 2 dir, with the length and checksum of a data record.
    if not (isinstance(obj, list) and len(obj) in (3, 5) and isinstance(obj[2], bytes)):
        raise RecordError(f"snapshot meta has the wrong shape: {obj!r}")
    index, term = _ints(obj[:2], 2, "snapshot meta")
    try:
        membership = Membership.decode(obj[2])
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordError(f"snapshot meta holds a bad membership: {exc}") from exc
    return SnapshotMeta(index, term, membership)


def encode_applied(key: bytes, term: int, index: int) -> bytes:
    return seal(key, [term, index])


def decode_applied(key: bytes, value: bytes) -> tuple[int, int]:
    term, index = _ints(unseal(key, value), 2, "applied index")
    return term, index
