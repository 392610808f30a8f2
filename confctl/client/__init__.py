"""The Confman client: a sans-I/O core (requests, replies, session, routing, calls) and two shells.

`Client` (blocking) and `AsyncClient` (asyncio) have the same methods; every
failure is a `ConfmanError` with `code`, `message` and `retryable`. The rules
they follow — leader hints, retries, exactly-once sessions, read-your-writes,
routing to shards — are written down in docs/protocol.md. Of confmand it imports only `confmand.protocol`,
the one pure definition of the wire that the server uses too.

Importing this package loads none of that: each name below is imported from its module on first
use (PEP 562), so `import confctl.client.errors` or `confctl.client.types` costs only those
modules, and a program that needs only `Client` never imports asyncio (`AsyncClient`'s shell)
— what keeps `confctl version` and the blocking `confctl get` quick to start
(tests/unit/test_confctl_imports.py holds that).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ below serves the names
    from confctl.client.aio import AsyncClient
    from confctl.client.errors import (
        CasFailed,
        ClockSkew,
        Compacted,
        ConfmanError,
        InternalServerError,
        InvalidArgument,
        InvalidRequest,
        NoQuorum,
        NotCaughtUp,
        NotFound,
        NotLeader,
        Overloaded,
        PartitionMoving,
        ProtocolError,
        RequestTimeout,
        ServerError,
        SessionExpired,
        SlowWatcher,
        StorageFailure,
        TooLarge,
        Unavailable,
        UnknownVersion,
        Unsupported,
        WrongShard,
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
        ShardInfo,
        ShardMapResult,
        TxnOp,
        TxnOpResult,
        TxnResult,
        Version,
        WatchBatch,
        WatchEvent,
        WriteResult,
    )
    from confctl.client.watch import Watch

# Where each public name lives (tests/unit/test_confctl_imports.py checks it against __all__).
_EXPORTS: dict[str, str] = {
    "Watch": "confctl.client.watch",
    "WatchEvent": "confctl.client.types",
    "WatchBatch": "confctl.client.types",
    "Overloaded": "confctl.client.errors",
    "SlowWatcher": "confctl.client.errors",
    "Compacted": "confctl.client.errors",
    "ABSENT": "confctl.client.types",
    "AsyncClient": "confctl.client.aio",
    "AuditRecord": "confctl.client.types",
    "AuditResult": "confctl.client.types",
    "CasFailed": "confctl.client.errors",
    "Client": "confctl.client.sync",
    "ClockSkew": "confctl.client.errors",
    "Compare": "confctl.client.types",
    "ConfmanError": "confctl.client.errors",
    "Consistency": "confctl.client.types",
    "GetResult": "confctl.client.types",
    "HistoryEntry": "confctl.client.types",
    "HistoryResult": "confctl.client.types",
    "InternalServerError": "confctl.client.errors",
    "InvalidArgument": "confctl.client.errors",
    "InvalidRequest": "confctl.client.errors",
    "LeaderHint": "confctl.client.types",
    "ListItem": "confctl.client.types",
    "ListResult": "confctl.client.types",
    "NoQuorum": "confctl.client.errors",
    "NodeStatus": "confctl.client.types",
    "NotCaughtUp": "confctl.client.errors",
    "NotFound": "confctl.client.errors",
    "NotLeader": "confctl.client.errors",
    "PartitionMoving": "confctl.client.errors",
    "PeerStatus": "confctl.client.types",
    "ProtocolError": "confctl.client.errors",
    "ReplyMeta": "confctl.client.types",
    "RequestTimeout": "confctl.client.errors",
    "ServerError": "confctl.client.errors",
    "SessionExpired": "confctl.client.errors",
    "ShardInfo": "confctl.client.types",
    "ShardMapResult": "confctl.client.types",
    "StorageFailure": "confctl.client.errors",
    "TooLarge": "confctl.client.errors",
    "TxnOp": "confctl.client.types",
    "TxnOpResult": "confctl.client.types",
    "TxnResult": "confctl.client.types",
    "Unavailable": "confctl.client.errors",
    "UnknownVersion": "confctl.client.errors",
    "Unsupported": "confctl.client.errors",
    "Version": "confctl.client.types",
    "WriteResult": "confctl.client.types",
    "WrongShard": "confctl.client.errors",
}

__all__ = [
    "ABSENT",
    "AsyncClient",
    "AuditRecord",
    "AuditResult",
    "CasFailed",
    "Client",
    "ClockSkew",
    "Compacted",
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
    "Overloaded",
    "PartitionMoving",
    "PeerStatus",
    "ProtocolError",
    "ReplyMeta",
    "RequestTimeout",
    "ServerError",
    "SessionExpired",
    "ShardInfo",
    "ShardMapResult",
    "SlowWatcher",
    "StorageFailure",
    "TooLarge",
    "TxnOp",
    "TxnOpResult",
    "TxnResult",
    "Unavailable",
    "UnknownVersion",
    "Unsupported",
    "Version",
    "Watch",
    "WatchBatch",
    "WatchEvent",
    "WriteResult",
    "WrongShard",
]


# Hidden from type checkers: they see the imports above, and would take any other name for Any.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        module = _EXPORTS.get(name)
        if module is None:  # not ours: lets `from confctl.client import replies` import the submodule
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # the next lookup is a plain module attribute
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *_EXPORTS})
