"""One shard's view of the node's LevelDB: the Raft core's `Storage`, the state machine's
`KVStore`, and the staging methods that add the shard's changes to a node-wide batch.

Caches: each shard keeps two `ShardState`s. `durable_state` is what written
batches put on disk; `initial_state`, `snapshot`, `applied` and `log_bounds`
answer from it. `_tip` adds what is staged in batches not yet written; the
staging methods check and compute from it, so the next turn's batch can be
staged while the previous one is still being written. A failed write leaves
both as they are: the caller retries the same batch (node_storage.py).

Every staging method is all-or-nothing: it validates first, then adds its
operations to the batch, so a refused call leaves the batch unchanged.

Reads (`get`, `scan`, `applied_snapshot_meta`, `initial_state`) see written
batches only; the driver keeps its own overlay of what it staged
(confmand/kv/overlay.py).

Snapshots are meta only. The state machine's records in this DB are its
state at the applied index, so a snapshot keeps no copy of them: a local
snapshot writes its meta (index, term, membership) so that the log before it
can be compacted, and costs no more than that whatever the state's size. A
follower that needs a snapshot gets the state as written when it is asked
for, with `applied_snapshot_meta()`: a snapshot at the applied index, at or
after the stored one, which the log after it continues.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from confmand.kv.store import Kind, WriteSet
from confmand.raft.ready import Ready
from confmand.raft.storage import PersistedState
from confmand.raft.types import Entry, EntryKind, HardState, Membership, SnapshotMeta
from confmand.storage.batch import Op, WriteBatch
from confmand.storage.errors import DataDirError, StorageUsageError
from confmand.storage.keys import (
    APPLIED,
    HARD_STATE,
    SNAPSHOT_DATA,
    SNAPSHOT_META,
    check_kv_kind,
    describe_key,
    log_index_of,
    log_key,
    prefix_end,
    shard_prefix,
)
from confmand.storage.records import (
    RecordError,
    decode_entry,
    encode_applied,
    encode_entry,
    encode_hard_state,
    encode_snapshot_meta,
)
from confmand.storage.state import ShardState

BOOTSTRAP_TERM = 1  # the term of the first membership entry; the first election is for term 2

if TYPE_CHECKING:
    from confmand.storage.node_storage import NodeStorage


class ShardStorage:
    def __init__(self, node: NodeStorage, shard_id: int, state: ShardState) -> None:
        """Use `NodeStorage.shard(shard_id)`."""
        self.shard_id = shard_id
        self._node = node
        self.durable_state = state
        self._tip = state
        self._hard_state_key = shard_prefix(HARD_STATE, shard_id)
        self._applied_key = shard_prefix(APPLIED, shard_id)
        self._legacy_data_key = shard_prefix(SNAPSHOT_DATA, shard_id)
        self._kv_prefixes: dict[Kind, bytes] = {}  # a checked state-machine kind -> its key prefix

    # ------------------------------------------------------------------ Storage (the Raft core's)

    def initial_state(self) -> PersistedState:
        """Hard state, snapshot meta and the log entries after the snapshot, as written."""
        state = self.durable_state
        first = max(state.log_first, state.snapshot_index + 1)
        entries: list[Entry] = []
        if first <= state.log_last:
            stop = log_key(self.shard_id, state.log_last + 1)
            for key, value in self._node.iterate(log_key(self.shard_id, first), stop):
                entries.append(self._decode_entry(key, value, first + len(entries)))
        return PersistedState(state.hard_state or HardState(), state.snapshot, entries)

    def snapshot_meta(self) -> SnapshotMeta | None:
        """The meta of the latest snapshot written (local or installed)."""
        return self.durable_state.snapshot

    def applied_snapshot_meta(self) -> SnapshotMeta | None:
        """The meta of a snapshot of the written state at the applied index; None before any
        snapshot (then the log starts at entry 1 and no follower needs one).

        The membership is the one in force once the log through the applied index is appended
        (as `MembershipTracker.at`): the latest set by a log entry after the stored snapshot,
        else the stored snapshot's.
        """
        state = self.durable_state
        stored = state.snapshot
        if stored is None:
            return None
        term, index = state.applied
        if index < stored.index:
            raise StorageUsageError(
                f"shard {self.shard_id}: applied {index} is below the stored snapshot at {stored.index}"
            )
        if index == stored.index:
            return stored
        membership = stored.membership
        first = max(stored.index + 1, state.log_first)
        stop = log_key(self.shard_id, index + 1)
        for key, value in self._node.iterate(log_key(self.shard_id, first), stop, reverse=True):
            entry = self._decode_entry(key, value, log_index_of(key))
            if entry.kind is EntryKind.MEMBERSHIP:
                membership = Membership.decode(entry.data)
                break
        return SnapshotMeta(index, term, membership)

    def applied(self) -> tuple[int, int]:
        """(term, index) of the last entry whose changes are written."""
        return self.durable_state.applied

    def log_bounds(self) -> tuple[int, int]:
        """(first, last) index of the written log; first > last when it is empty."""
        return self.durable_state.log_first, self.durable_state.log_last

    def is_bootstrapped(self) -> bool:
        """Whether the shard has any Raft state, written or staged (then it must not be bootstrapped)."""
        return self._tip.has_raft_state

    # ------------------------------------------------------------------ KVStore (the state machine's)

    def get(self, kind: Kind, key: bytes) -> bytes | None:
        check_kv_kind(kind)
        return self._node.get(shard_prefix(kind, self.shard_id) + key)

    def scan(
        self, kind: Kind, start: bytes = b"", stop: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Records of `kind` with `start <= key < stop` (stop None: to the end), in key order."""
        check_kv_kind(kind)  # here, not in the generator, so a bad kind fails at the call
        prefix = shard_prefix(kind, self.shard_id)
        if stop is not None and stop <= start:
            return iter(())
        hi = prefix + stop if stop is not None else prefix_end(prefix)
        return ((k[len(prefix) :], v) for k, v in self._node.iterate(prefix + start, hi, reverse))

    # ------------------------------------------------------------------ staging

    def stage_bootstrap(self, membership: Membership, batch: WriteBatch) -> None:
        """A new shard: log entry 1 (term 1) sets `membership` and is committed; applied 0:0.

        The first membership is a log entry, not only a snapshot's field, so that a replica
        that joins later with an empty disk learns it from the log like any other change.
        Every first member writes the same entry, so their logs agree from the start.
        """
        batch.check_open_for_staging()
        if self._tip.has_raft_state:
            raise StorageUsageError(
                f"shard {self.shard_id} already has Raft state; it cannot be bootstrapped"
            )
        first = Entry(BOOTSTRAP_TERM, 1, EntryKind.MEMBERSHIP, membership.encode())
        ops: list[Op] = [self._applied_op(0, 0)]
        tip = self._entry_ops(replace(self._tip, applied=(0, 0)), [first], ops)
        hard_state = HardState(BOOTSTRAP_TERM, None, 1)
        key = shard_prefix(HARD_STATE, self.shard_id)
        ops.append((key, encode_hard_state(key, hard_state)))
        self._commit(replace(tip, hard_state=hard_state), ops, batch)

    def stage_restored(self, meta: SnapshotMeta, hard_state: HardState, batch: WriteBatch) -> None:
        """A new replica seeded from a backup (confmand/backup/restore.py): the snapshot's meta and
        the term, as a follower holds them after installing a leader's snapshot; the state
        machine's records follow in the same batch (`stage_install_state`)."""
        batch.check_open_for_staging()
        if self._tip.has_raft_state:
            raise StorageUsageError(f"shard {self.shard_id} already has Raft state; it cannot be restored")
        tip, ops = self._snapshot_ops(self._tip, meta)
        key = self._hard_state_key
        ops.append((key, encode_hard_state(key, hard_state)))
        self._commit(tip.with_empty_log().with_hard_state(hard_state), ops, batch)

    def stage_hard_state(self, hard_state: HardState, batch: WriteBatch) -> None:
        """A replica started again after its node deleted it: the term and vote it had (tombstones.py)."""
        batch.check_open_for_staging()
        key = self._hard_state_key
        self._commit(
            self._tip.with_hard_state(hard_state), [(key, encode_hard_state(key, hard_state))], batch
        )

    def stage_ready(self, ready: Ready, batch: WriteBatch) -> None:
        """Ready step 1: snapshot (drops the log), then entries (truncating), then hard state."""
        batch.check_open_for_staging()
        tip, ops = self._tip, []
        if ready.snapshot is not None:
            ops.extend(self._log_delete_ops(tip.log_first, tip.log_last))
            tip, snapshot_ops = self._snapshot_ops(tip, ready.snapshot.meta)
            ops.extend(snapshot_ops)
            tip = tip.with_empty_log()
        if ready.entries:
            tip = self._entry_ops(tip, ready.entries, ops)
        if ready.hard_state is not None:
            key = self._hard_state_key
            ops.append((key, encode_hard_state(key, ready.hard_state)))
            tip = tip.with_hard_state(ready.hard_state)
        self._commit(tip, ops, batch)

    def stage_applied(
        self, writes: WriteSet, applied_term: int, applied_index: int, batch: WriteBatch
    ) -> None:
        """The state machine's changes and the applied index they bring it to, in one batch."""
        batch.check_open_for_staging()
        if applied_index < self._tip.applied[1]:
            raise StorageUsageError(
                f"shard {self.shard_id}: applied index would go back "
                f"from {self._tip.applied[1]} to {applied_index}"
            )
        prefixes = self._kv_prefixes
        ops: list[Op] = []
        for (kind, key), value in writes.changes.items():
            prefix = prefixes.get(kind)
            if prefix is None:
                check_kv_kind(kind)
                prefix = prefixes[kind] = shard_prefix(kind, self.shard_id)
            ops.append((prefix + key, value))
        ops.append(self._applied_op(applied_term, applied_index))
        self._commit(self._tip.with_applied((applied_term, applied_index)), ops, batch)

    def stage_install_state(
        self,
        records: Iterable[tuple[bytes, bytes, bytes]],
        state_kinds: Iterable[bytes],
        applied_term: int,
        applied_index: int,
        batch: WriteBatch,
    ) -> None:
        """Replace the state machine's records (every key of `state_kinds`) and set applied."""
        batch.check_open_for_staging()
        ops: list[Op] = []
        for kind in state_kinds:
            check_kv_kind(kind)
            prefix = shard_prefix(kind, self.shard_id)
            on_disk = self._node.keys(prefix, prefix_end(prefix))
            ops.extend((key, None) for key in sorted({*on_disk, *self._node.pending_keys(prefix)}))
        for kind, key, value in records:
            check_kv_kind(kind)
            ops.append((shard_prefix(kind, self.shard_id) + key, value))
        ops.append(self._applied_op(applied_term, applied_index))
        self._commit(replace(self._tip, applied=(applied_term, applied_index)), ops, batch)

    def stage_snapshot(self, meta: SnapshotMeta, batch: WriteBatch) -> None:
        """Keep a snapshot the state machine made locally: its meta (the state is the records
        already written at the applied index); the log is compacted separately."""
        batch.check_open_for_staging()
        if meta.index < self._tip.snapshot_index:
            raise StorageUsageError(
                f"shard {self.shard_id}: snapshot {meta.index} is older than "
                f"the stored {self._tip.snapshot_index}"
            )
        if meta.index > self._tip.applied[1]:
            raise StorageUsageError(
                f"shard {self.shard_id}: a snapshot at {meta.index} is ahead of the state, "
                f"applied to {self._tip.applied[1]}"
            )
        tip, ops = self._snapshot_ops(self._tip, meta)
        self._commit(tip.with_empty_log() if tip.log_empty else tip, ops, batch)

    def stage_compact(self, index: int, batch: WriteBatch) -> None:
        """Delete the log entries up to `index`; the stored (or staged) snapshot must cover them."""
        batch.check_open_for_staging()
        tip = self._tip
        if index > tip.snapshot_index:
            raise StorageUsageError(
                f"shard {self.shard_id}: cannot compact to {index}, "
                f"the snapshot covers only {tip.snapshot_index}"
            )
        if tip.log_empty or index < tip.log_first:
            return
        upto = min(index, tip.log_last)
        ops = self._log_delete_ops(tip.log_first, upto)
        tip = replace(tip, log_first=upto + 1)
        self._commit(tip.with_empty_log() if tip.log_empty else tip, ops, batch)

    # ------------------------------------------------------------------ helpers

    def _commit(self, tip: ShardState, ops: list[Op], batch: WriteBatch) -> None:
        batch.extend(ops)
        self._tip = tip
        batch.after[self.shard_id] = tip

    def _entry_ops(self, tip: ShardState, entries: list[Entry], ops: list[Op]) -> ShardState:
        """Checks `entries` against the tip, adds the truncation and the puts to `ops`; the new tip."""
        first = entries[0].index
        for offset, entry in enumerate(entries):
            if entry.index != first + offset:
                raise StorageUsageError(f"shard {self.shard_id}: entries are not contiguous at {entry.index}")
            if not isinstance(entry.data, bytes) or not isinstance(entry.kind, EntryKind):
                raise StorageUsageError(f"shard {self.shard_id}: entry {entry.index} is malformed: {entry!r}")
        if first <= tip.snapshot_index:
            raise StorageUsageError(
                f"shard {self.shard_id}: entry {first} lies inside the snapshot at {tip.snapshot_index}"
            )
        if first > tip.last_index + 1:
            raise StorageUsageError(
                f"shard {self.shard_id}: gap in the log: last {tip.last_index}, appending from {first}"
            )
        ops.extend(self._log_delete_ops(max(first, tip.log_first), tip.log_last))
        for entry in entries:
            key = log_key(self.shard_id, entry.index)
            ops.append((key, encode_entry(key, entry)))
        log_first = first if tip.log_empty else tip.log_first
        return tip.with_log(log_first, entries[-1].index)

    def _log_delete_ops(self, first: int, last: int) -> list[Op]:
        return [(log_key(self.shard_id, i), None) for i in range(first, last + 1)]

    def _snapshot_ops(self, tip: ShardState, meta: SnapshotMeta) -> tuple[ShardState, list[Op]]:
        meta_key = shard_prefix(SNAPSHOT_META, self.shard_id)
        # A format 1 or 2 dir kept a copy of the state with its snapshot meta: it goes now.
        ops: list[Op] = [(meta_key, encode_snapshot_meta(meta_key, meta)), (self._legacy_data_key, None)]
        return replace(tip, snapshot=meta), ops

    def _applied_op(self, term: int, index: int) -> Op:
        key = self._applied_key
        return key, encode_applied(key, term, index)

    def _decode_entry(self, key: bytes, value: bytes, expected_index: int) -> Entry:
        try:
            entry = decode_entry(key, value)
        except RecordError as exc:
            raise DataDirError(f"data dir {self._node.path}: {describe_key(key)} is corrupt: {exc}") from exc
        if entry.index != expected_index:
            raise DataDirError(
                f"data dir {self._node.path}: shard {self.shard_id} log misses entry {expected_index}"
            )
        return entry
