"""The client's exceptions: one class per protocol error code, each with `code`, `message`, `retryable`.

Every failure the client raises is a `ConfmanError`. Server errors map one to
one from their `code` (an unknown code from a newer server becomes a plain
`ServerError` that keeps the server's `retryable`). Client-side failures have
their own codes: `INVALID_ARGUMENT` (a bad argument, caught before anything is
sent; also a ValueError), `UNAVAILABLE` (no node gave a usable answer within
the timeout) and `PROTOCOL` (a node answered something that is not protocol v1).
"""

from __future__ import annotations

from confctl.client.types import LeaderHint, Version


class ConfmanError(Exception):
    """Base of everything the client raises."""

    code = "ERROR"
    default_retryable = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = self.default_retryable if retryable is None else retryable

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ServerError(ConfmanError):
    """An error reply from a node. `leader` is the node's leader hint, if it gave one."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool | None = None,
        code: str | None = None,
        leader: LeaderHint | None = None,
    ) -> None:
        super().__init__(message, retryable=retryable)
        if code is not None:
            self.code = code
        self.leader = leader


class NotLeader(ServerError):
    code = "NOT_LEADER"
    default_retryable = True


class NoQuorum(ServerError):
    code = "NO_QUORUM"
    default_retryable = True


class RequestTimeout(ServerError):
    """The server gave up; for a write the outcome is unknown (the client retries with the same seq)."""

    code = "TIMEOUT"
    default_retryable = True


class NotCaughtUp(ServerError):
    code = "NOT_CAUGHT_UP"
    default_retryable = True


class StorageFailure(ServerError):
    code = "STORAGE"
    default_retryable = True


class InvalidRequest(ServerError):
    code = "INVALID_REQUEST"


class Unsupported(ServerError):
    code = "UNSUPPORTED"


class TooLarge(ServerError):
    code = "TOO_LARGE"


class NotFound(ServerError):
    code = "NOT_FOUND"


class CasFailed(ServerError):
    """A cas expectation did not hold; `current_version` is what is there (ABSENT: nothing)."""

    code = "CAS_FAILED"

    def __init__(
        self,
        message: str,
        *,
        retryable: bool | None = None,
        code: str | None = None,
        leader: LeaderHint | None = None,
        current_version: Version | None = None,
    ) -> None:
        super().__init__(message, retryable=retryable, code=code, leader=leader)
        self.current_version = current_version

    def __str__(self) -> str:
        if self.current_version is None:
            return super().__str__()
        return f"{super().__str__()} (current version {self.current_version})"


class SessionExpired(ServerError):
    code = "SESSION_EXPIRED"


class ClockSkew(ServerError):
    code = "CLOCK_SKEW"


class InternalServerError(ServerError):
    code = "INTERNAL"


class InvalidArgument(ConfmanError, ValueError):
    """A bad argument to a client method, refused before anything was sent."""

    code = "INVALID_ARGUMENT"


class Unavailable(ConfmanError):
    """No node gave a usable answer within the timeout; the message lists the endpoints tried."""

    code = "UNAVAILABLE"
    default_retryable = True

    def __init__(
        self, message: str, *, endpoints_tried: tuple[str, ...] = (), last_error: ConfmanError | None = None
    ) -> None:
        super().__init__(message)
        self.endpoints_tried = endpoints_tried
        self.last_error = last_error


class ProtocolError(ConfmanError):
    """A node answered with something that is not a protocol v1 reply."""

    code = "PROTOCOL"


SERVER_ERRORS: dict[str, type[ServerError]] = {
    cls.code: cls
    for cls in (
        NotLeader,
        NoQuorum,
        RequestTimeout,
        NotCaughtUp,
        StorageFailure,
        InvalidRequest,
        Unsupported,
        TooLarge,
        NotFound,
        CasFailed,
        SessionExpired,
        ClockSkew,
        InternalServerError,
    )
}
