"""The reply side of the wire: the fields every reply carries, and the error map.

A reply is one msgpack map: `v`, `id`, `ok`, `node`, `hlc` (nil from a node whose
clock is off from its peers'), `leader` (nil or `{id, address}`), the op's fields, and on
failure `error: {code, message, retryable, ...extra}`. `ReplyEnvelope.encode` makes it
(the server); `decode_reply` and `ErrorBody.from_wire` read it (the client).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from typing import Any, Final

import msgpack

from confmand.protocol.errors import ErrorCode
from confmand.protocol.requests import PROTOCOL_VERSION, pack
from confmand.protocol.types import LeaderHint, WireError
from confmand.protocol.value import value_class

REPLY_BYTES_MAX: Final = 64 * 1024 * 1024  # a reply larger than any server limit allows is not one


@value_class
class ErrorBody:
    """A failed reply's `error` map. `code` is a str: a newer server may send codes we do not know."""

    code: str
    message: str
    retryable: bool
    extra: Mapping[str, object] = field(default_factory=dict)  # e.g. CAS_FAILED's current_version

    @staticmethod
    def of(code: ErrorCode, message: str, extra: Mapping[str, object] | None = None) -> ErrorBody:
        return ErrorBody(str(code), message, code.retryable, dict(extra or {}))

    def to_wire(self) -> dict[str, object]:
        out: dict[str, object] = {"code": self.code, "message": self.message, "retryable": self.retryable}
        out.update(self.extra)
        return out

    @staticmethod
    def from_wire(raw: object) -> ErrorBody:
        """The error map of a reply; an unknown code keeps the reply's `retryable` (default: no)."""
        if not isinstance(raw, dict):
            raise WireError("a failed reply lacks its 'error' map")
        code, message, retryable = raw.get("code"), raw.get("message"), raw.get("retryable")
        if not isinstance(code, str):
            raise WireError("field 'error.code' must be a string")
        if code in ErrorCode.__members__ and not isinstance(retryable, bool):
            retryable = ErrorCode(code).retryable
        extra = {k: v for k, v in raw.items() if k not in ("code", "message", "retryable")}
        return ErrorBody(code, message if isinstance(message, str) else "", retryable is True, extra)


@value_class
class ReplyEnvelope:
    request_id: int
    node: int
    hlc: int | None
    leader: LeaderHint | None
    error: ErrorBody | None = None
    shard: int | None = None  # the shard the reply's versions belong to (None: a node-level reply)

    def to_wire(self, fields: Mapping[str, object]) -> dict[str, object]:
        body: dict[str, object] = {
            "v": PROTOCOL_VERSION,
            "id": self.request_id,
            "ok": self.error is None,
            "node": self.node,
            "hlc": self.hlc,
            "leader": None if self.leader is None else self.leader.to_wire(),
            "shard": self.shard,
        }
        body.update(fields)
        if self.error is not None:
            body["error"] = self.error.to_wire()
        return body

    def encode(self, fields: Mapping[str, object]) -> bytes:
        return pack(self.to_wire(fields))


def decode_reply(frame: bytes) -> dict[str, Any] | None:
    """The reply map, or None for anything that is not a map with an integer `id` (not ours: drop it)."""
    if len(frame) > REPLY_BYTES_MAX:
        return None
    try:
        obj = msgpack.unpackb(frame, raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException):
        return None
    rid = obj.get("id") if isinstance(obj, dict) else None
    if not isinstance(rid, int) or isinstance(rid, bool):
        return None
    reply: dict[str, Any] = obj
    return reply
