"""The records the config state machine stores: their kinds, key layouts and msgpack encodings.

KV owns these one-byte kinds (the node's storage owns h, l, s, n, x, m):

| kind | key | value (msgpack array) |
|---|---|---|
| `d` data | key UTF-8 | `[value, create_version, mod_version, changes, [history index, ...]]` |
| `w` history header | key UTF-8 (only while the key is deleted) | `[history index, ...]` |
| `v` history | key UTF-8 + NUL + index (8 bytes BE) | `[op, value or nil, version, hlc, principal]` |
| `a` audit | hlc (8 BE) + index (8 BE) + ordinal (2 BE) | `[hlc, version, principal, op, key, prev, new]` |
| `c` session header | client_id | `[last_hlc, floor, count, low, top]` |
| `r` session result | len(client_id) (1 byte) + client_id + seq (8 BE) | a `WriteResult.to_wire()` |
| `e` sweep | `b"sessions"` | `[next_sweep_ms, cursor or nil]` (where the session sweep is) |
| `p` partition | partition (4 BE) | `[state, gen, peer shard or nil]` (partitions.py: it moved) |

Versions are `[term, index]`. Integers in keys are fixed-width big-endian so key order is
numeric order: a key's history is one contiguous range ordered by index, a session's results
one contiguous range ordered by seq (the length byte keeps one client id from being a prefix
of another's range), and the audit log is ordered by HLC, then index, then the change's ordinal.

Per-write cost is O(1) in what is retained: a key's retained history indexes (at most
`history_limit`, ascending) live in its data record, or in its history header `w` while the
key is deleted (a key has one of the two, never both; a key that never existed has neither),
so trimming history is point deletes, not a scan. A session's cached results are one record
each, so using a session reads and writes its small header, not its whole cache.

Invariants: keys never contain NUL (codec.validate_key rejects them), so the history range of
`k` (`k + NUL` up to `k + \\x01`) holds exactly `k`'s records, and they are exactly the indexes
listed in `k`'s data record or history header. Encoders write arrays in a fixed field order, so
equal records are equal bytes on every replica. Decoders are strict and raise
`RecordDecodeError`: a record that does not decode means the store is corrupt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import msgpack

from confmand.kv.results import (
    RecordDecodeError,
    WriteResult,
    decode_optional_version,
    decode_version,
    encode_version,
    expect_array,
    expect_bytes,
    expect_int,
    expect_list,
    expect_str,
)
from confmand.protocol.types import AuditRecord, HistoryEntry, Version

DATA: Final = b"d"
HISTORY: Final = b"v"
HISTORY_HEADER: Final = b"w"
AUDIT: Final = b"a"
SESSION: Final = b"c"
RESULT: Final = b"r"
SWEEP: Final = b"e"
SWEEP_KEY: Final = b"sessions"

_U64: Final = 8
_U16: Final = 2


def pack(fields: list[Any]) -> bytes:
    packed: bytes = msgpack.packb(fields)
    return packed


def unpack(data: bytes, where: str) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # msgpack raises many types; a bad record is one kind of failure
        raise RecordDecodeError(f"{where}: not msgpack: {type(exc).__name__}: {exc}") from None


def u64(n: int) -> bytes:
    return n.to_bytes(_U64, "big")


# ---------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class DataRecord:
    """A live key: its value, the version that created it, the last that changed it, how often,
    and the indexes of its retained history records (ascending)."""

    value: bytes
    create_version: Version
    mod_version: Version
    changes: int
    history: tuple[int, ...] = ()
    lease: int = 0  # the lease the key is attached to (leases.py); 0: none

    def __init__(  # noqa: PLR0917 (the fields, in order: tests/unit/test_hot_constructors.py)
        self,
        value: bytes,
        create_version: Version,
        mod_version: Version,
        changes: int,
        history: tuple[int, ...] = (),
        lease: int = 0,
    ) -> None:
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "create_version", create_version)
        object.__setattr__(self, "mod_version", mod_version)
        object.__setattr__(self, "changes", changes)
        object.__setattr__(self, "history", history)
        object.__setattr__(self, "lease", lease)

    def encode(self) -> bytes:
        c, m = self.create_version, self.mod_version
        fields = [self.value, [c.term, c.index], [m.term, m.index], self.changes, list(self.history)]
        if self.lease:  # a sixth field only on keys with a lease: every other record is as before
            fields.append(self.lease)
        return pack(fields)

    @staticmethod
    def decode(data: bytes) -> DataRecord:
        fields = unpack(data, "data")
        # The fast path checks every field's type inline; anything odd gets the named complaint.
        if type(fields) is list and len(fields) == 5:
            value, create, mod, changes, history = fields
            if (
                type(value) is bytes
                and _is_version(create)
                and _is_version(mod)
                and type(changes) is int
                and changes >= 0
                and type(history) is list
            ):
                return DataRecord(
                    value, Version(*create), Version(*mod), changes, decode_indexes(history, "data.history")
                )
        fields = expect_array(fields, "data")
        if len(fields) not in (5, 6):
            raise RecordDecodeError(f"data: want 5 or 6 fields, got {len(fields)}")
        value, create, mod, changes, history = fields[:5]
        return DataRecord(
            value=expect_bytes(value, "data.value"),
            create_version=decode_version(create, "data.create_version"),
            mod_version=decode_version(mod, "data.mod_version"),
            changes=expect_int(changes, "data.changes"),
            history=decode_indexes(history, "data.history"),
            lease=expect_int(fields[5], "data.lease") if len(fields) == 6 else 0,
        )


def _is_version(raw: object) -> bool:
    if type(raw) is not list or len(raw) != 2:
        return False
    term, index = raw
    return type(term) is int and type(index) is int and term >= 0 and index >= 0


def decode_indexes(raw: object, where: str) -> tuple[int, ...]:
    """A strictly ascending list of non-negative ints (history indexes), as a tuple."""
    items = expect_array(raw, where)
    previous = -1
    for n in items:
        if type(n) is not int or n <= previous:
            raise RecordDecodeError(f"{where}: want strictly ascending non-negative ints, got {items!r}")
        previous = n
    return tuple(items)


def encode_history_header(indexes: tuple[int, ...]) -> bytes:
    """The `w` record of a deleted key: the indexes of its retained history records."""
    return pack(list(indexes))


def decode_history_header(data: bytes) -> tuple[int, ...]:
    return decode_indexes(unpack(data, "history header"), "history header")


def data_key(key: str) -> bytes:
    return key.encode("utf-8")


# ---------------------------------------------------------------- history


def encode_history(entry: HistoryEntry) -> bytes:
    """A history entry as stored (the wire's HistoryEntry; its storage layout is this module's)."""
    return pack([entry.op, entry.value, encode_version(entry.version), entry.hlc, entry.principal])


def decode_history(data: bytes) -> HistoryEntry:
    op, value, version, hlc, principal = expect_list(unpack(data, "history"), "history", 5)
    if op not in ("put", "delete"):
        raise RecordDecodeError(f"history.op: want put or delete, got {op!r}")
    return HistoryEntry(
        version=decode_version(version, "history.version"),
        op=op,
        value=None if value is None else expect_bytes(value, "history.value"),
        hlc=expect_int(hlc, "history.hlc"),
        principal=expect_str(principal, "history.principal"),
    )


def history_key(key: str, index: int) -> bytes:
    return key.encode("utf-8") + b"\x00" + u64(index)


def history_range(key: str) -> tuple[bytes, bytes]:
    """`[start, stop)` holding exactly `key`'s history records (keys contain no NUL)."""
    encoded = key.encode("utf-8")
    return encoded + b"\x00", encoded + b"\x01"


# ---------------------------------------------------------------- audit


def encode_audit(record: AuditRecord) -> bytes:
    """An audit record as stored (the wire's AuditRecord; its storage layout is this module's).
    A rollback's has an eighth field, the version it restored; every other change has seven."""
    fields = [
        record.hlc,
        encode_version(record.version),
        record.principal,
        record.op,
        record.key,
        encode_version(record.prev_version),
        encode_version(record.new_version),
    ]
    if record.restored_from is not None:
        fields.append(encode_version(record.restored_from))
    return pack(fields)


def decode_audit(data: bytes) -> AuditRecord:
    fields = expect_array(unpack(data, "audit"), "audit")
    if len(fields) not in (7, 8):
        raise RecordDecodeError(f"audit: want 7 or 8 fields, got {len(fields)}")
    hlc, version, principal, op, key, prev, new = fields[:7]
    restored = decode_version(fields[7], "audit.restored_from") if len(fields) == 8 else None
    return AuditRecord(
        hlc=expect_int(hlc, "audit.hlc"),
        version=decode_version(version, "audit.version"),
        principal=expect_str(principal, "audit.principal"),
        op=expect_str(op, "audit.op"),
        key=expect_str(key, "audit.key"),
        prev_version=decode_optional_version(prev, "audit.prev_version"),
        new_version=decode_optional_version(new, "audit.new_version"),
        restored_from=restored,
    )


def audit_key(hlc: int, index: int, ordinal: int) -> bytes:
    return u64(hlc) + u64(index) + ordinal.to_bytes(_U16, "big")


def audit_key_hlc(key: bytes) -> int:
    """The HLC stamp an audit key begins with (keys sort by it)."""
    return int.from_bytes(key[:8], "big")


# ---------------------------------------------------------------- sessions


@dataclass(frozen=True, slots=True)
class SessionHeader:
    """A client's exactly-once state, without its cached results (those are `r` records).

    `floor` is the lowest seq the session may still apply or answer: every seq below it was
    acknowledged by the client (`ack`) or its cached reply was dropped to respect the cap, so it
    must not be applied (again). `count` is how many result records the session has; every one
    has a seq >= `low` (`low <= floor`; below `floor` only when a write carried an ack above
    its own seq, whose result then stays cached until the session's next write). `top` is the
    highest seq the session has applied: a seq above it has no cached result (clients number
    writes upwards, so the common write skips the lookup).
    """

    last_hlc: int
    floor: int
    count: int
    low: int
    top: int

    def __init__(self, last_hlc: int, floor: int, count: int, low: int, top: int) -> None:
        object.__setattr__(self, "last_hlc", last_hlc)
        object.__setattr__(self, "floor", floor)
        object.__setattr__(self, "count", count)
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "top", top)

    def encode(self) -> bytes:
        return pack([self.last_hlc, self.floor, self.count, self.low, self.top])

    @staticmethod
    def decode(data: bytes) -> SessionHeader:
        fields = expect_list(unpack(data, "session"), "session", 5)
        last_hlc, floor, count, low, top = (expect_int(f, "session field") for f in fields)
        if low > floor:
            raise RecordDecodeError(f"session: low {low} above floor {floor}")
        return SessionHeader(last_hlc, floor, count, low, top)


def result_prefix(client_id: bytes) -> bytes:
    """Where a session's `r` records start: the client id, led by its length."""
    return bytes((len(client_id),)) + client_id


def result_key(client_id: bytes, seq: int) -> bytes:
    return result_prefix(client_id) + u64(seq)


def result_bound(client_id: bytes, seq: int) -> bytes:
    """The key of `seq` in the session's range, or the range's end if `seq` is past 2**64 - 1."""
    if seq >= 1 << 64:
        return result_prefix(client_id) + b"\xff" * _U64 + b"\x00"
    return result_key(client_id, seq)


def encode_result(result: WriteResult) -> bytes:
    return pack(result.to_wire())


def decode_result(data: bytes) -> WriteResult:
    return WriteResult.from_wire(unpack(data, "session result"))


@dataclass(frozen=True, slots=True)
class SweepState:
    """Where the session sweep is: the HLC ms when the next starts, or the client id it resumes at."""

    next_sweep_ms: int = 0
    cursor: bytes | None = None

    def __init__(self, next_sweep_ms: int = 0, cursor: bytes | None = None) -> None:
        object.__setattr__(self, "next_sweep_ms", next_sweep_ms)
        object.__setattr__(self, "cursor", cursor)

    def encode(self) -> bytes:
        return pack([self.next_sweep_ms, self.cursor])

    @staticmethod
    def decode(data: bytes) -> SweepState:
        next_ms, cursor = expect_list(unpack(data, "sweep"), "sweep", 2)
        return SweepState(
            next_sweep_ms=expect_int(next_ms, "sweep.next_sweep_ms"),
            cursor=None if cursor is None else expect_bytes(cursor, "sweep.cursor"),
        )
