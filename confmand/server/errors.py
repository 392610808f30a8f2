"""The stable error codes of the client protocol (docs/protocol.md), and the exception that carries one.

A code names what went wrong for a program; `retryable` says whether the
same request may succeed later (elsewhere or after a wait); the message is
for people. Codes never change meaning once released.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    NOT_LEADER = "NOT_LEADER"
    NO_QUORUM = "NO_QUORUM"
    TIMEOUT = "TIMEOUT"
    NOT_CAUGHT_UP = "NOT_CAUGHT_UP"
    UNKNOWN_VERSION = "UNKNOWN_VERSION"
    INVALID_REQUEST = "INVALID_REQUEST"
    UNSUPPORTED = "UNSUPPORTED"
    TOO_LARGE = "TOO_LARGE"
    NOT_FOUND = "NOT_FOUND"
    CAS_FAILED = "CAS_FAILED"
    SESSION_EXPIRED = "SESSION_EXPIRED"
    CLOCK_SKEW = "CLOCK_SKEW"
    STORAGE = "STORAGE"
    INTERNAL = "INTERNAL"

    @property
    def retryable(self) -> bool:
        return self in _RETRYABLE


_RETRYABLE = frozenset(
    {
        ErrorCode.NOT_LEADER,
        ErrorCode.NO_QUORUM,
        ErrorCode.TIMEOUT,
        ErrorCode.NOT_CAUGHT_UP,
        ErrorCode.STORAGE,
    }
)


class RequestError(Exception):
    """A request that fails with a protocol error; `extra` adds reply fields (e.g. current_version)."""

    def __init__(self, code: ErrorCode, message: str, **extra: object) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.extra = extra
