"""The Confman client: a sans-I/O core (requests, replies, session, routing, calls) and two shells.

`Client` (blocking) and `AsyncClient` (asyncio) have the same methods; every
failure is a `ConfmanError` with `code`, `message` and `retryable`. The rules
they follow — leader hints, retries, exactly-once sessions, read-your-writes —
are written down in docs/protocol.md. Of confmand it imports only `confmand.protocol`,
the one pure definition of the wire that the server uses too.
"""

from __future__ import annotations

from confctl.client.aio import AsyncClient
from confctl.client.errors import (
    CasFailed,
    ClockSkew,
    ConfmanError,
    InternalServerError,
    InvalidArgument,
    InvalidRequest,
    NoQuorum,
    NotCaughtUp,
    NotFound,
    NotLeader,
    ProtocolError,
    RequestTimeout,
    ServerError,
    SessionExpired,
    StorageFailure,
    TooLarge,
    Unavailable,
    UnknownVersion,
    Unsupported,
)
from confctl.client.sync import Client
from confctl.client.types import (
    ABSENT,
    AuditRecord,
    AuditResult,
    Compare,
    Consistency,
    GetResult,
    HistoryEntry,
    HistoryResult,
    LeaderHint,
    ListItem,
    ListResult,
    NodeStatus,
    PeerStatus,
    ReplyMeta,
    TxnOp,
    TxnOpResult,
    TxnResult,
    Version,
    WriteResult,
)

__all__ = [
    "ABSENT",
    "AsyncClient",
    "AuditRecord",
    "AuditResult",
    "CasFailed",
    "Client",
    "ClockSkew",
    "Compare",
    "ConfmanError",
    "Consistency",
    "GetResult",
    "HistoryEntry",
    "HistoryResult",
    "InternalServerError",
    "InvalidArgument",
    "InvalidRequest",
    "LeaderHint",
    "ListItem",
    "ListResult",
    "NoQuorum",
    "NodeStatus",
    "NotCaughtUp",
    "NotFound",
    "NotLeader",
    "PeerStatus",
    "ProtocolError",
    "ReplyMeta",
    "RequestTimeout",
    "ServerError",
    "SessionExpired",
    "StorageFailure",
    "TooLarge",
    "TxnOp",
    "TxnOpResult",
    "TxnResult",
    "Unavailable",
    "UnknownVersion",
    "Unsupported",
    "Version",
    "WriteResult",
]
