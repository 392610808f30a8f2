"""`ConfigStateMachine`: applies committed NORMAL entries to the config store, deterministically.

`apply_batch(entries)` decodes each entry, applies it through an `OverlayStore` (so entries of
the batch, and ops of a txn, see each other's writes) and returns the `WriteSet` to persist with
the applied index, and one `WriteResult` per entry. It never writes the store itself.

Determinism (every replica must produce the same state from the same log):
- the only inputs are the store, the entries and the constructor's limits; time is the HLC the
  leader stamped into the command; no dict order, hash seed or clock is consulted: scans run
  in key order and writes are made in the order of the entries and their ops;
- state carried between entries lives in records (the session sweep position too), never in
  this object, so a replica that applies the log in other batches, or restarts between
  batches, ends with byte-identical records.

Semantics (docs/protocol.md): put creates or overwrites (create_version kept, changes + 1);
delete of an absent key is NOT_FOUND and writes nothing; cas compares the key's mod version
(ABSENT 0:0: must not exist) or its value, else CAS_FAILED with `current_version`; a txn applies
`success` if every compare holds, else `failure`, all at the entry's version, a delete of an
absent key inside it being a no-op. A key deleted and created again starts afresh (new
create_version, changes 1). An entry that does not decode answers INVALID_REQUEST and writes
nothing. Corrupt stored records raise `RecordDecodeError`: diverging silently would be worse.
"""

from __future__ import annotations

from collections.abc import Sequence

from confmand.kv.changes import KeyChanges
from confmand.kv.codec import decode_command
from confmand.kv.commands import (
    Cas,
    Command,
    CommandDecodeError,
    Compare,
    Delete,
    LeaseExpire,
    LeaseGrant,
    LeaseRevoke,
    Operation,
    Put,
    Rollback,
    Txn,
    TxnOp,
)
from confmand.kv.leases import (
    LEASE,
    MAX_TTL_MS,
    MIN_TTL_MS,
    attached_keys,
    encode_lease,
    lease_id,
    lease_key,
    lease_record,
)
from confmand.kv.overlay import OverlayStore
from confmand.kv.partitions import (
    OP_NAMES,
    Ownership,
    PartitionOp,
    apply_partition_op,
    refusal,
)
from confmand.kv.past import HistoryTrimmed, key_at
from confmand.kv.results import CAS_FAILED, COMPACTED, INVALID_REQUEST, NOT_FOUND, WriteResult
from confmand.kv.sessions import SWEEP_RESULTS, SessionTable, hlc_ms
from confmand.kv.store import KVStore, WriteSet
from confmand.protocol.shardmap import namespace_of
from confmand.protocol.types import ABSENT, TxnOpResult, Version

LEASE_OP_NAMES: dict[type, str] = {
    LeaseGrant: "lease_grant",
    LeaseRevoke: "lease_revoke",
    LeaseExpire: "lease_expire",
}


def op_name(cmd: Command) -> str:
    """The protocol's name of a command's operation: put, delete, cas, txn or a move's step."""
    op = cmd.op
    if isinstance(op, PartitionOp):
        return OP_NAMES[type(op)]
    if isinstance(op, Put):
        return "put"
    if isinstance(op, Delete):
        return "delete"
    if isinstance(op, Rollback):
        return "rollback"
    if isinstance(op, LeaseGrant | LeaseRevoke | LeaseExpire):
        return LEASE_OP_NAMES[type(op)]
    return "cas" if isinstance(op, Cas) else "txn"


class ConfigStateMachine:
    """The config store of one shard, over a KVStore the driver owns and persists."""

    __slots__ = (
        "_history_limit",
        "_max_session_results",
        "_ownership",
        "_session_ttl_ms",
        "_shard_id",
        "_store",
        "_sweep_results",
    )

    def __init__(
        self,
        store: KVStore,
        history_limit: int = 10,
        session_ttl_ms: int = 3_600_000,
        max_session_results: int = 1024,
        *,
        ownership: Ownership | None = None,
        sweep_results: int = SWEEP_RESULTS,
        shard_id: int = 1,
    ) -> None:
        """`ownership` None: the shard holds every key (the meta shard; a store without partitions).
        `sweep_results`: cached results the session sweep deletes per entry, at most."""
        for name, value in (
            ("history_limit", history_limit),
            ("session_ttl_ms", session_ttl_ms),
            ("max_session_results", max_session_results),
            ("sweep_results", sweep_results),
        ):
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self._store = store
        self._history_limit = history_limit
        self._session_ttl_ms = session_ttl_ms
        self._max_session_results = max_session_results
        self._ownership = ownership
        self._sweep_results = sweep_results
        self._shard_id = shard_id  # its leases' ids name it (kv/leases.py)

    def apply_batch(self, entries: Sequence[tuple[Version, bytes]]) -> tuple[WriteSet, list[WriteResult]]:
        """Apply committed NORMAL entries in log order; returns the writes and one result each.

        Raises ValueError if an entry's version is not a Version of increasing index (a driver
        bug: the log would be applied out of order).
        """
        overlay = OverlayStore(self._store)
        sessions = SessionTable(overlay, self._session_ttl_ms, self._max_session_results, self._sweep_results)
        results: list[WriteResult] = []
        last_index = -1
        for version, data in entries:
            if not isinstance(version, Version) or type(version.index) is not int:
                raise ValueError(f"entry version must be a Version, got {version!r}")
            if version.index <= last_index:
                raise ValueError(f"entries out of order: index {version.index} after {last_index}")
            last_index = version.index
            results.append(self._apply_entry(overlay, sessions, version, data))
        sessions.flush()
        return overlay.writes, results

    def _apply_entry(
        self, overlay: OverlayStore, sessions: SessionTable, version: Version, data: bytes
    ) -> WriteResult:
        try:
            cmd = decode_command(data)
        except CommandDecodeError as exc:
            return WriteResult.failure("invalid", version, INVALID_REQUEST, f"undecodable command: {exc}")
        sessions.sweep(hlc_ms(cmd.hlc))
        op = cmd.op
        if isinstance(op, PartitionOp):
            return apply_partition_op(
                overlay,
                self._ownership,
                op=op,
                version=version,
                hlc=cmd.hlc,
                history_limit=self._history_limit,
            )
        name = op_name(cmd)
        # Before the session: a write refused here was not applied, and may be retried elsewhere.
        key = routing_key(op)
        refused = None if key is None else refusal(overlay, self._ownership, key, name, version)
        if refused is not None:
            return refused

        def apply() -> WriteResult:
            changes = KeyChanges(
                overlay,
                history_limit=self._history_limit,
                version=version,
                hlc=cmd.hlc,
                principal=cmd.principal,
                op=name,
                restored=op.to_version if isinstance(op, Rollback) else None,
            )
            if isinstance(op, Rollback):
                return _apply_rollback(changes, overlay, op, version, self._history_limit)
            if isinstance(op, LeaseGrant | LeaseRevoke | LeaseExpire):
                return _apply_lease_op(changes, op, version, self._shard_id, self._ownership)
            return _apply_op(changes, cmd, version)

        if cmd.session is None:
            return apply()
        return sessions.run(cmd.session, cmd.hlc, name, version, apply)


def routing_key(op: Operation) -> str | None:
    """The key whose partition decides where `op` belongs (a txn's keys share one namespace)."""
    if isinstance(op, Txn):
        keys = [c.key for c in op.compare] + [o.key for o in (*op.success, *op.failure)]
        return keys[0] if keys else None
    if isinstance(op, LeaseExpire):
        return None  # the daemon's: the lease is this shard's, whatever its keys' partitions now
    return op.key


def _apply_op(changes: KeyChanges, cmd: Command, version: Version) -> WriteResult:
    op = cmd.op
    assert not isinstance(op, PartitionOp)
    if isinstance(op, Put):
        refused = _lease_refusal(changes, op.lease, op.key, "put", version)
        if refused is not None:
            return refused
        prev = changes.put(op.key, op.value, op.lease)
        return WriteResult(ok=True, version=version, op="put", prev_version=prev)
    if isinstance(op, Delete):
        prev = changes.delete(op.key)
        if prev is None:
            return WriteResult.failure("delete", version, NOT_FOUND, f"key not found: {op.key!r}")
        return WriteResult(ok=True, version=version, op="delete", prev_version=prev)
    if isinstance(op, Cas):
        return _apply_cas(changes, op, version)
    assert isinstance(op, Txn)  # a rollback reads the past first: _apply_rollback
    return _apply_txn(changes, op, version)


def _apply_rollback(
    changes: KeyChanges, overlay: OverlayStore, op: Rollback, version: Version, history_limit: int
) -> WriteResult:
    """Write the key back to its value at `op.to_version` (kv/past.py), as a cas if it names the
    version the key must still be at; audited as a rollback restoring that version."""
    if op.to_version.index >= version.index:
        return WriteResult.failure(
            "rollback", version, INVALID_REQUEST, f"{op.to_version} is not before this write ({version})"
        )
    current = changes.read(op.key)
    current_version = ABSENT if current is None else current.mod_version
    if op.expected_version is not None and current_version != op.expected_version:
        return WriteResult.failure(
            "rollback",
            version,
            CAS_FAILED,
            f"{op.key!r} is at version {current_version}, not {op.expected_version}",
            current_version=current_version,
        )
    try:
        past = key_at(overlay, op.key, op.to_version, history_limit)
    except HistoryTrimmed as trimmed:
        return WriteResult.failure("rollback", version, COMPACTED, str(trimmed))
    if past.value is None:
        prev = changes.delete(op.key)
        if prev is None:
            return WriteResult.failure(
                "rollback", version, NOT_FOUND, f"{op.key!r} was absent at {op.to_version}, and is absent"
            )
    else:
        prev = changes.put(op.key, past.value)
    return WriteResult(ok=True, version=version, op="rollback", prev_version=prev)


def _apply_cas(changes: KeyChanges, op: Cas, version: Version) -> WriteResult:
    current = changes.read(op.key)
    current_version = ABSENT if current is None else current.mod_version
    if op.expected_version is not None:
        holds = current_version == op.expected_version
        wanted = f"version {op.expected_version}"
    else:
        holds = current is not None and current.value == op.expected_value
        wanted = "the expected value"
    if not holds:
        return WriteResult.failure(
            "cas",
            version,
            CAS_FAILED,
            f"{op.key!r} is at version {current_version}, not {wanted}",
            current_version=current_version,
        )
    refused = _lease_refusal(changes, op.lease, op.key, "cas", version)
    if refused is not None:
        return refused
    prev = changes.put(op.key, op.value, op.lease)
    return WriteResult(ok=True, version=version, op="cas", prev_version=prev)


def _no_lease(op: str, version: Version, lease: int) -> WriteResult:
    message = f"there is no lease {lease} here (it expired, was revoked, or is of another namespace)"
    return WriteResult.failure(op, version, NOT_FOUND, message)


def _lease_refusal(
    changes: KeyChanges, lease: int, key: str, op: str, version: Version
) -> WriteResult | None:
    """Why `key` may not be attached to `lease` (None: it may, or there is no lease to attach)."""
    if not lease:
        return None
    record = lease_record(changes.store, lease)
    if record is None:
        return _no_lease(op, version, lease)
    if namespace_of(key) != record[1]:
        message = f"lease {lease} holds keys of namespace {record[1]!r} only, not {key!r}"
        return WriteResult.failure(op, version, INVALID_REQUEST, message)
    return None


def _apply_lease_op(
    changes: KeyChanges,
    op: LeaseGrant | LeaseRevoke | LeaseExpire,
    version: Version,
    shard_id: int,
    ownership: Ownership | None,
) -> WriteResult:
    name = LEASE_OP_NAMES[type(op)]
    store = changes.store
    if isinstance(op, LeaseGrant):
        if not MIN_TTL_MS <= op.ttl_ms <= MAX_TTL_MS:
            message = f"ttl_ms must be in [{MIN_TTL_MS}, {MAX_TTL_MS}], got {op.ttl_ms}"
            return WriteResult.failure(name, version, INVALID_REQUEST, message)
        lease = lease_id(shard_id, version.index)
        store.put(LEASE, lease_key(lease), encode_lease(op.ttl_ms, namespace_of(op.key)))
        return WriteResult(ok=True, version=version, op=name, lease=lease)
    record = lease_record(store, op.lease)
    if record is None:
        return _no_lease(name, version, op.lease)
    if isinstance(op, LeaseExpire) and ownership is not None:
        # Not while its namespace moves: the copy on its way holds the lease and its keys. The
        # leader proposes the expiry again; the new shard's leader gives the lease a new TTL.
        refused = refusal(store, ownership, record[1], name, version)
        if refused is not None:
            return refused
    for key in attached_keys(store, op.lease):
        changes.delete(key)
    store.delete(LEASE, lease_key(op.lease))
    return WriteResult(ok=True, version=version, op=name)


def _apply_txn(changes: KeyChanges, op: Txn, version: Version) -> WriteResult:
    succeeded = all(_holds(changes, c) for c in op.compare)
    results = tuple(_apply_txn_op(changes, o, version) for o in (op.success if succeeded else op.failure))
    return WriteResult(ok=True, version=version, op="txn", succeeded=succeeded, results=results)


def _holds(changes: KeyChanges, c: Compare) -> bool:
    record = changes.read(c.key)
    if c.target == "version":
        return (ABSENT if record is None else record.mod_version) == c.version
    if c.target == "value":
        return record is not None and record.value == c.value
    return (record is not None) == c.exists


def _apply_txn_op(changes: KeyChanges, o: TxnOp, version: Version) -> TxnOpResult:
    if o.op == "put":
        assert o.value is not None  # the codec guarantees a put carries a value
        return TxnOpResult("put", o.key, version, changes.put(o.key, o.value))
    prev = changes.delete(o.key)
    return TxnOpResult("delete", o.key, None if prev is None else version, prev)
