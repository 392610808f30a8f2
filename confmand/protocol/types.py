"""The values both sides of the wire share: version tokens, txn parts, audit records, consistency.

Immutable, slotted value classes (value.py), safe to keep, compare and hash. Each knows its
wire form (`to_wire` / `from_wire`, or `str` / `parse` for a version token); decoding a
malformed wire value raises `WireError` naming the field.

A version is the `term:index` of the log entry that wrote something: its log position.
Versions of one shard are ordered by `index` (two committed entries never share an
index); `term` breaks ties so the order is total, and makes a token self-describing: a
replica serves a token only if its entry at `index` has that `term`.
`Version(0, 0)` (ABSENT) is the version of a key that does not exist.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Literal

from confmand.protocol.value import value_class

CompareTarget = Literal["version", "value", "exists"]
TxnOpKind = Literal["put", "delete"]


class WireError(ValueError):
    """A wire value that is not what the protocol says; the message names the field."""


class Consistency(enum.StrEnum):
    LINEARIZABLE = "linearizable"
    VERSION = "version"
    STALE = "stale"


@value_class
class Version:
    term: int
    index: int

    def __str__(self) -> str:
        return f"{self.term}:{self.index}"

    @staticmethod
    def parse(text: str) -> Version:
        """`"term:index"` -> Version; raises ValueError naming the bad token."""
        term_text, sep, index_text = text.partition(":")
        if not sep or not term_text.isdigit() or not index_text.isdigit():
            raise ValueError(f"not a version token (want term:index, e.g. 3:1042): {text!r}")
        return Version(int(term_text), int(index_text))

    def _key(self) -> tuple[int, int]:
        return (self.index, self.term)

    def __lt__(self, other: Version) -> bool:
        return self._key() < other._key()

    def __le__(self, other: Version) -> bool:
        return self._key() <= other._key()

    def __gt__(self, other: Version) -> bool:
        return self._key() > other._key()

    def __ge__(self, other: Version) -> bool:
        return self._key() >= other._key()

    def newer_than(self, other: Version | None) -> bool:
        """Log order (index, then term); everything is newer than None."""
        return other is None or self > other


ABSENT = Version(0, 0)


def version_text(v: Version | None) -> str | None:
    """A version's token, None for None (msgpack nil)."""
    return None if v is None else str(v)


def parse_version(raw: object, name: str, *, optional: bool = False) -> Version | None:
    """A token from the wire; WireError naming `name` if it is not one."""
    if raw is None:
        if optional:
            return None
        raise WireError(f"missing field {name!r}")
    if not isinstance(raw, str):
        raise WireError(f"field {name!r} must be a version token string, got {type(raw).__name__}")
    try:
        return Version.parse(raw)
    except ValueError as exc:
        raise WireError(f"field {name!r}: {exc}") from None


@value_class
class Session:
    """Exactly-once writes: `seq` numbers a client's writes; every seq below `ack` has had its reply.

    The server refuses `ack > seq`; `ack == seq` is what a client with nothing else
    outstanding sends.
    """

    client_id: bytes
    seq: int
    ack: int = 0


@value_class
class LeaderHint:
    """A reply's `leader`: the leader's node id and client address."""

    node_id: int
    address: str

    def to_wire(self) -> dict[str, object]:
        return {"id": self.node_id, "address": self.address}


@value_class
class Compare:
    """One guard of a txn: the key's mod version, value, or existence equals the operand.

    `version == ABSENT` means "the key must not exist".
    """

    key: str
    target: CompareTarget
    version: Version | None = None  # target == "version"
    value: bytes | None = None  # target == "value"
    exists: bool | None = None  # target == "exists"

    def to_wire(self) -> dict[str, object]:
        out: dict[str, object] = {"key": self.key, "target": self.target}
        if self.target == "version":
            out["version"] = version_text(self.version)
        elif self.target == "value":
            out["value"] = self.value
        else:
            out["exists"] = self.exists
        return out


@value_class
class TxnOp:
    op: TxnOpKind
    key: str
    value: bytes | None = None  # required for put, None for delete

    def to_wire(self) -> dict[str, object]:
        if self.op == "put":
            return {"op": "put", "key": self.key, "value": self.value}
        return {"op": "delete", "key": self.key}


@value_class
class AuditRecord:
    """One change of one key by one entry. `new_version` is None when the change was a delete."""

    hlc: int
    version: Version
    principal: str
    op: str
    key: str
    prev_version: Version | None
    new_version: Version | None
    restored_from: Version | None = None  # a rollback: the version whose value it wrote back

    def to_wire(self) -> dict[str, object]:
        wire: dict[str, object] = {
            "hlc": self.hlc,
            "version": str(self.version),
            "principal": self.principal,
            "op": self.op,
            "key": self.key,
            "prev_version": version_text(self.prev_version),
            "new_version": version_text(self.new_version),
        }
        if self.restored_from is not None:
            wire["restored_from"] = str(self.restored_from)
        return wire

    @staticmethod
    def from_wire(raw: Mapping[str, Any]) -> AuditRecord:
        version = parse_version(raw.get("version"), "version")
        assert version is not None
        return AuditRecord(
            hlc=_int(raw, "hlc"),
            version=version,
            principal=_str(raw, "principal"),
            op=_str(raw, "op"),
            key=_str(raw, "key"),
            prev_version=parse_version(raw.get("prev_version"), "prev_version", optional=True),
            new_version=parse_version(raw.get("new_version"), "new_version", optional=True),
            restored_from=parse_version(raw.get("restored_from"), "restored_from", optional=True),
        )


@value_class
class HistoryEntry:
    """One version of a key: what it became (`op` put or delete) at `version`, when and by whom."""

    version: Version
    op: str
    value: bytes | None  # None for a delete
    hlc: int
    principal: str

    def to_wire(self) -> dict[str, object]:
        return {
            "version": str(self.version),
            "op": self.op,
            "value": self.value,
            "hlc": self.hlc,
            "principal": self.principal,
        }

    @staticmethod
    def from_wire(raw: Mapping[str, Any]) -> HistoryEntry:
        version = parse_version(raw.get("version"), "version")
        assert version is not None
        value = raw.get("value")
        if value is not None and not isinstance(value, bytes):
            raise WireError("field 'value' must be bin or nil")
        return HistoryEntry(version, _str(raw, "op"), value, _int(raw, "hlc"), _str(raw, "principal"))


@value_class
class TxnOpResult:
    """One applied op of a txn. `version` is None for a delete that found nothing (a no-op)."""

    op: str
    key: str
    version: Version | None
    prev_version: Version | None

    def to_wire(self) -> dict[str, object]:
        return {
            "op": self.op,
            "key": self.key,
            "version": version_text(self.version),
            "prev_version": version_text(self.prev_version),
        }

    @staticmethod
    def from_wire(raw: Mapping[str, Any]) -> TxnOpResult:
        return TxnOpResult(
            _str(raw, "op"),
            _str(raw, "key"),
            parse_version(raw.get("version"), "version", optional=True),
            parse_version(raw.get("prev_version"), "prev_version", optional=True),
        )


def _int(raw: Mapping[str, Any], name: str) -> int:
    value = raw.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise WireError(f"field {name!r} must be an integer")
    return value


def _str(raw: Mapping[str, Any], name: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str):
        raise WireError(f"field {name!r} must be a string")
    return value
