"""What applying one entry answers: `WriteResult`, and its wire form for the session cache.

A `WriteResult` is a value: frozen, built only from the entry and the state it was applied to,
so every replica computes the same one. The leader turns it into the reply fields of
docs/protocol.md with `to_reply()`; the session cache stores it with `to_wire()` and gives it
back, equal, with `WriteResult.from_wire()` (so a retried write gets the first reply).

Errors the state machine itself answers (none retryable): INVALID_REQUEST (the entry does not
decode), NOT_FOUND (delete of an absent key), CAS_FAILED (with `current_version`) and
SESSION_EXPIRED (the seq is below what the session still remembers).
"""

from __future__ import annotations

from typing import Any, Final

from confmand.protocol.errors import ErrorCode
from confmand.protocol.types import TxnOpResult, Version, version_text
from confmand.protocol.value import value_class

# The protocol's codes the state machine answers itself (stored in session caches as text).
INVALID_REQUEST: Final = ErrorCode.INVALID_REQUEST.value
NOT_FOUND: Final = ErrorCode.NOT_FOUND.value
CAS_FAILED: Final = ErrorCode.CAS_FAILED.value
SESSION_EXPIRED: Final = ErrorCode.SESSION_EXPIRED.value
COMPACTED: Final = ErrorCode.COMPACTED.value  # a rollback to a version whose history is trimmed
ERROR_CODES: Final = frozenset({INVALID_REQUEST, NOT_FOUND, CAS_FAILED, SESSION_EXPIRED, COMPACTED})
# Answered before a session is consulted, so never cached: the write may be retried elsewhere.
PARTITION_MOVING: Final = ErrorCode.PARTITION_MOVING.value
WRONG_SHARD: Final = ErrorCode.WRONG_SHARD.value

OPS: Final = frozenset(
    {"put", "delete", "cas", "txn", "rollback", "lease_grant", "lease_revoke", "lease_expire", "invalid"}
)


class RecordDecodeError(ValueError):
    """Stored bytes (a record of the state machine, or a cached result) are not what was written."""


@value_class
class WriteResult:
    """The answer to one applied entry. `version` is the entry's own version, even on errors."""

    ok: bool
    version: Version
    error_code: str | None = None
    error_message: str = ""
    op: str = "invalid"
    prev_version: Version | None = None
    current_version: Version | None = None  # CAS_FAILED: what the key's mod version is (0:0 absent)
    succeeded: bool | None = None  # txn: whether the compares held
    results: tuple[TxnOpResult, ...] = ()  # txn: one per applied op
    shard: int | None = None  # WRONG_SHARD: the shard the key's partition moved to (never cached)
    # Applied in the shard the key's partition left, answered again from the cache it brought:
    # `version` is then the move's in this shard (the first that includes the write), not the write's.
    moved: bool = False
    lease: int = 0  # lease_grant: the lease's id (kv/leases.py)

    @staticmethod
    def failure(
        op: str,
        version: Version,
        code: str,
        message: str,
        *,
        current_version: Version | None = None,
        shard: int | None = None,
    ) -> WriteResult:
        return WriteResult(
            ok=False,
            version=version,
            error_code=code,
            error_message=message,
            op=op,
            current_version=current_version,
            shard=shard,
        )

    def to_reply(self) -> dict[str, object]:
        """The op's reply fields of protocol.md (on errors: the extra fields of that error)."""
        if not self.ok:
            if self.error_code == CAS_FAILED:
                return {"current_version": version_text(self.current_version)}
            if self.error_code == WRONG_SHARD:
                return {"shard": self.shard}
            return {}
        moved: dict[str, object] = {"moved": True} if self.moved else {}
        if self.op == "lease_grant":
            return {"version": str(self.version), "lease": self.lease, **moved}
        if self.op == "txn":
            return {
                "succeeded": bool(self.succeeded),
                "version": str(self.version),
                "results": [r.to_wire() for r in self.results],
                **moved,
            }
        return {"version": str(self.version), "prev_version": version_text(self.prev_version), **moved}

    def to_wire(self) -> list[object]:
        """A msgpack-able form; `from_wire(to_wire())` gives back an equal result."""
        return [
            self.op,
            self.ok,
            _v(self.version),
            self.error_code,
            self.error_message,
            _v(self.prev_version),
            _v(self.current_version),
            self.succeeded,
            [[r.op, r.key, _v(r.version), _v(r.prev_version)] for r in self.results],
            # A 10th field only when set (older caches have 9), an 11th only on a grant.
            *([self.moved] if self.moved or self.lease else []),
            *([self.lease] if self.lease else []),
        ]

    @staticmethod
    def from_wire(raw: object) -> WriteResult:
        f = expect_array(raw, "write result")
        if len(f) not in (9, 10, 11) or (len(f) == 10 and f[9] is not True):
            raise RecordDecodeError(f"write result: want 9 fields (10 if moved, 11 a grant), got {f!r:.80}")
        lease = expect_int(f[10], "result.lease") if len(f) == 11 else 0
        op = expect_str(f[0], "result.op")
        if op not in OPS:
            raise RecordDecodeError(f"result.op: unknown op {op!r}")
        code = f[3]
        if code is not None and code not in ERROR_CODES:
            raise RecordDecodeError(f"result.error_code: unknown code {code!r}")
        if f[7] is not None and type(f[7]) is not bool:
            raise RecordDecodeError("result.succeeded: want a bool or nil")
        results = tuple(_txn_op_result(r) for r in expect_array(f[8], "result.results"))
        return WriteResult(
            ok=expect_bool(f[1], "result.ok"),
            version=decode_version(f[2], "result.version"),
            error_code=code,
            error_message=expect_str(f[4], "result.error_message"),
            op=op,
            prev_version=decode_optional_version(f[5], "result.prev_version"),
            current_version=decode_optional_version(f[6], "result.current_version"),
            succeeded=f[7],
            results=results,
            moved=len(f) >= 10 and f[9] is True,
            lease=lease,
        )


def _txn_op_result(raw: object) -> TxnOpResult:
    op, key, version, prev = expect_list(raw, "txn op result", 4)
    return TxnOpResult(
        op=expect_str(op, "txn op result.op"),
        key=expect_str(key, "txn op result.key"),
        version=decode_optional_version(version, "txn op result.version"),
        prev_version=decode_optional_version(prev, "txn op result.prev_version"),
    )


# ---------------------------------------------------------------- strict readers (records.py uses them too)


def _v(v: Version | None) -> list[int] | None:
    return None if v is None else [v.term, v.index]


def expect_array(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise RecordDecodeError(f"{where}: want an array, got {type(value).__name__}")
    return value


def expect_list(value: object, where: str, length: int) -> list[Any]:
    fields = expect_array(value, where)
    if len(fields) != length:
        raise RecordDecodeError(f"{where}: want {length} fields, got {len(fields)}")
    return fields


def expect_int(value: object, where: str) -> int:
    if type(value) is not int or value < 0:
        raise RecordDecodeError(f"{where}: want a non-negative int, got {value!r}")
    return value


def expect_str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise RecordDecodeError(f"{where}: want a str, got {type(value).__name__}")
    return value


def expect_bytes(value: object, where: str) -> bytes:
    if type(value) is not bytes:
        raise RecordDecodeError(f"{where}: want bytes, got {type(value).__name__}")
    return value


def expect_bool(value: object, where: str) -> bool:
    if type(value) is not bool:
        raise RecordDecodeError(f"{where}: want a bool, got {type(value).__name__}")
    return value


def decode_version(raw: object, where: str) -> Version:
    term, index = expect_list(raw, where, 2)
    return Version(expect_int(term, f"{where}.term"), expect_int(index, f"{where}.index"))


def decode_optional_version(raw: object, where: str) -> Version | None:
    return None if raw is None else decode_version(raw, where)


def encode_version(v: Version | None) -> list[int] | None:
    return _v(v)
