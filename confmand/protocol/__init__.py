"""The one definition of the client wire protocol (docs/protocol.md), imported by server and client.

`errors` has the error codes and what each tells a client; `types` the values both sides
share (versions, compares, txn ops, audit records, sessions, leader hints); `ops` the
shape of each operation's request; `requests` and `replies` the envelope of each
direction and its msgpack encoding; `shardmap` the shard map and how a key finds
its partition (docs/sharding.md). The package is
pure — no I/O, no clock, nothing from the rest of confmand — so the client (confctl) can
import it cheaply; tests/unit/test_pure_boundary.py checks that.
"""

from confmand.protocol import ops
from confmand.protocol.errors import CLIENT_CODES, SERVER_CODES, ClientErrorCode, CodeInfo, ErrorCode
from confmand.protocol.replies import ErrorBody, ReplyEnvelope, decode_reply
from confmand.protocol.requests import (
    ADMIN_OPS,
    DEFAULT_MAX_REQUEST_BYTES,
    PROTOCOL_VERSION,
    READ_OPS,
    WRITE_OPS,
    RequestEnvelope,
)
from confmand.protocol.types import (
    ABSENT,
    AuditRecord,
    Compare,
    Consistency,
    LeaderHint,
    Session,
    TxnOp,
    Version,
    WireError,
    parse_version,
    version_text,
)

__all__ = [
    "ABSENT",
    "ADMIN_OPS",
    "CLIENT_CODES",
    "DEFAULT_MAX_REQUEST_BYTES",
    "PROTOCOL_VERSION",
    "READ_OPS",
    "SERVER_CODES",
    "WRITE_OPS",
    "AuditRecord",
    "ClientErrorCode",
    "CodeInfo",
    "Compare",
    "Consistency",
    "ErrorBody",
    "ErrorCode",
    "LeaderHint",
    "ReplyEnvelope",
    "RequestEnvelope",
    "Session",
    "TxnOp",
    "Version",
    "WireError",
    "decode_reply",
    "ops",
    "parse_version",
    "version_text",
]
