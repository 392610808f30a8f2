"""confctl's exit codes: one IntEnum, the only place they are defined (docs/protocol.md lists them).

The client's errors are imported only to map one (`for_error`): a command that never reached the
client, `confctl version` say, does not load them (they pull in the wire protocol).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from confctl.client.errors import ConfmanError


class ExitCode(enum.IntEnum):
    OK = 0
    ERROR = 1  # generic or internal error
    USAGE = 2  # bad command line, config or input file (typer's own code for usage errors)
    NOT_FOUND = 3
    COMPARE_FAILED = 4  # cas expectation or txn compare did not hold
    UNAVAILABLE = 5  # no node answered, no quorum, timeout
    REJECTED = 6  # invalid request, too large, or otherwise refused by the server


EPILOG = (
    "Exit codes: 0 ok, 1 error, 2 usage error, 3 not found, 4 compare failed (cas/txn), "
    "5 unavailable (no node answered / no quorum / timeout), 6 invalid request / too large / rejected."
)


def for_error(error: ConfmanError) -> ExitCode:
    """The exit code of a client error: retryable ones mean the cluster could not serve us now."""
    from confctl.client.errors import (  # noqa: PLC0415  (loaded already: `error` is one of them)
        CasFailed,
        InternalServerError,
        InvalidArgument,
        InvalidRequest,
        NotFound,
        ProtocolError,
        ServerError,
    )

    if isinstance(error, NotFound):
        return ExitCode.NOT_FOUND
    if isinstance(error, CasFailed):
        return ExitCode.COMPARE_FAILED
    if isinstance(error, InvalidArgument):
        return ExitCode.USAGE
    if isinstance(error, InternalServerError | ProtocolError):
        return ExitCode.ERROR
    if error.retryable:
        return ExitCode.UNAVAILABLE
    if isinstance(error, InvalidRequest | ServerError):
        return ExitCode.REJECTED
    return ExitCode.ERROR
