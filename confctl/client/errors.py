"""The client's exceptions: one class per protocol error code, each with `code`, `message`, `retryable`.

Every failure the client raises is a `ConfmanError`. Server errors map one to
one from their `code` (an unknown code from a newer server becomes a plain
`ServerError` that keeps the server's `retryable`); the codes, and whether each is
retryable, are the protocol's (`confmand.protocol.errors`), not a list of our own. Client-side failures have
their own codes: `INVALID_ARGUMENT` (a bad argument, caught before anything is
sent; also a ValueError), `UNAVAILABLE` (no node gave a usable answer within
the timeout) and `PROTOCOL` (a node answered something that is not protocol v1).
"""

from __future__ import annotations

from confmand.protocol.errors import ClientErrorCode, ErrorCode
from confmand.protocol.types import LeaderHint, Version


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
    code = ErrorCode.NOT_LEADER.value
    default_retryable = ErrorCode.NOT_LEADER.retryable


class NoQuorum(ServerError):
    code = ErrorCode.NO_QUORUM.value
    default_retryable = ErrorCode.NO_QUORUM.retryable


class RequestTimeout(ServerError):
    """The server gave up; for a write the outcome is unknown (the client retries with the same seq)."""

    code = ErrorCode.TIMEOUT.value
    default_retryable = ErrorCode.TIMEOUT.retryable


class NotCaughtUp(ServerError):
    code = ErrorCode.NOT_CAUGHT_UP.value
    default_retryable = ErrorCode.NOT_CAUGHT_UP.retryable


class PartitionMoving(ServerError):
    """The key's partition is between two shards (a move is under way): the same request, later."""

    code = ErrorCode.PARTITION_MOVING.value
    default_retryable = ErrorCode.PARTITION_MOVING.retryable


class WrongShard(ServerError):
    """The node holds no replica of the key's shard, or the client's shard map is old: refetch it.

    `epoch` is the node's map epoch, `shard` the owner it knows (None: it knows none).
    """

    code = ErrorCode.WRONG_SHARD.value
    default_retryable = ErrorCode.WRONG_SHARD.retryable

    def __init__(
        self,
        message: str,
        *,
        retryable: bool | None = None,
        code: str | None = None,
        leader: LeaderHint | None = None,
        epoch: int | None = None,
        shard: int | None = None,
    ) -> None:
        super().__init__(message, retryable=retryable, code=code, leader=leader)
        self.epoch = epoch
        self.shard = shard


class StorageFailure(ServerError):
    code = ErrorCode.STORAGE.value
    default_retryable = ErrorCode.STORAGE.retryable


class InvalidRequest(ServerError):
    code = ErrorCode.INVALID_REQUEST.value
    default_retryable = ErrorCode.INVALID_REQUEST.retryable


class Unsupported(ServerError):
    code = ErrorCode.UNSUPPORTED.value
    default_retryable = ErrorCode.UNSUPPORTED.retryable


class TooLarge(ServerError):
    code = ErrorCode.TOO_LARGE.value
    default_retryable = ErrorCode.TOO_LARGE.retryable


class NotFound(ServerError):
    code = ErrorCode.NOT_FOUND.value
    default_retryable = ErrorCode.NOT_FOUND.retryable


class CasFailed(ServerError):
    """A cas expectation did not hold; `current_version` is what is there (ABSENT: nothing)."""

    code = ErrorCode.CAS_FAILED.value
    default_retryable = ErrorCode.CAS_FAILED.retryable

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
    code = ErrorCode.SESSION_EXPIRED.value
    default_retryable = ErrorCode.SESSION_EXPIRED.retryable


class ClockSkew(ServerError):
    code = ErrorCode.CLOCK_SKEW.value
    default_retryable = ErrorCode.CLOCK_SKEW.retryable


class UnknownVersion(ServerError):
    """A `min_version` token names no write of this cluster (its term does not match its index)."""

    code = ErrorCode.UNKNOWN_VERSION.value
    default_retryable = ErrorCode.UNKNOWN_VERSION.retryable


class Compacted(ServerError):
    """A watch cannot go on from its version: the replicas no longer have the changes after it
    (`oldest` is the oldest version one of them could start from), or its namespace moved to
    another shard, whose versions are another log's (`oldest` None). List the prefix at one
    version, then watch from that version."""

    code = ErrorCode.COMPACTED.value
    default_retryable = ErrorCode.COMPACTED.retryable

    def __init__(
        self,
        message: str,
        *,
        retryable: bool | None = None,
        leader: LeaderHint | None = None,
        oldest: Version | None = None,
    ) -> None:
        super().__init__(message, retryable=retryable, leader=leader)
        self.oldest = oldest


class SlowWatcher(ServerError):
    """A node ended a watch whose messages were not taken as fast as they came (the client's
    watch resumes from its last progress by itself; raised only by a client that does not)."""

    code = ErrorCode.SLOW_WATCHER.value
    default_retryable = ErrorCode.SLOW_WATCHER.retryable


class Overloaded(ServerError):
    """The node serves as many watches as it may (`requests.max_watches`)."""

    code = ErrorCode.OVERLOADED.value
    default_retryable = ErrorCode.OVERLOADED.retryable


class InternalServerError(ServerError):
    code = ErrorCode.INTERNAL.value
    default_retryable = ErrorCode.INTERNAL.retryable


class InvalidArgument(ConfmanError, ValueError):
    """A bad argument to a client method, refused before anything was sent."""

    code = ClientErrorCode.INVALID_ARGUMENT.value
    default_retryable = ClientErrorCode.INVALID_ARGUMENT.retryable


class Unavailable(ConfmanError):
    """No node gave a usable answer within the timeout; the message lists the endpoints tried."""

    code = ClientErrorCode.UNAVAILABLE.value
    default_retryable = ClientErrorCode.UNAVAILABLE.retryable

    def __init__(
        self, message: str, *, endpoints_tried: tuple[str, ...] = (), last_error: ConfmanError | None = None
    ) -> None:
        super().__init__(message)
        self.endpoints_tried = endpoints_tried
        self.last_error = last_error


class ProtocolError(ConfmanError):
    """A node answered with something that is not a protocol v1 reply."""

    code = ClientErrorCode.PROTOCOL.value
    default_retryable = ClientErrorCode.PROTOCOL.retryable


SERVER_ERRORS: dict[str, type[ServerError]] = {
    cls.code: cls
    for cls in (
        NotLeader,
        NoQuorum,
        RequestTimeout,
        NotCaughtUp,
        PartitionMoving,
        WrongShard,
        StorageFailure,
        InvalidRequest,
        Unsupported,
        TooLarge,
        NotFound,
        CasFailed,
        SessionExpired,
        ClockSkew,
        UnknownVersion,
        Compacted,
        SlowWatcher,
        Overloaded,
        InternalServerError,
    )
}
assert set(SERVER_ERRORS) == {str(code) for code in ErrorCode}, "every protocol code has its exception"
