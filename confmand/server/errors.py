"""The exception that carries a protocol error through the driver, until it becomes a reply.

The codes themselves, and what each tells a client, are the protocol's
(`confmand.protocol.errors.ErrorCode`): one list, shared with the client.
"""

from __future__ import annotations

from confmand.protocol.errors import ErrorCode
from confmand.protocol.replies import ErrorBody


class RequestError(Exception):
    """A request that fails with a protocol error; `extra` adds reply fields (e.g. current_version)."""

    def __init__(self, code: ErrorCode, message: str, **extra: object) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.extra = extra

    def body(self) -> ErrorBody:
        """The reply's `error` map."""
        return ErrorBody.of(self.code, self.message, self.extra)
