"""One shard's replica on this node: its Raft node, its storage, its state machine, its waiting requests.

The node (confmand/server/node.py) owns the sockets, the clock and the loop;
a replica owns everything that belongs to one shard, so hosting more shards
means more replicas, not a new driver.

One loop turn of a replica, driven by the node:
1. `step`/`tick`, and `accept_write`/`accept_read` for requests of the turn;
2. `flush_requests`: the turn's writes become ONE proposal batch, its
   linearizable reads ONE ReadIndex round;
3. `stage`: the Ready's snapshot (and the state it carries), entries and hard
   state go into the node's one WriteBatch for the turn, written with one
   fsync; a leader's appends may leave before it (`take_early_messages`);
4. `take_messages`: once that batch is durable, the rest (votes,
   acknowledgements) may go;
5. `stage_apply`: the committed entries' state changes and the applied
   index go into a second batch (no fsync needed: the log replays);
6. `after_apply`: `advance` (the core's applied index moves), then waiting writes
   and reads are answered.
Replies collect in `self.replies`; the node sends them.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections import defaultdict
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass

from confmand.backup.shard_export import shard_backup
from confmand.kv.codec import encode_command
from confmand.kv.commands import Command
from confmand.kv.leases import all_leases, lease_ttl_ms
from confmand.kv.partitions import OP_NAMES, Ingest, Ownership, refusal
from confmand.kv.past import HistoryTrimmed, key_at, list_at
from confmand.kv.queries import audit_records, get_key, key_history, list_keys
from confmand.kv.results import WriteResult
from confmand.kv.snapshot import STATE_KINDS, decode_state
from confmand.kv.state_machine import ConfigStateMachine
from confmand.kv.store import ChangeEvent
from confmand.protocol.errors import ErrorCode
from confmand.protocol.ops import (
    AuditQuery,
    BackupQuery,
    GetQuery,
    HistoryQuery,
    LeaseKeepAlive,
    ListQuery,
)
from confmand.protocol.shardmap import partition_of
from confmand.protocol.types import Consistency, Version
from confmand.raft import (
    Entry,
    EntryKind,
    HardState,
    Message,
    NotLeader,
    ProposalRejected,
    ProposalStatus,
    RaftConfig,
    RaftNode,
    Ready,
    Role,
)
from confmand.server.errors import RequestError
from confmand.server.faults import NO_FAULTS, DriverFaults
from confmand.server.leases import LeaseClock
from confmand.server.pending import PendingRead, PendingWrite, Reply, ReplySink
from confmand.server.requests import ReadRequest
from confmand.server.snapshot_source import SnapshotSource
from confmand.server.watch_window import DEFAULT_MAX_EVENTS, EventWindow
from confmand.storage import DataDirError, ShardStorage, StorageError, WriteBatch

log = logging.getLogger(__name__)

MOVE_STEP_NAMES = frozenset(OP_NAMES.values())
EXPIRY_CHECK_S = 0.05  # how often deadlines are looked at (a tick of the default config)
CLOCK_HANDOFF_S = 1.0  # a leader whose clock is off tries a hand-off at most this often


@dataclass(frozen=True, slots=True)
class ReplicaSettings:
    history_limit: int = 10
    session_ttl_ms: int = 3_600_000
    snapshot_interval_entries: int = 10_000
    log_retain_entries: int = 1_000
    ownership: Ownership | None = None  # a data shard's partitions (None: the meta shard holds all)
    watch_window_events: int = DEFAULT_MAX_EVENTS  # changes kept in memory for watchers
    lease_extend_s: float = 1.0  # an election timeout: what a new leader adds to every lease (leases.py)


@dataclass(slots=True)
class _Staged:
    """What `stage` did for one Ready, kept until the batch is durable."""

    ready: Ready
    # (index, term, result) of each applied entry, in log order (result None: not a command)
    applied: list[tuple[int, int, WriteResult | None]] | None = None
    installed_snapshot: Version | None = None
    events: list[ChangeEvent] | None = None  # the key changes of the applied entries, for watchers
    sync: bool = False
    sync_for_vote: bool = False  # term or vote changed: nothing may be sent before the fsync


class Replica:
    def __init__(
        self,
        shard_id: int,
        raft_config: RaftConfig,
        storage: ShardStorage,
        settings: ReplicaSettings,
        *,
        rng: random.Random,
        faults: DriverFaults = NO_FAULTS,
        counters: MutableMapping[str, int] | None = None,
    ) -> None:
        self.shard_id = shard_id
        self.faults = faults
        self.storage = storage
        self.settings = settings
        applied_term, applied_index = storage.applied()
        self.counters: MutableMapping[str, int] = defaultdict(int) if counters is None else counters
        self.raft = RaftNode(
            _with_applied(raft_config, applied_index), SnapshotSource(storage, self.counters), rng
        )
        if self.applied != Version(applied_term, applied_index):
            raise DataDirError(
                f"shard {shard_id}: the state machine applied {applied_term}:{applied_index}, "
                f"but the log says {self.applied}: the data dir is inconsistent"
            )
        self.machine = ConfigStateMachine(
            storage,
            settings.history_limit,
            settings.session_ttl_ms,
            ownership=settings.ownership,
            shard_id=shard_id,
        )
        self.role = Role.FOLLOWER
        self.leader_id: int | None = None
        # Its partitions' move states may have changed since the mover last looked (mover.py).
        self.moves_changed = True
        self.last_leader_contact = 0.0  # monotonic seconds; 0: never
        self.peer_contact: dict[int, float] = {}
        self.replies: list[Reply] = []
        self._queued: list[tuple[bytes, ReplySink, int, float]] = []
        self._pending_writes: dict[int, PendingWrite] = {}
        self._read_round: list[PendingRead] = []
        self._read_batches: dict[bytes, list[PendingRead]] = {}
        self._read_seq = 0
        self._reads_at: list[tuple[int, PendingRead]] = []  # (read index, read): wait for applied
        self._version_waits: list[PendingRead] = []
        self.leases = LeaseClock()  # while leading: when each lease runs out (server/leases.py)
        # What changed lately, for watchers (watches.py); it starts at what is applied now.
        self.window = EventWindow(self.applied, settings.watch_window_events)
        stored = storage.snapshot_meta()
        self._snapshot_index = stored.index if stored is not None else 0
        self._staged: _Staged | None = None
        self._compact_to = 0
        self._durable_term_vote: tuple[int, int | None] | None = None
        self.now = 0.0  # monotonic seconds, set by the node at the start of every turn
        self._next_expiry_check = 0.0
        self._applied_early = 0  # the apply_before_commit fault's own cursor
        self._next_clock_handoff = 0.0
        # For /metrics (metrics.py): counted since this process opened the replica.
        self.proposals = 0  # writes proposed while leading
        self.leader_changes = 0  # times the leader it knows changed (to another node or to none)

    # ------------------------------------------------------------------ inputs

    def step(self, msg: Message) -> None:
        self.raft.step(msg)
        self.peer_contact[msg.src] = self.now
        if msg.src == self.raft.leader_id:
            self.last_leader_contact = self.now

    def tick(self) -> None:
        self.raft.tick()

    def has_pending(self) -> bool:
        """Whether requests wait here (to be proposed, committed, read or answered)."""
        return bool(
            self._queued
            or self._pending_writes
            or self._read_round
            or self._read_batches
            or self._reads_at
            or self._version_waits
            or self.replies
            or self._staged is not None
        )

    @property
    def applied(self) -> Version:
        """What the state machine has applied: the core's applied index (the one owner of it)."""
        raft = self.raft
        return Version(raft.applied_term, raft.applied_index)

    @property
    def is_leader(self) -> bool:
        return self.raft.role is Role.LEADER

    def accept_write(self, command: Command, sink: ReplySink, request_id: int, deadline: float) -> None:
        """Queue a write for this turn's proposal batch (the caller checked we are the leader)."""
        self._queued.append((encode_command(command), sink, request_id, deadline))

    def accept_read(self, read: PendingRead) -> None:
        mode = read.request.consistency
        if mode is Consistency.STALE:
            self._serve(read)
        elif mode is Consistency.VERSION:
            token = read.request.min_version
            assert token is not None
            if self.applied.index < token.index:
                self._version_waits.append(read)
                return
            mismatch = self.token_mismatch(token)
            if mismatch is None:
                self._serve(read)
            else:
                error = RequestError(ErrorCode.UNKNOWN_VERSION, mismatch)
                self.replies.append(
                    Reply(read.sink, read.request.common.request_id, self.shard_id, {}, error)
                )
        elif self.faults.read_without_read_index:
            self._serve(read)
        else:
            self._read_round.append(read)

    def token_mismatch(self, token: Version) -> str | None:
        """Why `token` (at or below the applied index) names no entry of this shard's log, or None.

        Committed entries are the same on every replica, so an entry this replica applied at
        `token.index` with another term means no write of this cluster ever had that version:
        the token comes from another cluster (or a wiped one), or was made up. Below the first
        entry still in the log the term is known only at the snapshot; terms never fall along
        the log, so a token whose term is above that snapshot's is refused too, and any other
        compacted token is served (it cannot be told apart from a true one, and it asks for
        nothing this replica has not long applied).
        """
        if token.index == 0:
            return None if token.term == 0 else f"no entry has version {token}: index 0 is 0:0 (absent)"
        raft_log = self.raft.log
        term = self.applied.term if token.index == self.applied.index else raft_log.term_at(token.index)
        if term is None:  # compacted into the snapshot
            floor = raft_log.snapshot_term
            if token.term <= floor:
                return None
            found = f"its entry {token.index} has a term of at most {floor}"
        elif term == token.term:
            return None
        else:
            found = f"its entry {token.index} has term {term}"
        return f"version {token} names no write of this shard: {found} (a token from another cluster?)"

    def flush_requests(self) -> None:
        """The turn's writes as one proposal batch, its linearizable reads as one ReadIndex round."""
        if self._queued:
            queued, self._queued = self._queued, []
            try:
                term, first, _ = self.raft.propose_batch([q[0] for q in queued])
            except (NotLeader, ProposalRejected) as exc:
                error = _not_leader(exc)
                for _, sink, rid, _ in queued:
                    self.replies.append(Reply(sink, rid, self.shard_id, {}, error))
            else:
                self.proposals += len(queued)
                for offset, (_, sink, rid, deadline) in enumerate(queued):
                    self._pending_writes[first + offset] = PendingWrite(sink, rid, term, deadline)
        if self._read_round:
            reads, self._read_round = self._read_round, []
            self._read_seq += 1
            context = self._read_seq.to_bytes(8, "big")
            try:
                self.raft.read_index(context)
            except NotLeader as not_leader:
                self._fail_reads(reads, _not_leader(not_leader))
            else:
                self._read_batches[context] = reads

    # ------------------------------------------------------------------ the Ready cycle

    def stage(self, batch: WriteBatch) -> bool:
        """Stage the next Ready into `batch`; returns whether it needs fsync. Call only if has_ready."""
        rd = self.raft.ready()
        staged = _Staged(rd)
        self._note_soft_state(rd)
        self.storage.stage_ready(rd, batch)
        hard = rd.hard_state
        staged.sync_for_vote = hard is not None and self._vote_changed(hard)
        staged.sync = bool(rd.entries or rd.snapshot or staged.sync_for_vote)
        if rd.snapshot is not None and rd.snapshot.meta.index > self.raft.applied_index:
            meta = rd.snapshot.meta
            records = decode_state(rd.snapshot.data)
            self.storage.stage_install_state(records, STATE_KINDS, meta.term, meta.index, batch)
            staged.installed_snapshot = Version(meta.term, meta.index)
            self.counters["snapshots_installed"] += 1
            self.moves_changed = True
        self._staged = staged
        return staged.sync

    def stage_apply(self, batch: WriteBatch) -> None:
        """Apply the staged Ready's committed entries into `batch` (the persist batch is written)."""
        staged = self._staged
        assert staged is not None
        floor = self.raft.applied_index
        if staged.installed_snapshot is not None:
            floor = staged.installed_snapshot.index
            self._snapshot_index = floor
        if self.faults.apply_before_commit:  # what it applied early is not applied again
            floor = max(floor, self._applied_early)
        committed = staged.ready.committed_entries
        entries = [e for e in committed if e.index > floor] if committed else []
        if self.faults.apply_before_commit:
            entries += [e for e in staged.ready.entries if e.index > max(floor, _last(entries))]
            self._applied_early = max(self._applied_early, _last(entries))
        if not entries:
            return
        normal = [(Version(e.term, e.index), e.data) for e in entries if e.kind is EntryKind.NORMAL]
        writes, results = self.machine.apply_batch(normal)
        by_index = dict(zip((v.index for v, _ in normal), results, strict=True))
        if any(r.op in MOVE_STEP_NAMES for r in results):
            self.moves_changed = True
        staged.applied = [(e.index, e.term, by_index.get(e.index)) for e in entries]
        staged.events = writes.events
        last = entries[-1]
        self.storage.stage_applied(writes, last.term, last.index, batch)

    def hand_off_leadership(self) -> int | None:
        """If leading, start a transfer to the most caught-up voter; returns it (None: nothing to do)."""
        if not self.is_leader:
            return None
        status = self.raft.status()
        voters = status.membership.voters if status.membership else frozenset()
        candidates = [
            (peer.match, node) for node, peer in status.peers.items() if node in voters - {status.node_id}
        ]
        if not candidates:
            return None
        _, target = max(candidates)
        try:
            self.raft.transfer_leadership(target)
        except ProposalRejected as exc:
            log.warning("shard %d: cannot hand leadership to node %d: %s", self.shard_id, target, exc)
            return None
        return target

    def hand_off_for_clock_fault(self) -> int | None:
        """Hand leadership away because this node's clock is off; at most once per CLOCK_HANDOFF_S."""
        if not self.is_leader or self.now < self._next_clock_handoff:
            return None
        self._next_clock_handoff = self.now + CLOCK_HANDOFF_S
        target = self.hand_off_leadership()
        if target is not None:
            log.warning(
                "shard %d: clock off from the peers': handing leadership to node %d", self.shard_id, target
            )
        return target

    @property
    def snapshot_index(self) -> int:
        """The index of the latest snapshot of the state machine stored for this shard."""
        return self._snapshot_index

    def take_early_messages(self) -> list[Message]:
        """A leader's messages that may leave before this Ready is durable (its term is already)."""
        staged = self._staged
        assert staged is not None
        rd = staged.ready
        if self.faults.send_before_persist:
            pass  # every message leaves before the fsync: votes and acknowledgements included
        elif rd.soft_state.role is not Role.LEADER or staged.sync_for_vote:
            return []
        messages, rd.messages = rd.messages, []
        return messages

    def take_messages(self) -> list[Message]:
        """The staged Ready is durable: its messages (votes, acknowledgements) may go."""
        staged = self._staged
        assert staged is not None
        messages, staged.ready.messages = staged.ready.messages, []
        return messages

    def after_apply(self) -> None:
        """Persisted and applied: advance the core, then answer what the Ready settled."""
        staged, self._staged = self._staged, None
        assert staged is not None
        rd = staged.ready
        # The core's applied index moves now, once the apply batch is written: until then reads
        # saw the old state, and a stall on that batch never let a version read pass on the new index.
        self.raft.advance(rd)
        if staged.installed_snapshot is not None:
            self.window.reset(staged.installed_snapshot)
            self._resolve_unknown_up_to(staged.installed_snapshot.index)
        if staged.applied:
            self.window.extend(staged.events or [], self.applied)
        for index, term, result in staged.applied or ():
            if result is not None and result.ok and self.is_leader:
                self._lease_news(result)
            self._resolve_write(index, term, result)
        for outcome in rd.outcomes:
            if outcome.status is not ProposalStatus.COMMITTED:
                self._resolve_range(outcome.first_index, outcome.last_index, outcome.status)
        for rs in rd.read_states:
            for read in self._read_batches.pop(rs.context, []):
                self._reads_at.append((rs.index, read))
        self._serve_caught_up()

    def maybe_snapshot(self, batch: WriteBatch) -> bool:
        """Snapshot the state machine and compact the log when enough entries were applied."""
        applied = self.raft.applied_index
        if applied - self._snapshot_index < self.settings.snapshot_interval_entries:
            return False
        try:
            meta = self.raft.snapshot_meta(applied)
        except ValueError as exc:
            log.warning("shard %d: cannot snapshot at %d: %s", self.shard_id, applied, exc)
            return False
        self.storage.stage_snapshot(meta, batch)
        compact_to = max(self._snapshot_index, applied - self.settings.log_retain_entries)
        if compact_to > self.storage.log_bounds()[0]:
            self.storage.stage_compact(compact_to, batch)
        self._snapshot_index = applied
        self._compact_to = compact_to
        return True

    def after_snapshot_written(self) -> None:
        if self._compact_to > 0:
            self.raft.compact(self._compact_to)

    def abandon(self, gone: RequestError) -> list[Reply]:
        """The replica is being deleted (it left its shard): the answers to everything waiting.
        A write already proposed may still commit elsewhere: its outcome is unknown."""
        unknown = RequestError(
            ErrorCode.TIMEOUT, "this node left the shard before the write's outcome was known"
        )
        replies = self.replies
        self.replies = []
        for waiter in self._pending_writes.values():
            replies.append(Reply(waiter.sink, waiter.request_id, self.shard_id, {}, unknown))
        for _, sink, rid, _ in self._queued:
            replies.append(Reply(sink, rid, self.shard_id, {}, gone))
        reads = [r for batch in self._read_batches.values() for r in batch] + self._read_round
        reads += [r for _, r in self._reads_at] + self._version_waits
        for read in reads:
            replies.append(Reply(read.sink, read.request.common.request_id, self.shard_id, {}, gone))
        self._pending_writes.clear()
        self._queued.clear()
        self._read_batches.clear()
        self._read_round.clear()
        self._reads_at.clear()
        self._version_waits.clear()
        return replies

    # ------------------------------------------------------------------ answering

    def expire(self) -> None:
        """Answer what missed its deadline (looked at every EXPIRY_CHECK_S: deadlines need not be exact)."""
        now = self.now
        if now < self._next_expiry_check:
            return
        self._next_expiry_check = now + EXPIRY_CHECK_S
        timeout = RequestError(ErrorCode.TIMEOUT, "the write did not commit in time: its outcome is unknown")
        for index in [i for i, w in self._pending_writes.items() if w.deadline <= now]:
            w = self._pending_writes.pop(index)
            self.replies.append(Reply(w.sink, w.request_id, self.shard_id, {}, timeout))
        read_timeout = RequestError(ErrorCode.TIMEOUT, "the read did not complete in time")
        for context, reads in list(self._read_batches.items()):
            if all(r.deadline <= now for r in reads):
                del self._read_batches[context]
                self._fail_reads(reads, read_timeout)
        late = [r for r in self._version_waits if r.deadline <= now]
        if late:
            self._version_waits = [r for r in self._version_waits if r.deadline > now]
            for r in late:
                assert r.request.min_version is not None
                self.replies.append(
                    Reply(
                        r.sink,
                        r.request.common.request_id,
                        self.shard_id,
                        {},
                        RequestError(
                            ErrorCode.NOT_CAUGHT_UP,
                            f"this replica has applied {self.applied}, not yet {r.request.min_version}",
                        ),
                    )
                )
        waiting = [(i, r) for i, r in self._reads_at if r.deadline <= now]
        if waiting:
            self._reads_at = [(i, r) for i, r in self._reads_at if r.deadline > now]
            self._fail_reads([r for _, r in waiting], read_timeout)

    def _resolve_write(self, index: int, term: int, result: WriteResult | None) -> None:
        waiter = self._pending_writes.pop(index, None)
        if waiter is None:
            return
        if waiter.term != term or result is None:
            self._answer_dropped(waiter)
            return
        if result.ok:
            self.replies.append(Reply(waiter.sink, waiter.request_id, self.shard_id, result.to_reply()))
        else:
            reply = result.to_reply()
            error = RequestError(ErrorCode(result.error_code or "INTERNAL"), result.error_message, **reply)
            self.replies.append(Reply(waiter.sink, waiter.request_id, self.shard_id, {}, error))

    def _answer_dropped(self, waiter: PendingWrite) -> None:
        error = RequestError(
            ErrorCode.NOT_LEADER,
            "the write was not committed: leadership changed before it was (it will never apply; retry)",
        )
        self.replies.append(Reply(waiter.sink, waiter.request_id, self.shard_id, {}, error))

    def _resolve_range(self, first: int, last: int, status: ProposalStatus) -> None:
        for index in range(first, last + 1):
            waiter = self._pending_writes.pop(index, None)
            if waiter is None:
                continue
            if status is ProposalStatus.DROPPED:
                self._answer_dropped(waiter)
            else:
                self._answer_unknown(waiter)

    def _resolve_unknown_up_to(self, index: int) -> None:
        for i in [i for i in self._pending_writes if i <= index]:
            self._answer_unknown(self._pending_writes.pop(i))

    def _answer_unknown(self, waiter: PendingWrite) -> None:
        error = RequestError(ErrorCode.TIMEOUT, "a snapshot replaced the log: the write's outcome is unknown")
        self.replies.append(Reply(waiter.sink, waiter.request_id, self.shard_id, {}, error))

    def _serve_caught_up(self) -> None:
        applied = self.raft.applied_index
        if self._reads_at:
            ready = [r for i, r in self._reads_at if i <= applied]
            self._reads_at = [(i, r) for i, r in self._reads_at if i > applied]
            for read in ready:
                self._serve(read)
        if self._version_waits:
            waits, self._version_waits = self._version_waits, []
            for read in waits:
                self.accept_read(read)

    def _serve(self, read: PendingRead) -> None:
        request = read.request
        rid = request.common.request_id
        try:
            fields = self._query(request)
        except RequestError as exc:
            self.replies.append(Reply(read.sink, rid, self.shard_id, {"applied": str(self.applied)}, exc))
            return
        except StorageError as storage_error:  # e.g. LevelDB could not be reopened on a full disk
            error = RequestError(ErrorCode.STORAGE, f"cannot read the data dir: {storage_error}")
            self.replies.append(Reply(read.sink, rid, self.shard_id, {}, error))
            return
        fields["applied"] = str(self.applied)
        if request.consistency is Consistency.STALE:
            fields["staleness_ms"] = self.staleness_ms()
        self.replies.append(Reply(read.sink, rid, self.shard_id, fields))

    def refuse_unowned(self, keys: Iterable[str]) -> None:
        """A read must not see a partition this shard does not own now (kv/partitions.py)."""
        ownership = self.settings.ownership
        if ownership is None:
            return
        looked: set[int] = set()
        for key in keys:
            partition = partition_of(key, ownership.partitions)
            if partition in looked:
                continue
            looked.add(partition)
            refused = refusal(self.storage, ownership, key, "read", self.applied)
            if refused is not None:
                code = ErrorCode(refused.error_code or "INTERNAL")
                raise RequestError(code, refused.error_message, **refused.to_reply())

    def _query(self, request: ReadRequest) -> dict[str, object]:
        query = request.query
        key = request.routing_key
        if key is not None:
            self.refuse_unowned([key])
        if isinstance(query, GetQuery | ListQuery) and query.at_version is not None:
            return self._past(query, query.at_version, spanning=key is None)
        if isinstance(query, GetQuery):
            record = get_key(self.storage, query.key)
            if record is None:
                raise RequestError(ErrorCode.NOT_FOUND, f"no key {query.key!r}")
            return record.to_reply()
        if isinstance(query, HistoryQuery):
            history = key_history(self.storage, query.key, query.limit)
            if not history:
                raise RequestError(ErrorCode.NOT_FOUND, f"no history for key {query.key!r}")
            return {"versions": [h.to_wire() for h in history]}
        # A scan across namespaces may meet a partition on its way out (never one gone: its
        # records went with it), which it must not show: the partition's new shard may change it.
        if isinstance(query, ListQuery):
            page = list_keys(self.storage, query.prefix, query.after, query.limit, query.keys_only)
            if key is None:
                self.refuse_unowned(r.key for r in page.items)
            return page.to_reply()
        if isinstance(query, BackupQuery):
            return shard_backup(self.storage, self.settings.ownership)
        if isinstance(query, LeaseKeepAlive):
            return self._keep_alive(query.lease)
        assert isinstance(query, AuditQuery)
        audit = audit_records(self.storage, query.after_hlc, query.limit, query.prefix)
        if key is None:
            self.refuse_unowned(r.key for r in audit.records)
        return audit.to_reply()

    def _past(self, query: GetQuery | ListQuery, at: Version, spanning: bool) -> dict[str, object]:
        """A key or a prefix as it was at `at`, from the history kept (kv/past.py)."""
        if at.index > self.applied.index:
            raise RequestError(
                ErrorCode.INVALID_REQUEST, f"version {at} is not applied here yet (at {self.applied})"
            )
        mismatch = self.token_mismatch(at)
        if mismatch is not None:
            raise RequestError(ErrorCode.UNKNOWN_VERSION, mismatch)
        limit = self.settings.history_limit
        try:
            if isinstance(query, GetQuery):
                past = key_at(self.storage, query.key, at, limit)
                if past.value is None:
                    raise RequestError(ErrorCode.NOT_FOUND, f"no key {query.key!r} at version {at}")
                return {"value": past.value, "version": str(past.version), "at_version": str(at)}
            page = list_at(
                self.storage, query.prefix, after=query.after, limit=query.limit, at=at, history_limit=limit
            )
        except HistoryTrimmed as trimmed:
            raise RequestError(ErrorCode.COMPACTED, str(trimmed), oldest=str(trimmed.oldest)) from None
        if spanning:  # as a listing now: never a partition on its way out (see _query)
            self.refuse_unowned(item.key for item in page.items)
        return page.to_reply() | {"at_version": str(at)}

    def _lease_news(self, result: WriteResult) -> None:
        """As leader, a lease granted here, or leases that came with a moved namespace, start."""
        if result.op == "lease_grant":
            ttl_ms = lease_ttl_ms(self.storage, result.lease)
            if ttl_ms is not None:
                self.leases.start(result.lease, ttl_ms, self.now)
        elif result.op == OP_NAMES[Ingest]:
            self.leases.adopt(all_leases(self.storage), self.now, self.settings.lease_extend_s)

    def _keep_alive(self, lease: int) -> dict[str, object]:
        """Restart the lease's clock: served after a ReadIndex round confirmed this node leads."""
        ttl_ms = lease_ttl_ms(self.storage, lease)
        if ttl_ms is None:
            raise RequestError(
                ErrorCode.NOT_FOUND, f"no lease {lease} in shard {self.shard_id} (expired or revoked)"
            )
        if not self.is_leader:  # deposed since the round: its clock counts for nothing
            raise _not_leader(NotLeader(self.raft.leader_id))
        self.leases.start(lease, ttl_ms, self.now)
        return {"lease": lease, "ttl_ms": ttl_ms}

    def due_lease_expiries(self) -> list[int]:
        """As leader: the leases whose time is up (those revoked meanwhile are forgotten)."""
        due = []
        for lease in self.leases.due(self.now):
            if lease_ttl_ms(self.storage, lease) is None:
                self.leases.forget(lease)
            else:
                due.append(lease)
        return due

    def _fail_reads(self, reads: list[PendingRead], error: RequestError) -> None:
        for read in reads:
            self.replies.append(Reply(read.sink, read.request.common.request_id, self.shard_id, {}, error))

    def _note_soft_state(self, rd: Ready) -> None:
        soft = rd.soft_state
        was_leader = self.role is Role.LEADER
        if soft.leader_id != self.leader_id:
            self.leader_changes += 1
        self.role, self.leader_id = soft.role, soft.leader_id
        if soft.role is Role.LEADER and not was_leader:
            self.moves_changed = True  # a new leader finishes the moves its predecessor left
            # Leases granted but not yet applied here start when they apply (after_apply).
            self.leases.promote(all_leases(self.storage), self.now, self.settings.lease_extend_s)
        if was_leader and soft.role is not Role.LEADER:
            self.leases.demote()
            # ReadIndex rounds of a deposed leader never complete: answer them now.
            error = _not_leader(NotLeader(soft.leader_id))
            reads = [r for batch in self._read_batches.values() for r in batch]
            reads += [r for _, r in self._reads_at] + self._read_round
            self._read_batches.clear()
            self._reads_at.clear()
            self._read_round.clear()
            self._fail_reads(reads, error)

    def _vote_changed(self, hard: HardState) -> bool:
        """Term and vote must be synced before any message; a commit index alone need not be."""
        before, self._durable_term_vote = self._durable_term_vote, (hard.term, hard.vote)
        return before != self._durable_term_vote

    def staleness_ms(self) -> int:
        """How long since this replica last heard from its leader (0 on the leader, -1: never)."""
        if self.is_leader:
            return 0
        if self.last_leader_contact == 0.0:
            return -1
        return max(0, int((self.now - self.last_leader_contact) * 1000))


def _last(entries: list[Entry]) -> int:
    return entries[-1].index if entries else 0


def _with_applied(config: RaftConfig, applied: int) -> RaftConfig:
    """The core must not hand out again what the state machine already applied before a restart."""
    return dataclasses.replace(config, applied=applied)


def _not_leader(exc: ProposalRejected) -> RequestError:
    if isinstance(exc, NotLeader):
        if exc.leader_hint is None:
            return RequestError(ErrorCode.NO_QUORUM, "no leader is known for this shard right now")
        return RequestError(ErrorCode.NOT_LEADER, f"node {exc.leader_hint} leads this shard")
    return RequestError(ErrorCode.NOT_LEADER, exc.reason)
