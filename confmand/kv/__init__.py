"""The config state machine: pure and deterministic, over a small store interface.

A NORMAL Raft entry carries a `Command` (commands.py) encoded by `encode_command` (codec.py).
`ConfigStateMachine.apply_batch` applies committed entries and returns the `WriteSet` the
driver persists atomically with the applied index, plus one `WriteResult` per entry; the
leader replies with `WriteResult.to_reply()`. Reads (`get_key`, `list_keys`, `key_history`,
`audit_records`) run over any `KVStore`. `export_state` / `decode_state` / `restore_writes`
turn the whole state into a Raft snapshot and back.

Module map: commands.py + codec.py (what an entry says), store.py +
overlay.py (where records live), records.py (their layout), changes.py (one entry's key
changes: data, history, audit), sessions.py (exactly-once), results.py (answers),
state_machine.py (the apply loop), queries.py (reads), snapshot.py (whole-state blobs).

No I/O, clock, thread or global randomness here (tests/unit/test_pure_boundary.py).
"""

from confmand.kv.codec import InvalidCommandError, decode_command, encode_command, validate_command
from confmand.kv.commands import (
    Cas,
    Command,
    CommandDecodeError,
    Compare,
    Delete,
    Operation,
    Put,
    Session,
    Txn,
    TxnOp,
)
from confmand.kv.overlay import OverlayStore
from confmand.kv.queries import (
    AuditPage,
    KeyRecord,
    ListPage,
    QueryError,
    audit_records,
    get_key,
    history_reply,
    key_history,
    list_keys,
)
from confmand.kv.results import (
    CAS_FAILED,
    INVALID_REQUEST,
    NOT_FOUND,
    SESSION_EXPIRED,
    RecordDecodeError,
    WriteResult,
)
from confmand.kv.snapshot import (
    STATE_KINDS,
    SnapshotDecodeError,
    decode_state,
    export_state,
    restore_writes,
)
from confmand.kv.state_machine import ConfigStateMachine
from confmand.kv.store import KVStore, MemoryKVStore, WriteSet
from confmand.protocol.types import ABSENT, AuditRecord, HistoryEntry, TxnOpResult, Version

__all__ = [
    "ABSENT",
    "CAS_FAILED",
    "INVALID_REQUEST",
    "NOT_FOUND",
    "SESSION_EXPIRED",
    "STATE_KINDS",
    "AuditPage",
    "AuditRecord",
    "Cas",
    "Command",
    "CommandDecodeError",
    "Compare",
    "ConfigStateMachine",
    "Delete",
    "HistoryEntry",
    "InvalidCommandError",
    "KVStore",
    "KeyRecord",
    "ListPage",
    "MemoryKVStore",
    "Operation",
    "OverlayStore",
    "Put",
    "QueryError",
    "RecordDecodeError",
    "Session",
    "SnapshotDecodeError",
    "Txn",
    "TxnOp",
    "TxnOpResult",
    "Version",
    "WriteResult",
    "WriteSet",
    "audit_records",
    "decode_command",
    "decode_state",
    "encode_command",
    "export_state",
    "get_key",
    "history_reply",
    "key_history",
    "list_keys",
    "restore_writes",
    "validate_command",
]
