"""The one list of error codes of the client protocol, with what each tells a client.

Every code a server sends, and the three a client makes up itself, is here once, with
three facts a client needs (docs/protocol.md, *Error codes*):
- `retryable`: whether the same request may succeed later, elsewhere or after a wait;
- `may_have_applied`: whether a *write* that got this code may still have taken effect
  (only then does a retry need the same session seq to stay exactly-once);
- `retry_with`: what to send again, in words (the table of the docs is checked against it).
Codes never change meaning once released; a client treats a code it does not know by the
`retryable` flag the reply carries.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CodeInfo:
    retryable: bool
    may_have_applied: bool
    retry_with: str


class ErrorCode(enum.StrEnum):
    """The codes a server sends in `error.code`."""

    NOT_LEADER = "NOT_LEADER"
    NO_QUORUM = "NO_QUORUM"
    TIMEOUT = "TIMEOUT"
    NOT_CAUGHT_UP = "NOT_CAUGHT_UP"
    WRONG_SHARD = "WRONG_SHARD"
    PARTITION_MOVING = "PARTITION_MOVING"
    STORAGE = "STORAGE"
    INVALID_REQUEST = "INVALID_REQUEST"
    UNSUPPORTED = "UNSUPPORTED"
    TOO_LARGE = "TOO_LARGE"
    NOT_FOUND = "NOT_FOUND"
    CAS_FAILED = "CAS_FAILED"
    SESSION_EXPIRED = "SESSION_EXPIRED"
    UNKNOWN_VERSION = "UNKNOWN_VERSION"
    CLOCK_SKEW = "CLOCK_SKEW"
    COMPACTED = "COMPACTED"
    SLOW_WATCHER = "SLOW_WATCHER"
    OVERLOADED = "OVERLOADED"
    INTERNAL = "INTERNAL"

    @property
    def info(self) -> CodeInfo:
        return SERVER_CODES[self]

    @property
    def retryable(self) -> bool:
        return SERVER_CODES[self].retryable

    @property
    def may_have_applied(self) -> bool:
        return SERVER_CODES[self].may_have_applied


class ClientErrorCode(enum.StrEnum):
    """Codes a client makes up itself; a server never sends them."""

    UNAVAILABLE = "UNAVAILABLE"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    PROTOCOL = "PROTOCOL"

    @property
    def info(self) -> CodeInfo:
        return CLIENT_CODES[self]

    @property
    def retryable(self) -> bool:
        return CLIENT_CODES[self].retryable

    @property
    def may_have_applied(self) -> bool:
        return CLIENT_CODES[self].may_have_applied


_SAME_SEQ = "the same request, same `client_id` and `seq`"
SERVER_CODES: dict[ErrorCode, CodeInfo] = {
    ErrorCode.NOT_LEADER: CodeInfo(True, False, f"{_SAME_SEQ}, at once, at `leader.address`"),
    ErrorCode.NO_QUORUM: CodeInfo(True, False, f"{_SAME_SEQ}, at the next endpoint, with backoff"),
    ErrorCode.TIMEOUT: CodeInfo(
        True, True, f"{_SAME_SEQ} (never a new seq), at the next endpoint, with backoff"
    ),
    ErrorCode.NOT_CAUGHT_UP: CodeInfo(
        True, False, "the same read, same `min_version`, at `leader.address`, else the next endpoint"
    ),
    ErrorCode.WRONG_SHARD: CodeInfo(
        True, False, f"{_SAME_SEQ}, after fetching the shard map again, at the owning shard's leader"
    ),
    ErrorCode.PARTITION_MOVING: CodeInfo(
        True, False, f"{_SAME_SEQ}, after a backoff (the key's partition is between shards)"
    ),
    ErrorCode.STORAGE: CodeInfo(True, False, f"{_SAME_SEQ}, at the next endpoint, with backoff"),
    ErrorCode.INVALID_REQUEST: CodeInfo(False, False, "nothing: fix the request"),
    ErrorCode.UNSUPPORTED: CodeInfo(False, False, "nothing: this server does not know the op or `v`"),
    ErrorCode.TOO_LARGE: CodeInfo(False, False, "nothing: the message names the limit"),
    ErrorCode.NOT_FOUND: CodeInfo(False, False, "nothing: the key does not exist"),
    ErrorCode.CAS_FAILED: CodeInfo(
        False, False, "nothing (the same seq gets CAS_FAILED again): a new cas, with a new seq"
    ),
    ErrorCode.SESSION_EXPIRED: CodeInfo(
        False, True, "nothing: read the key to learn the outcome; go on with a new `client_id`"
    ),
    ErrorCode.UNKNOWN_VERSION: CodeInfo(
        False, False, "nothing: drop the token (it is not of this cluster), read without it"
    ),
    ErrorCode.CLOCK_SKEW: CodeInfo(
        False, False, "nothing (older servers only): drop the kept `hlc`, then make a new call"
    ),
    ErrorCode.COMPACTED: CodeInfo(
        False, False, "a new watch from `oldest` or later, after listing the prefix at one version"
    ),
    ErrorCode.SLOW_WATCHER: CodeInfo(True, False, "the same watch, from the last `progress` it was sent"),
    ErrorCode.OVERLOADED: CodeInfo(True, False, "the same request, at the next endpoint, with backoff"),
    ErrorCode.INTERNAL: CodeInfo(False, True, "nothing: a bug; report it with the message"),
}
CLIENT_CODES: dict[ClientErrorCode, CodeInfo] = {
    ClientErrorCode.UNAVAILABLE: CodeInfo(
        True, True, "a new call (a write's seq was released: read to learn the outcome first)"
    ),
    ClientErrorCode.INVALID_ARGUMENT: CodeInfo(False, False, "nothing: nothing was sent"),
    ClientErrorCode.PROTOCOL: CodeInfo(False, True, "nothing: the node is not speaking protocol v1"),
}
