"""The records the config state machine stores: their kinds, key layouts and msgpack encodings.

KV owns these one-byte kinds (the node's storage owns h, l, s, n, x, m):

| kind | key | value (msgpack array) |
|---|---|---|
| `d` data | key UTF-8 | `[value, create_version, mod_version, changes]` |
| `v` history | key UTF-8 + NUL + index (8 bytes BE) | `[op, value or nil, version, hlc, principal]` |
| `a` audit | hlc (8 BE) + index (8 BE) + ordinal (2 BE) | `[hlc, version, principal, op, key, prev, new]` |
| `c` session | client_id | `[last_hlc, floor, [[seq, result], ...]]` (results by seq) |
| `e` sweep | `b"sessions"` | `[next_sweep_ms, cursor or nil]` (where the session sweep is) |

Versions are `[term, index]`. Integers in keys are fixed-width big-endian so key order is
numeric order: a key's history is one contiguous range ordered by index, and the audit log is
ordered by HLC, then index, then the change's ordinal inside its entry.

Invariants: keys never contain NUL (codec.validate_key rejects them), so the history range of
`k` (`k + NUL` up to `k + \\x01`) holds exactly `k`'s records. Encoders write arrays in a fixed
field order, so equal records are equal bytes on every replica. Decoders are strict and raise
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
    version_text,
)
from confmand.kv.version import Version

DATA: Final = b"d"
HISTORY: Final = b"v"
AUDIT: Final = b"a"
SESSION: Final = b"c"
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
    """A live key: its value, the version that created it, the last that changed it, and how often."""

    value: bytes
    create_version: Version
    mod_version: Version
    changes: int

    def encode(self) -> bytes:
        return pack(
            [self.value, encode_version(self.create_version), encode_version(self.mod_version), self.changes]
        )

    @staticmethod
    def decode(data: bytes) -> DataRecord:
        value, create, mod, changes = expect_list(unpack(data, "data"), "data", 4)
        return DataRecord(
            value=expect_bytes(value, "data.value"),
            create_version=decode_version(create, "data.create_version"),
            mod_version=decode_version(mod, "data.mod_version"),
            changes=expect_int(changes, "data.changes"),
        )


def data_key(key: str) -> bytes:
    return key.encode("utf-8")


# ---------------------------------------------------------------- history


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    """One version of a key: what it became (`op` put or delete) at `version`, when and by whom."""

    version: Version
    op: str
    value: bytes | None
    hlc: int
    principal: str

    def encode(self) -> bytes:
        return pack([self.op, self.value, encode_version(self.version), self.hlc, self.principal])

    @staticmethod
    def decode(data: bytes) -> HistoryRecord:
        op, value, version, hlc, principal = expect_list(unpack(data, "history"), "history", 5)
        if op not in ("put", "delete"):
            raise RecordDecodeError(f"history.op: want put or delete, got {op!r}")
        return HistoryRecord(
            version=decode_version(version, "history.version"),
            op=op,
            value=None if value is None else expect_bytes(value, "history.value"),
            hlc=expect_int(hlc, "history.hlc"),
            principal=expect_str(principal, "history.principal"),
        )

    def to_reply(self) -> dict[str, object]:
        return {
            "version": str(self.version),
            "op": self.op,
            "value": self.value,
            "hlc": self.hlc,
            "principal": self.principal,
        }


def history_key(key: str, index: int) -> bytes:
    return key.encode("utf-8") + b"\x00" + u64(index)


def history_range(key: str) -> tuple[bytes, bytes]:
    """`[start, stop)` holding exactly `key`'s history records (keys contain no NUL)."""
    encoded = key.encode("utf-8")
    return encoded + b"\x00", encoded + b"\x01"


# ---------------------------------------------------------------- audit


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One change of one key by one entry. `new_version` is None when the change was a delete."""

    hlc: int
    version: Version
    principal: str
    op: str
    key: str
    prev_version: Version | None
    new_version: Version | None

    def encode(self) -> bytes:
        return pack(
            [
                self.hlc,
                encode_version(self.version),
                self.principal,
                self.op,
                self.key,
                encode_version(self.prev_version),
                encode_version(self.new_version),
            ]
        )

    @staticmethod
    def decode(data: bytes) -> AuditRecord:
        hlc, version, principal, op, key, prev, new = expect_list(unpack(data, "audit"), "audit", 7)
        return AuditRecord(
            hlc=expect_int(hlc, "audit.hlc"),
            version=decode_version(version, "audit.version"),
            principal=expect_str(principal, "audit.principal"),
            op=expect_str(op, "audit.op"),
            key=expect_str(key, "audit.key"),
            prev_version=decode_optional_version(prev, "audit.prev_version"),
            new_version=decode_optional_version(new, "audit.new_version"),
        )

    def to_reply(self) -> dict[str, object]:
        return {
            "hlc": self.hlc,
            "version": str(self.version),
            "principal": self.principal,
            "op": self.op,
            "key": self.key,
            "prev_version": version_text(self.prev_version),
            "new_version": version_text(self.new_version),
        }


def audit_key(hlc: int, index: int, ordinal: int) -> bytes:
    return u64(hlc) + u64(index) + ordinal.to_bytes(_U16, "big")


# ---------------------------------------------------------------- sessions


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A client's exactly-once state.

    `results` are the cached replies by seq, ascending, in their wire form (`WriteResult.to_wire`):
    only a retry needs one decoded, so a session's use does not pay to decode its whole cache.
    `floor` is the lowest seq the session may still apply or answer: every seq below it was
    acknowledged by the client (`ack`) or its cached reply was dropped to respect the cap, so it
    must not be applied (again).
    """

    last_hlc: int
    floor: int
    results: tuple[tuple[int, list[Any]], ...]

    def cached(self, seq: int) -> WriteResult | None:
        """The reply cached for `seq`, or None."""
        for cached_seq, wire in self.results:
            if cached_seq == seq:
                return WriteResult.from_wire(wire)
        return None

    def check(self) -> SessionRecord:
        """Self, once every cached reply is known to decode (for records from outside: snapshots)."""
        for _, wire in self.results:
            WriteResult.from_wire(wire)
        return self

    def encode(self) -> bytes:
        return pack([self.last_hlc, self.floor, [[seq, wire] for seq, wire in self.results]])

    @staticmethod
    def decode(data: bytes) -> SessionRecord:
        last_hlc, floor, results = expect_list(unpack(data, "session"), "session", 3)
        cached: list[tuple[int, list[Any]]] = []
        for item in expect_array(results, "session.results"):
            seq, wire = expect_list(item, "session.results[]", 2)
            cached.append((expect_int(seq, "session.results[].seq"), expect_array(wire, "session.result")))
        if [s for s, _ in cached] != sorted({s for s, _ in cached}):
            raise RecordDecodeError("session.results: seqs not strictly ascending")
        return SessionRecord(
            last_hlc=expect_int(last_hlc, "session.last_hlc"),
            floor=expect_int(floor, "session.floor"),
            results=tuple(cached),
        )


@dataclass(frozen=True, slots=True)
class SweepState:
    """Where the session sweep is: the HLC ms when the next starts, or the client id it resumes at."""

    next_sweep_ms: int = 0
    cursor: bytes | None = None

    def encode(self) -> bytes:
        return pack([self.next_sweep_ms, self.cursor])

    @staticmethod
    def decode(data: bytes) -> SweepState:
        next_ms, cursor = expect_list(unpack(data, "sweep"), "sweep", 2)
        return SweepState(
            next_sweep_ms=expect_int(next_ms, "sweep.next_sweep_ms"),
            cursor=None if cursor is None else expect_bytes(cursor, "sweep.cursor"),
        )
