"""The node: one confmand process's loop, owning its sockets, clock, storage and replicas.

One loop turn (docs/architecture.md §6, docs/daemon.md):
1. drain the peer and client sockets (without blocking) and step/accept all of it;
2. tick every replica whose tick is due;
3. per replica: the turn's writes become one proposal batch, its
   linearizable reads one ReadIndex round;
4. every replica with a Ready stages it into ONE WriteBatch; the node writes
   it with ONE fsync (group commit across shards);
5. only then: Raft messages go out, one ZeroMQ message per peer carrying
   every shard's messages and forwarded requests; replies go to clients.

A follower forwards writes and linearizable reads to its leader over the
peer link, once (a forwarded request is never forwarded again), and relays
the leader's reply untouched.

If a write to disk fails (full disk), the node stalls its Raft replicas: it
keeps the unwritten batch and retries it, stops stepping and ticking Raft,
answers writes with STORAGE, and goes on serving stale and version reads and
forwarding to another leader.

A replica told it left its shard (docs/raft.md, *Leaving a shard*) is deleted:
its requests are answered, it is dropped from the loop, and its records go
from the DB a bounded number per turn (storage/tombstones.py).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import random
from collections import defaultdict
from dataclasses import dataclass, field

import msgpack

from confmand.config import NodeConfig
from confmand.hlc import HlcError, HybridClock
from confmand.kv.commands import Command, LeaseExpire
from confmand.kv.partitions import (
    Drop,
    Freeze,
    Ingest,
    MapAddShard,
    MapMove,
    MapReplicas,
    Ownership,
    export_partition,
)
from confmand.kv.records import AUDIT, audit_key_hlc
from confmand.kv.snapshot import STATE_KINDS
from confmand.protocol.errors import ErrorCode
from confmand.protocol.ops import BackupQuery
from confmand.protocol.replies import ReplyEnvelope, decode_reply
from confmand.protocol.requests import INTERNAL_MOVE_OPS
from confmand.protocol.shardmap import META_SHARD, ShardMap
from confmand.protocol.types import Consistency, LeaderHint, WireError
from confmand.raft import HardState, Membership, MembershipChange, Message, ProposalRejected, RaftConfig
from confmand.raft.messages import AppendEntries, Heartbeat, InstallSnapshot
from confmand.server.clock_health import clock_fault
from confmand.server.errors import RequestError
from confmand.server.faults import NO_FAULTS, DriverFaults
from confmand.server.histograms import NodeHistograms
from confmand.server.links import ClientLink, Clock, PeerLink
from confmand.server.meta import PRINCIPAL, seed_command, stored_map
from confmand.server.mover import PartitionMover, Send
from confmand.server.peer_changes import PeerChanges, may_forget_dir, plan_peer_changes, removal_blockers
from confmand.server.pending import (
    ClientSink,
    DaemonSink,
    ForwardSink,
    MapSink,
    MoverSink,
    PendingRead,
    Reply,
    ReplySink,
)
from confmand.server.placement import Transfer, next_step, preferred_transfer
from confmand.server.replica import EXPIRY_CHECK_S, Replica, ReplicaSettings
from confmand.server.requests import (
    AdminRequest,
    BadRequest,
    CancelWatchRequest,
    MoveRequest,
    ReadRequest,
    Request,
    WatchRequest,
    WriteRequest,
    move_step_frame,
    parse_request,
)
from confmand.server.status import node_status
from confmand.server.watches import WatchHub
from confmand.storage import DataDirError, NodeStorage, StorageError, WriteBatch
from confmand.transport.codec import (
    ForwardReply,
    ForwardRequest,
    PeerBatch,
    PeerDecodeError,
    decode_peer_batch,
    encode_peer_batch,
)
from confmand.transport.peer import UnknownPeerError

log = logging.getLogger(__name__)

MAX_RECEIVE_PER_TURN = 2048
MAX_TICKS_PER_TURN = 5  # after a long stall, do not fire a burst of elections at once
STALL_RETRY_S = 0.5
FORWARD_GRACE_S = 0.5  # the leader answers TIMEOUT itself; wait a little longer for that answer
PLACEMENT_CHECK_S = 0.25  # how often a leader compares its shards' memberships with the map
# A shard's leadership goes back to its preferred leader at most this often, the wait doubling
# after each time up to the last (a node that cannot keep leadership is not handed it in a loop).
PREFERRED_TRANSFER_WAIT_S = (2.0, 60.0)
PREFER_WINDOW_S = 60.0  # for this long after a newer map, a shard's leadership goes to its preferred leader
PEER_REQUEST_BYTES = 256 << 20  # a forwarded move step carries a whole partition (the peer frame cap)
DELETE_KEYS_PER_TURN = 4096  # a left replica's records deleted per turn (one synced batch)
# How often a replica that the map no longer places here asks whether it is still a member: it
# may be quiet, and its leader no longer talks to it once it is removed.
UNPLACED_CHECK_S = 2.0


@dataclass(slots=True)
class _PeerOutbox:
    raft: list[tuple[int, Message]] = field(default_factory=list)
    forwards: list[ForwardRequest] = field(default_factory=list)
    forward_replies: list[ForwardReply] = field(default_factory=list)


@dataclass(slots=True)
class _Forwarded:
    sink: ClientSink | MoverSink | MapSink  # a client's request, or one this node makes itself
    request_id: int
    shard_id: int
    deadline: float


@dataclass(frozen=True, slots=True)
class _Incoming:
    """A request as it arrived, with where its answer goes and when it is due."""

    payload: bytes
    sink: ReplySink
    forwarded: bool  # came from a follower: never forwarded again
    request_id: int
    deadline: float

    def __init__(
        self,
        payload: bytes,
        sink: ReplySink,
        forwarded: bool,
        request_id: int,
        deadline: float,
    ) -> None:
        object.__setattr__(self, "payload", payload)
        object.__setattr__(self, "sink", sink)
        object.__setattr__(self, "forwarded", forwarded)
        object.__setattr__(self, "request_id", request_id)
        object.__setattr__(self, "deadline", deadline)


class _Phase(enum.Enum):
    PERSIST = "persist"  # Raft entries and hard state (synced); messages wait for it
    APPLY = "apply"  # state-machine changes with the applied index
    SNAPSHOT = "snapshot"  # a state-machine snapshot and the log compaction it allows
    START = "start"  # an added shard's entry 1 on one of its founders
    DELETE = "delete"  # a step of deleting a replica that left its shard


@dataclass(slots=True)
class _Stall:
    """A batch of one phase of the Ready cycle; kept and retried if the disk refuses it."""

    replicas: list[Replica]
    batch: WriteBatch
    sync: bool
    phase: _Phase
    error: str = ""
    next_retry: float = 0.0
    shard: int = -1  # the added shard a START batch begins, or the one a DELETE batch deletes
    finishes: bool = False  # a DELETE batch that deletes the last of its shard


class Node:
    """One node's driver, handed its storage, links, clock and randomness (links.py)."""

    def __init__(
        self,
        config: NodeConfig,
        storage: NodeStorage,
        *,
        peers: PeerLink,
        clients: ClientLink,
        clock: Clock,
        rng: random.Random,
        faults: DriverFaults = NO_FAULTS,
    ) -> None:
        self.config = config
        self.node_id = config.node_id
        self.faults = faults
        self._time = clock
        self.clock = HybridClock(clock.wall_ms, config.clock.max_clock_offset_ms)
        self.storage = storage
        self.peers = peers
        self.clients = clients
        self._rng = rng
        self.replicas: dict[int, Replica] = {}
        # Each turn works only on the replicas that need it, so a thousand idle shards cost little:
        # `_awake` are ticked (not quiet); `_touched` got input this turn; `_busy` still wait for
        # something (requests, a Ready) from an earlier turn.
        self._awake: dict[int, Replica] = {}
        self._touched: dict[int, Replica] = {}
        self._busy: dict[int, Replica] = {}
        self._client_addresses = config.client_addresses
        self._outbox: dict[int, _PeerOutbox] = defaultdict(_PeerOutbox)
        self._replies: list[Reply] = []
        self._forwards: dict[int, _Forwarded] = {}
        self._next_forward_expiry = 0.0
        self._tick_s = config.raft.tick_ms / 1000
        self._stall: _Stall | None = None
        self.counters: dict[str, int] = defaultdict(int)
        self.error_replies: dict[str, int] = defaultdict(int)  # replies carrying an error, by code
        self.histograms = NodeHistograms()
        self.now = clock.monotonic()
        self._next_tick = self.now + self._tick_s
        # The map every node starts from (the meta shard keeps later ones: docs/sharding.md).
        self.shard_map = self._initial_map = config.initial_map()
        self._data_shards = tuple(self.shard_map.data_shards)
        self.mover = PartitionMover()
        self._moves_changed: dict[int, Replica] = {}  # replicas the mover should look at again
        self._map_fetch_until = 0.0  # a newer map asked of a peer: no second request before then
        self._next_placement = 0.0
        # Shards whose leadership goes to the map's preferred leader, once it can take it: every
        # shard, after each newer map (`confctl rebalance` reorders replicas to spread the leaders)
        # and after a first start, so that a new cluster's leaders are spread as its first map
        # spreads them, whichever replica won each first election. (A restart is not a first
        # start: leadership that moved during a failover stays where it went.)
        on_disk = storage.shard_ids()
        self._prefer: dict[int, float] = (
            {} if on_disk else dict.fromkeys(self.shard_map.replicas, self.now + PREFER_WINDOW_S)
        )
        # The shards the placement check looks at: every shard after a newer map, and each shard
        # this node leads that had a Ready (a new leader, a membership change); a shard leaves the
        # set once it is settled, so a thousand idle shards cost the check nothing.
        self._placement_due: set[int] = set()
        self._preferred_wait: dict[int, tuple[float, float]] = {}  # shard -> (not before, next wait)
        self._peer_limits = dataclasses.replace(config.limits, max_request_bytes=PEER_REQUEST_BYTES)
        # When each peer was last heard, on any shard: the clock's health is the node's, and a
        # follower of a shard hears only that shard's leader (monotonic seconds).
        self.peer_contact: dict[int, float] = {}
        self._remote_peers = sorted(config.remote_peer_addresses)
        self._election_s = self._tick_s * config.raft.election_ticks
        self._silent: set[int] = set()  # peers not heard from for an election timeout
        self._meta_seeded = False  # the meta shard holds a map (it never loses it again)
        self._meta_retry_at = 0.0  # when this node, leading the meta shard, may write the first map again
        storage.check_cluster_shape(config.cluster.to_record(config.initial_voters))
        self._deleting = storage.deleting_shards()  # replicas that left their shard, still being deleted
        self._leaving: dict[int, Replica] = {}  # replicas that left their shard, not yet being deleted
        # The simulator lowers it, so that deletions span many turns and its crashes land inside them.
        self.delete_keys_per_turn = DELETE_KEYS_PER_TURN
        self.counters["deletions_resumed"] += len(self._deleting)
        self._next_unplaced_check = 0.0
        # The map's shards for this node, and any a leader started here before a restart; not one
        # deleted here (a leader adding this node back starts it again).
        for shard_id in sorted({*self.shard_map.shards_on(self.node_id), *on_disk}):
            if shard_id in on_disk or not storage.was_deleted(shard_id):
                self._open_replica(shard_id)
        if META_SHARD in self.replicas:  # the map as it was when this node stopped
            self._adopt_stored_map(self.replicas[META_SHARD])
        self._continue_stamps()
        # Each incarnation numbers its forwards from a random point: a leader may answer a forward
        # after this node restarted, and under an id the new incarnation had reused the answer
        # would go to another client, which took it for its own when the request ids matched
        # (simulator seed 1002911: a put acknowledged with another write's result before it
        # was applied). Drawn after the replicas' generators, so seeded runs keep their history.
        self._next_forward_id = self._rng.getrandbits(62) + 1
        self.incarnation = self._rng.getrandbits(62) + 1  # tells the peers when this node restarted
        self._peer_incarnations: dict[int, int] = {}
        # Which data dir this node runs from, and which each peer ran from when first heard: a
        # peer showing another has lost its votes and log, and is refused (storage/identity.py).
        # A new dir takes the first incarnation's number (no draw: seeded runs keep their history).
        dir_id = storage.dir_id()
        if dir_id is None:
            dir_id = self.incarnation
            storage.set_dir_id(dir_id)
        self.dir_id = dir_id
        self._peer_dirs = storage.peer_dir_ids()
        self._refused_dirs: dict[int, int] = {}  # peer -> its dir id we refuse (told in every batch)
        # Per peer, the send time its last batch carried and when it arrived here: echoed in the
        # next batch to it, so that it learns its round trip to this node (histograms.py).
        self._echoes: dict[int, tuple[float, float]] = {}
        self.watches = WatchHub(config.requests.max_watches, self._send_watch_message, self.counters)
        self._lease_leaders: set[int] = set()  # shards led here that hold a lease: their clocks run
        self._watch_stamp_at = -1.0  # the turn (its `now`) the watch messages' HLC stamp is of
        self._watch_stamp: int | None = None
        self._warn_unlisted_members()

    def _continue_stamps(self) -> None:
        """Stamp after every change this node's shards hold, even if the wall clock is behind their
        newest (stepped back across a restart, or a cluster restored on hosts whose clocks lag the
        old one's): the audit log's one order is the stamps'. A stamp too far ahead is ignored,
        as a client's would be (restore refuses such a host first: backup/restore.py)."""
        newest = 0
        for replica in self.replicas.values():
            for key, _ in replica.storage.scan(AUDIT, reverse=True):
                newest = max(newest, audit_key_hlc(key))
                break
        if newest:
            self.clock.observe(newest)

    def _warn_unlisted_members(self) -> None:
        """A config that took out a node some local replica still counts a member (edited while the
        node was down, skipping the check a reload makes): the shard cannot reach that member."""
        listed = self.config.client_addresses
        for shard_id, replica in sorted(self.replicas.items()):
            membership = replica.raft.membership
            members = set() if membership is None else membership.voters | membership.learners
            for node_id in sorted(members - set(listed)):
                log.warning(
                    "shard %d counts node %d a member, but the config lists no such node: it cannot "
                    "reach it (put its [[peers]] entry back until `confctl node remove %d` is done)",
                    shard_id,
                    node_id,
                    node_id,
                )

    def _open_replica(self, shard_id: int) -> bool:
        """Start the shard's replica here, writing its first state first (`_first_batch`); at a
        turn, through the stall machinery. Returns whether it started (a stall starts it later)."""
        batch = self._first_batch(shard_id)
        if batch is not None and not self._write(_Stall([], batch, True, _Phase.START, shard=shard_id)):
            return False  # the stall retries the batch, then makes the replica (_retry_stall)
        self._make_replica(shard_id)
        return True

    def _first_batch(self, shard_id: int) -> WriteBatch | None:
        """What a replica with no state here writes before it starts: the term and vote its node's
        deleted replica had, if it had one (storage/tombstones.py); else the shard's entry 1, if
        this node is one of its first voters; else nothing (the leader's log or snapshot starts it)."""
        shard = self.storage.shard(shard_id)
        if shard.is_bootstrapped():
            return None
        tombstone = self.storage.tombstone(shard_id)
        if tombstone is not None:
            # Never entry 1 again: as a voter with an empty log it could elect a leader that lacks
            # committed entries. Without its term and vote it could acknowledge a deposed leader
            # or vote twice in a term.
            log.info("shard %d: deleted here once; started again from term %d", shard_id, tombstone.term)
            batch = self.storage.new_batch()
            shard.stage_hard_state(HardState(tombstone.term, tombstone.vote, 0), batch)
            return batch
        # Its first voters: the founders of a shard added later, else the first map's replicas.
        first = self.shard_map.founders.get(shard_id) or self._initial_map.replicas.get(shard_id, ())
        voters = frozenset(first)
        if self.node_id not in voters:  # it joins: the leader's log or snapshot tells it the membership
            log.info("shard %d: no state yet; the leader's log or snapshot starts it here", shard_id)
            return None
        batch = self.storage.new_batch()
        shard.stage_bootstrap(Membership(voters), batch)
        return batch

    def _make_replica(self, shard_id: int) -> None:
        shard = self.storage.shard(shard_id)
        raft = self.config.raft
        tombstone = self.storage.tombstone(shard_id)  # deleted here once: no vote until added back
        raft_config = RaftConfig(
            node_id=self.node_id,
            shard_id=shard_id,
            election_ticks=raft.election_ticks,
            heartbeat_ticks=raft.heartbeat_ticks,
            pre_vote=raft.pre_vote,
            check_quorum=raft.check_quorum,
            max_append_entries=raft.max_append_entries,
            max_apply_entries=raft.max_apply_entries,
            quiesce=raft.quiet_shards,
            rejoin_after=None if tombstone is None else tombstone.removed_at,
            faults=self.faults.raft,
        )
        settings = ReplicaSettings(
            history_limit=self.config.limits.history_limit,
            session_ttl_ms=self.config.requests.session_ttl_ms,
            snapshot_interval_entries=raft.snapshot_interval_entries,
            log_retain_entries=raft.log_retain_entries,
            watch_window_events=self.config.requests.watch_window_events,
            lease_extend_s=raft.tick_ms * raft.election_ticks / 1000,
            ownership=None
            if shard_id == META_SHARD
            else Ownership(
                self._initial_map.partitions, frozenset(self._initial_map.partitions_of(shard_id))
            ),
        )
        # Each replica's election jitter comes from the node's generator (seeded in the simulator).
        rng = random.Random(self._rng.getrandbits(64))
        replica = Replica(
            shard_id, raft_config, shard, settings, rng=rng, faults=self.faults, counters=self.counters
        )
        self.replicas[shard_id] = self._awake[shard_id] = replica
        self._touch(replica)

    def nudge(self, shard_id: int) -> None:
        """Someone outside the loop gave this shard's Raft node work (a transfer, a membership
        change): the next turn looks at it."""
        self._busy[shard_id] = self.replicas[shard_id]

    def _touch(self, replica: Replica) -> Replica:
        """`replica` takes input this turn: it is worked on until nothing of it is pending."""
        replica.now = self.now
        self._touched[replica.shard_id] = replica
        return replica

    # ------------------------------------------------------------------ the turn

    def seconds_to_next_turn(self) -> float:
        now = self._time.monotonic()
        if self._stall is not None:  # neither ticks nor Readies matter until the disk takes the batch
            return max(0.0, min(self._stall.next_retry, now + self._tick_s) - now)
        if self._deleting or self.watches.has_due() or any(r.raft.has_ready() for r in self._busy.values()):
            return 0.0
        return max(0.0, self._next_tick - now)

    def turn(self) -> None:
        self.counters["turns"] += 1
        self.now = now = self._time.monotonic()
        for replica in self._busy.values():
            self._touch(replica)
        self._receive_peers()
        self._receive_clients()
        if self._stall is not None:
            self._retry_stall()
        for replica in self._busy.values():
            replica.expire()
        if self._stall is None:
            self._tick(now)
            self._expire_leases()
            self._seed_meta()
            self._drive_moves()
            self._place_replicas()
            self._check_unplaced()
            for replica in self._touched.values():
                replica.flush_requests()
            self._ready_cycle()
            self._delete_left_replicas()
            self._go_on_deleting()
        self._expire_forwards(now)
        self.watches.deliver(self.replicas, now)
        self._flush_peers()
        self._flush_replies()
        self._end_turn()

    def _end_turn(self) -> None:
        """Carry over what still waits; a replica that went quiet is no longer ticked."""
        busy: dict[int, Replica] = {}
        for shard_id, replica in self._touched.items():
            if replica.leases:
                self._lease_leaders.add(shard_id)
            else:
                self._lease_leaders.discard(shard_id)
            if replica.has_pending() or replica.raft.has_ready():
                busy[shard_id] = replica
            if replica.raft.quiet:
                self._awake.pop(shard_id, None)
            else:
                self._awake[shard_id] = replica
        self._busy = busy
        self._touched = {}

    def _expire_leases(self) -> None:
        """As leader of a shard with leases: propose the expiry of each whose time is up (leases.py).

        Looked at every turn, for the shards whose leader this node is and that hold a lease; a
        quiet shard wakes for it. A node whose clock is off from its peers' stamps no write: its
        leases wait (later, never earlier) for it or a new leader.
        """
        if not self._lease_leaders or clock_fault(self.clock, self.peer_contact, self.now) is not None:
            return
        timeout_s = self.config.requests.request_timeout_ms / 1000
        for shard_id in sorted(self._lease_leaders):
            replica = self.replicas.get(shard_id)
            if replica is None or not replica.is_leader:
                continue
            replica.now = self.now
            for lease in replica.due_lease_expiries():
                self._touch(replica)
                self.counters["leases_expired"] += 1
                command = Command(LeaseExpire(lease), self.clock.now(), "confmand", None)
                replica.accept_write(command, DaemonSink(), 0, self.now + timeout_s)

    def _seed_meta(self) -> None:
        """As the meta shard's leader: write the first map if it holds none, once per request timeout.

        Only once the leader has applied its own term's first entry, so that the state it
        looks at holds everything earlier leaders committed. The write is guarded by "no map
        yet", so writing again after a lost or late attempt changes nothing.
        """
        meta = self.replicas.get(META_SHARD)
        if self._meta_seeded or meta is None or not meta.is_leader or self.now < self._meta_retry_at:
            return
        if meta.applied.term != meta.raft.term:
            return
        if stored_map(meta.storage) is not None:
            self._meta_seeded = True
            return
        self._touch(meta)
        timeout_s = self.config.requests.request_timeout_ms / 1000
        self._meta_retry_at = deadline = self.now + timeout_s
        command = seed_command(self._initial_map, self.config.active_peers, self.clock.now())
        meta.accept_write(command, DaemonSink(), 0, deadline)
        log.info(
            "shard 0: writing the first shard map (epoch %d) and the node registry", self._initial_map.epoch
        )

    def _fetch_map_from(self, peer_id: int) -> None:
        """A peer's map is newer (how a node without a meta replica learns maps): ask it, one at a time."""
        if self.now < self._map_fetch_until:
            return
        timeout_s = self.config.requests.request_timeout_ms / 1000
        self._map_fetch_until = self.now + timeout_s
        forward_id = self._next_forward_id
        self._next_forward_id += 1
        self._forwards[forward_id] = _Forwarded(MapSink(), 0, META_SHARD, self.now + timeout_s)
        frame = msgpack.packb({"v": 1, "id": forward_id, "op": "shard_map"})
        self._outbox[peer_id].forwards.append(ForwardRequest(forward_id, META_SHARD, frame))

    def _map_answered(self, payload: bytes) -> None:
        self._map_fetch_until = 0.0
        reply = decode_reply(payload)
        if reply is None or reply.get("ok") is not True:
            return
        try:
            shard_map = ShardMap.from_wire(reply)
        except WireError as exc:
            self._drop("peer_map_undecodable", "a peer's shard map is not one: %s", exc)
            return
        self._adopt(shard_map)

    def _adopt(self, shard_map: ShardMap) -> None:
        if shard_map.epoch <= self.shard_map.epoch:
            return
        log.info("shard map epoch %d -> %d", self.shard_map.epoch, shard_map.epoch)
        self._prefer.update(dict.fromkeys(shard_map.replicas, self.now + PREFER_WINDOW_S))
        self._placement_due.update(shard_map.replicas)
        self.shard_map = shard_map
        self._data_shards = tuple(shard_map.data_shards)
        self._start_added_shards()

    def _start_added_shards(self) -> None:
        """Start each shard added with this node among its founders (and still placed here): its
        entry 1 names the founders. Other nodes it is placed on start it when its leader's first
        append reaches them. A refused write (full disk) stalls the node like any other, and is retried.
        """
        if self._stall is not None:  # storage takes no batch before the stalled one
            return
        shard_map = self.shard_map
        for shard_id, founders in shard_map.founders.items():
            placed = shard_map.replicas[shard_id]
            if (
                shard_id in self.replicas
                or self.storage.was_deleted(shard_id)  # a leader adding it back starts it
                or self.node_id not in founders
                or self.node_id not in placed
            ):
                continue
            if not self._open_replica(shard_id):
                return  # the stall retries the batch, then starts the shard (_retry_stall)
            log.info("shard %d: added with founders %s; started here", shard_id, list(founders))
            self.counters["added_shards_started"] += 1

    def _adopt_stored_map(self, meta: Replica) -> None:
        """A newer map in the meta shard (a partition moved) becomes this node's map."""
        try:
            stored = stored_map(meta.storage)
        except WireError as exc:
            self._drop("meta_map_undecodable", "shard 0: the stored map is not one: %s", exc)
            return
        if stored is not None:
            self._adopt(stored)

    # ------------------------------------------------------------------ placement

    def _place_replicas(self) -> None:
        """As a shard's leader (the meta shard's too): one membership step towards the map's
        replicas (placement.py)."""
        if self.now < self._next_placement:
            return
        self._next_placement = self.now + PLACEMENT_CHECK_S
        self._start_added_shards()
        if not self.config.raft.map_membership:
            return
        for shard_id in sorted(self._placement_due):
            replica = self.replicas.get(shard_id)
            wanted = self.shard_map.replicas.get(shard_id)
            raft = None if replica is None else replica.raft
            membership = None if raft is None else raft.membership
            if (
                replica is None
                or raft is None
                or wanted is None
                or membership is None
                or not replica.is_leader
            ):
                self._placement_due.discard(shard_id)  # a Ready or a newer map brings it back
                continue
            prefer = self._prefer.get(shard_id, 0.0) > self.now and wanted[0] != self.node_id
            settled = membership.voters == frozenset(wanted) and not membership.learners
            if settled and not prefer:
                self._placement_due.discard(shard_id)
                self._prefer.pop(shard_id, None)
                continue
            if settled and wanted[0] in self._silent:
                continue  # its preferred leader is not heard from: look again later
            status = raft.status()
            matched = {peer: p.match for peer, p in status.peers.items()}
            if settled:
                step: MembershipChange | Transfer | None = self._preferred_step(
                    shard_id, membership, wanted, matched, status.commit_index
                )
            else:
                step = next_step(membership, wanted, self.node_id, matched, status.commit_index)
            try:
                if isinstance(step, Transfer):
                    raft.transfer_leadership(step.node)
                elif step is not None:
                    raft.propose_membership(step)
                else:
                    continue
            except ProposalRejected:  # a change or a transfer under way: the next check goes on
                continue
            log.info("shard %d: towards replicas %s: %s", shard_id, list(wanted), step)
            self.counters["placement_steps"] += 1
            self._touch(replica)  # this turn's Ready carries the change (nudge is for calls between turns)

    def _preferred_step(
        self,
        shard_id: int,
        membership: Membership,
        wanted: tuple[int, ...],
        matched: dict[int, int],
        commit: int,
    ) -> Transfer | None:
        not_before, wait = self._preferred_wait.get(shard_id, (0.0, PREFERRED_TRANSFER_WAIT_S[0]))
        if self.now < not_before:
            return None
        step = preferred_transfer(membership, wanted, self.node_id, matched, commit)
        if step is not None:
            self.counters["preferred_transfers"] += 1
            self._preferred_wait[shard_id] = (self.now + wait, min(2 * wait, PREFERRED_TRANSFER_WAIT_S[1]))
        return step

    # ------------------------------------------------------------------ leaving a shard

    def _delete_left_replicas(self) -> None:
        """Delete the replicas that learned this turn that they left their shard (one batch each,
        so none after a batch the disk refused: the stall retries it first)."""
        for replica in [r for r in self._touched.values() if r.raft.removed]:
            self._leaving[replica.shard_id] = replica
        while self._leaving and self._stall is None:
            _, replica = self._leaving.popitem()
            self._start_deleting(replica)

    def _start_deleting(self, replica: Replica) -> None:
        shard_id = replica.shard_id
        log.info("shard %d: this node is no longer a member; deleting its replica here", shard_id)
        self.counters["replicas_deleted"] += 1
        gone = self._wrong_shard(
            shard_id, f"node {self.node_id} left shard {shard_id}: it holds no replica of it"
        )
        self._replies.extend(replica.abandon(gone))
        for table in (self.replicas, self._awake, self._touched, self._busy, self._moves_changed):
            table.pop(shard_id, None)
        self._prefer.pop(shard_id, None)
        self._preferred_wait.pop(shard_id, None)
        self._placement_due.discard(shard_id)
        self._deleting.append(shard_id)
        batch = self.storage.new_batch()
        raft = replica.raft
        self.storage.stage_delete_start(shard_id, batch, raft.removed_at, raft.term, raft.vote)
        self._write(_Stall([], batch, True, _Phase.DELETE, shard=shard_id))

    def _go_on_deleting(self) -> None:
        """One bounded, synced step of the first deletion under way (storage/tombstones.py)."""
        if not self._deleting or self._stall is not None:
            return
        shard_id = self._deleting[0]
        batch = self.storage.new_batch()
        done = self.storage.stage_delete_step(shard_id, batch, self.delete_keys_per_turn)
        if self._write(_Stall([], batch, True, _Phase.DELETE, shard=shard_id, finishes=done)) and done:
            self._deleted(shard_id)

    def _deleted(self, shard_id: int) -> None:
        self._deleting.remove(shard_id)
        log.info("shard %d: its replica here is deleted", shard_id)

    def _check_unplaced(self) -> None:
        """Every UNPLACED_CHECK_S, each replica here that the map no longer places here asks its
        members whether it still belongs: removed, it is told so and deleted."""
        if self.now < self._next_unplaced_check or not self.config.raft.map_membership:
            return
        self._next_unplaced_check = self.now + UNPLACED_CHECK_S
        placed = self.shard_map.replicas
        for shard_id, replica in self.replicas.items():
            holders = placed.get(shard_id, (self.node_id,))
            if self.node_id not in holders and not replica.is_leader:
                self._touch(replica).raft.check_membership(fallback=holders)

    # ------------------------------------------------------------------ partition moves

    def _drive_moves(self) -> None:
        """As leader of a shard a partition leaves: send the move's next step (mover.py)."""
        changed = [r for r in self._touched.values() if r.moves_changed]
        if self._moves_changed:
            changed += [r for r in self._moves_changed.values() if r.moves_changed]
            self._moves_changed = {}
        if changed or self.mover.busy:
            self.mover.look(self.replicas, changed)
        if not self.mover.busy:
            return
        now = self.now
        self.mover.expire(now)
        exports = {}
        for task in self.mover.wants_export(now):
            source, partition, _ = task
            ownership = self.replicas[source].settings.ownership
            assert ownership is not None  # a data shard
            exports[task] = export_partition(self.replicas[source].storage, ownership, partition)
        for send in self.mover.due(now, exports):
            self._send_step(send)

    def _send_step(self, send: Send) -> None:
        sink = MoverSink(send.task, send.step)
        deadline = self.now + self.config.requests.request_timeout_ms / 1000
        replica = self.replicas.get(send.shard)
        if replica is not None and replica.is_leader:
            if clock_fault(self.clock, self.peer_contact, self.now) is not None:  # it would stamp the entry
                self.mover.answered(
                    send.task, send.step, ok=False, now=self.now, leader=None, shard=send.shard
                )
                return
            command = Command(send.op, self.clock.now(), PRINCIPAL, None)
            self._touch(replica).accept_write(command, sink, 0, deadline)
            return
        node = send.node
        if node is None and replica is not None and not send.blind:
            node = replica.raft.leader_id
        if node is None or node == self.node_id:
            # Any holder: a follower that is not the leader names it. This node's replica may be
            # one removed from the shard, whose idea of the leader is stale (simulator seed 1000834).
            holders = set(self.shard_map.replicas.get(send.shard, ()))
            membership = None if replica is None else replica.raft.membership
            if membership is not None:
                holders |= membership.members
            candidates = sorted(holders - {self.node_id})
            node = candidates[self._rng.randrange(len(candidates))] if candidates else None
        if node is None:
            self.mover.answered(send.task, send.step, ok=False, now=self.now, leader=None, shard=send.shard)
            return
        forward_id = self._next_forward_id
        self._next_forward_id += 1
        self._forwards[forward_id] = _Forwarded(sink, 0, send.shard, deadline + FORWARD_GRACE_S)
        payload = move_step_frame(forward_id, send.op, send.shard, self.clock.now())
        self._outbox[node].forwards.append(ForwardRequest(forward_id, send.shard, payload))

    def _step_answered(self, sink: MoverSink, ok: bool, leader: int | None, shard: int | None) -> None:
        if shard is None:
            shard = -1
        self.mover.answered(sink.task, sink.step, ok=ok, now=self.now, leader=leader, shard=shard)

    def _forwarded_step_answered(self, sink: MoverSink, shard: int, payload: bytes) -> None:
        reply = decode_reply(payload)
        ok = reply is not None and reply.get("ok") is True
        hint = None if reply is None else reply.get("leader")
        leader = hint.get("id") if isinstance(hint, dict) else None
        self._step_answered(sink, ok, leader if isinstance(leader, int) else None, shard)

    def _move_shard(self, request: MoveRequest, forwarded: bool) -> int:
        """The shard that applies a step of a move."""
        common = request.common
        step = request.step
        if common.op in INTERNAL_MOVE_OPS and not forwarded:
            raise RequestError(ErrorCode.INVALID_REQUEST, f"{common.op} is a step a node sends, not a client")
        shard_map = self.shard_map
        if isinstance(step, Freeze):
            if not 0 <= step.partition < shard_map.partitions:
                raise RequestError(
                    ErrorCode.INVALID_REQUEST,
                    f"no partition {step.partition} (the map has {shard_map.partitions})",
                )
            shard_id = shard_map.owners[step.partition]
            if step.to_shard not in self._data_shards or step.to_shard == shard_id:
                raise RequestError(
                    ErrorCode.INVALID_REQUEST,
                    f"partition {step.partition} is in shard {shard_id}; to_shard must be another data shard "
                    f"(have {list(self._data_shards)})",
                )
            return shard_id
        if isinstance(step, MapMove):
            return META_SHARD
        if isinstance(step, MapReplicas | MapAddShard):
            unknown = sorted(set(step.nodes) - set(self.config.client_addresses))
            if isinstance(step, MapAddShard):
                if unknown:
                    raise RequestError(
                        ErrorCode.INVALID_REQUEST,
                        f"add_shard: no node {unknown} (nodes {sorted(self.config.client_addresses)})",
                    )
                return META_SHARD
            if step.data_shard not in shard_map.replicas or unknown:
                raise RequestError(
                    ErrorCode.INVALID_REQUEST,
                    f"set_replicas: shards are {list(shard_map.replicas)}, nodes "
                    f"{sorted(self.config.client_addresses)}" + (f"; no node {unknown}" if unknown else ""),
                )
            return META_SHARD
        assert isinstance(step, Ingest | Drop)
        if common.shard is None:
            raise RequestError(ErrorCode.INVALID_REQUEST, f"{common.op} names no shard")
        return common.shard

    def _move_request(
        self, request: MoveRequest, shard_id: int, sink: ReplySink, payload: bytes, forwarded: bool
    ) -> None:
        """A step of a move: `move_partition` from an operator, or a step another node drives."""
        common = request.common
        step = request.step
        replica = self.replicas.get(shard_id)
        if replica is None:
            raise self._wrong_shard(shard_id, f"node {self.node_id} holds no replica of shard {shard_id}")
        self._touch(replica)
        timeout_s = self.config.requests.request_timeout_ms / 1000
        if not replica.is_leader:
            incoming = _Incoming(payload, sink, forwarded, common.request_id, self.now + timeout_s)
            self._forward(replica, incoming)
            return
        self._refuse_if_stalled()
        fault = clock_fault(self.clock, self.peer_contact, self.now)
        if fault is not None:  # as for any write: a clock off from its peers' stamps nothing
            target = replica.hand_off_for_clock_fault()
            raise RequestError(
                ErrorCode.NOT_LEADER, f"{fault}: this node stamps no write (handing off to {target})"
            )
        command = Command(step, self.clock.now(), common.principal, None)
        replica.accept_write(command, sink, common.request_id, self.now + timeout_s)

    def _tick(self, now: float) -> None:
        ticks = 0
        while now >= self._next_tick and ticks < MAX_TICKS_PER_TURN:
            for replica in self._awake.values():
                self._touch(replica).tick()
            self._next_tick += self._tick_s
            ticks += 1
        if now >= self._next_tick:  # fell far behind (a pause): resume the beat from now
            self._next_tick = now + self._tick_s
        if ticks:
            self._keep_alive(now)

    def _keep_alive(self, now: float) -> None:
        """Once per tick: every peer hears from this node, and a silent peer's quiet shards wake.

        A quiet shard sends nothing, so its followers judge the leader by the node: one batch per
        peer per tick (empty unless the turn had more to say) says this node is up. A follower
        that has heard nothing from its quiet leader's node for an election timeout wakes with
        the leader suspected and elects within one more (docs/raft.md, *Quiet shards*).
        """
        for peer_id in self._remote_peers:
            self._outbox[peer_id]  # the defaultdict makes this turn's batch for the peer: empty is enough
        silent = {p for p in self._remote_peers if now - self.peer_contact.get(p, -1e18) > self._election_s}
        newly, back, self._silent = silent - self._silent, self._silent - silent, silent
        for peer_id in back:
            self._peer_back(peer_id, restarted=False)
        if not newly:
            return
        for replica in self.replicas.values():
            raft = replica.raft
            if raft.quiet and raft.leader_id in newly and not replica.is_leader:
                self._touch(replica).raft.wake(leader_suspected=True)
                self.counters["quiet_woken_leader_silent"] += 1

    def _peer_back(self, peer_id: int, restarted: bool) -> None:
        """A peer is heard again after a silence, or restarted: its quiet shards here wake.

        The quiet shards this node leads with it heartbeat it at once (it may know no leader);
        a quiet follower whose leader restarted drops its lease (that leader leads no more).
        """
        for replica in self.replicas.values():
            raft = replica.raft
            if not raft.quiet:
                continue
            membership = raft.membership
            if replica.is_leader and membership is not None and peer_id in membership.members:
                self._touch(replica).raft.wake()
                self.counters["quiet_woken_peer_back"] += 1
            elif restarted and raft.leader_id == peer_id:
                self._touch(replica).raft.wake(leader_suspected=True)
                self.counters["quiet_woken_leader_restarted"] += 1

    def _ready_cycle(self) -> None:
        """Persist every replica's Ready in one batch and fsync, send, then apply in a second batch."""
        active = [r for r in self._touched.values() if r.raft.has_ready()]
        if not active:
            return
        batch = self.storage.new_batch()
        sync = False
        for replica in active:
            sync |= replica.stage(batch)
            # A leader's appends may leave before its own fsync (thesis §10.2.1): the followers'
            # fsyncs then overlap ours. The leader counts itself only after `advance`.
            self._queue_raft(replica, replica.take_early_messages())
        self._flush_peers()
        fsync = self.config.storage.fsync
        if sync:
            sync = fsync and not self.faults.raft_batch_unsynced
            if self._write(_Stall(active, batch, sync, _Phase.PERSIST)):
                self._after_persist(active)
        elif self.faults.apply_batch_unsynced:
            if self._write(_Stall(active, batch, False, _Phase.PERSIST)):
                self._after_persist(active)
        else:
            # No entries and no vote: nothing here must be durable before its messages go. Its
            # hard state (a commit index) goes into the apply batch, which is synced anyway.
            self._after_persist(active, batch)

    def _after_persist(self, active: list[Replica], batch: WriteBatch | None = None) -> None:
        """Entries and hard state are durable: votes and acknowledgements may go; then apply."""
        for replica in active:
            self._queue_raft(replica, replica.take_messages())
        self._flush_peers()
        if batch is None:
            batch = self.storage.new_batch()
        for replica in active:
            replica.stage_apply(batch)
        # Synced too: LevelDB starts a new log file without syncing the old one (google/leveldb#193),
        # so a later synced batch does not make an earlier unsynced one durable. An apply batch lost
        # under a later applied index would leave a hole in the state machine that no replay fills.
        sync = self.config.storage.fsync and not self.faults.apply_batch_unsynced
        if self._write(_Stall(active, batch, sync, _Phase.APPLY)):
            self._after_apply(active)

    def _after_apply(self, active: list[Replica]) -> None:
        for replica in active:
            replica.after_apply()
            if replica.is_leader:
                self._placement_due.add(replica.shard_id)
            if replica.shard_id == META_SHARD:
                self._adopt_stored_map(replica)
            if replica.moves_changed:
                self._moves_changed[replica.shard_id] = replica
                self.watches.moves_changed(replica.shard_id)
            else:
                self.watches.applied(replica.shard_id)
            self._replies.extend(replica.replies)
            replica.replies.clear()
        self._maybe_snapshot(active)

    def _queue_raft(self, replica: Replica, messages: list[Message]) -> None:
        for msg in messages:
            self._outbox[msg.dst].raft.append((replica.shard_id, msg))

    def _maybe_snapshot(self, active: list[Replica]) -> None:
        batch = self.storage.new_batch()
        snapshotted = [r for r in active if r.maybe_snapshot(batch)]
        if not snapshotted:
            return
        # A refused snapshot batch stalls and is retried like the others: storage takes no later
        # batch before it, and the shards' staged state already counts it as written.
        if self._write(_Stall(snapshotted, batch, self.config.storage.fsync, _Phase.SNAPSHOT)):
            self._after_snapshot(snapshotted)

    def _after_snapshot(self, snapshotted: list[Replica]) -> None:
        for replica in snapshotted:
            replica.after_snapshot_written()
            self.counters["snapshots_taken"] += 1
            log.info("shard %d: snapshot at %s, log compacted", replica.shard_id, replica.applied)

    def _write(self, pending: _Stall) -> bool:
        started = self._time.monotonic()
        try:
            self.storage.write(pending.batch, sync=pending.sync)
        except StorageError as exc:
            log.error("cannot write to %s: %s; Raft stalls until it can", self.config.data_dir, exc)
            pending.error = str(exc)
            pending.next_retry = self.now + STALL_RETRY_S
            self._stall = pending
            self.counters["storage_errors"] += 1
            return False
        self.histograms.write_batch_records.observe(len(pending.batch.ops))
        if pending.sync:
            self.histograms.fsync_s.observe(self._time.monotonic() - started)
        return True

    def _retry_stall(self) -> None:
        stall = self._stall
        assert stall is not None
        if self.now < stall.next_retry:
            return
        self._stall = None
        if not self._write(stall):
            return
        log.warning("storage writes succeed again; Raft resumes")
        if stall.phase is _Phase.START:
            self._make_replica(stall.shard)
        elif stall.phase is _Phase.DELETE:
            if stall.finishes:
                self._deleted(stall.shard)
        elif stall.phase is _Phase.PERSIST:
            self._after_persist(stall.replicas)
        elif stall.phase is _Phase.APPLY:
            self._after_apply(stall.replicas)
        else:
            self._after_snapshot(stall.replicas)

    # ------------------------------------------------------------------ peers

    def _receive_peers(self) -> None:
        for sender, payload in self.peers.receive(MAX_RECEIVE_PER_TURN):
            try:
                batch = decode_peer_batch(payload)
            except PeerDecodeError as exc:
                self._drop("peer_malformed", "malformed batch from node %d: %s", sender, exc)
                continue
            if batch.from_node != sender:
                self._drop("peer_spoofed", "batch from node %d claims node %d", sender, batch.from_node)
                continue
            # The sender's dir first: a peer that lost its own state may have taken another's stale
            # batch for that node's first one, and its refusal must not stop a healthy node.
            if not self._known_dir(sender, batch.dir_id):
                continue
            if batch.refused_dir and batch.refused_dir == self.dir_id:
                raise DataDirError(_lost_state_message(self.node_id, sender, self.dir_id))
            self.peer_contact[sender] = self.now
            if batch.sent_at:
                self._echoes[sender] = (batch.sent_at, self.now)
            if batch.echo_sent_at:
                round_trip = self.now - batch.echo_sent_at - batch.echo_held_s
                if round_trip >= 0:  # not across a restart of this node (another monotonic clock)
                    self.histograms.round_trip(sender, round_trip)
            known = self._peer_incarnations.get(sender)
            if known != batch.incarnation:
                self._peer_incarnations[sender] = batch.incarnation
                if known is not None:
                    self._peer_back(sender, restarted=True)
            try:
                self.clock.update(batch.hlc)
            except HlcError as skew:  # ClockSkewError included: keep Raft going, refuse the stamp
                self._drop("peer_clock_rejected", "node %d: %s", sender, skew)
            if batch.map_epoch > self.shard_map.epoch:
                self._fetch_map_from(sender)
            self._step_raft(sender, batch)
            for forward in batch.forwards:
                sink = ForwardSink(sender, forward.forward_id)
                self._handle_request(forward.request, sink, forwarded=True)
            for answer in batch.forward_replies:
                waiting = self._forwards.pop(answer.forward_id, None)
                if waiting is None:
                    continue
                if isinstance(waiting.sink, MapSink):
                    self._map_answered(answer.reply)
                elif isinstance(waiting.sink, MoverSink):
                    self._forwarded_step_answered(waiting.sink, waiting.shard_id, answer.reply)
                else:
                    self.clients.reply(list(waiting.sink.envelope), answer.reply)

    def _known_dir(self, sender: int, dir_id: int) -> bool:
        """Whether `sender` runs from the data dir it ran from when first heard (recorded then)."""
        if dir_id == 0:
            return True  # a node too old to send its dir id: nothing to check
        known = self._peer_dirs.get(sender)
        if known == dir_id:
            return True
        if known is None:
            try:  # synced before anything of this peer counts (a vote, an acknowledgement)
                self.storage.remember_peer_dir(sender, dir_id)
            except StorageError as exc:
                self._drop("peer_dir_unrecorded", "node %d's data dir id not recorded: %s", sender, exc)
                return False
            self._peer_dirs[sender] = dir_id
            return True
        if self.faults.accept_lost_data_dir:
            return True
        self._refused_dirs[sender] = dir_id
        self._outbox[sender]  # this turn sends it a batch, which tells it
        self._drop(
            "peer_dir_refused",
            "node %d runs from data dir %d, not %d as before: it lost its votes and log; its "
            "messages are refused (docs/daemon.md, A node that lost its data dir)",
            sender,
            dir_id,
            known,
        )
        return False

    def _step_raft(self, sender: int, batch: PeerBatch) -> None:
        if self._stall is not None:
            self.counters["peer_dropped_stalled"] += len(batch.raft)
            return  # Raft retransmits; a stalled node must not take on new log state
        for position, (shard_id, msg) in enumerate(batch.raft):
            replica = self.replicas.get(shard_id)
            if replica is None and self._starts_replica(shard_id, sender, msg):
                if self.storage.was_deleted(shard_id):
                    self.counters["deleted_replicas_started_again"] += 1
                if not self._open_replica(shard_id):  # a full disk: stalled, as above
                    self.counters["peer_dropped_stalled"] += len(batch.raft) - position
                    return
                replica = self.replicas[shard_id]
            if replica is None or msg.shard != shard_id or msg.src != sender or msg.dst != self.node_id:
                self._drop(
                    "peer_misaddressed", "message for shard %d from node %d misaddressed", shard_id, sender
                )
                continue
            self._touch(replica).step(msg)

    def _starts_replica(self, shard_id: int, sender: int, msg: Message) -> bool:
        """A leader reaching this node for a shard of the map it holds no replica of: start one.

        Only a leader's messages start one, never a vote request: a replica with no state must
        not vote (it would forget the vote, and it may be one whose disk was lost). A replica
        deleted here once starts again from its old term and vote (`_first_batch`), even when
        the leader's term is lower: its answer then carries the higher term, so the leader steps
        down and the shard elects one in a term past it. Left unstarted, it would never answer,
        and the shard would wait for its learner for good (simulator seed 176: the replica had
        campaigned to term 12 while being removed; the shard stayed at term 9).
        """
        return (
            shard_id in self.shard_map.replicas
            and shard_id not in self._deleting  # started again once its old records are gone
            and msg.shard == shard_id
            and msg.src == sender
            and msg.dst == self.node_id
            and isinstance(msg, AppendEntries | Heartbeat | InstallSnapshot)
        )

    def _flush_peers(self) -> None:
        if not self._outbox:
            return
        stamp = self.clock.now()
        sent_at = self._time.monotonic()
        batch_sizes = self.histograms.peer_batch_messages
        for peer_id, box in self._outbox.items():
            batch_sizes.observe(len(box.raft) + len(box.forwards) + len(box.forward_replies))
            echo = self._echoes.pop(peer_id, None)
            echo_sent_at, echo_held_s = (0.0, 0.0) if echo is None else (echo[0], sent_at - echo[1])
            payload = encode_peer_batch(
                PeerBatch(
                    self.node_id,
                    stamp,
                    box.raft,
                    box.forwards,
                    box.forward_replies,
                    self.incarnation,
                    self.shard_map.epoch,
                    self.dir_id,
                    self._refused_dirs.get(peer_id, 0),
                    sent_at,
                    echo_sent_at,
                    echo_held_s,
                )
            )
            try:
                sent = self.peers.send(peer_id, payload)
            except UnknownPeerError:
                self._drop("peer_unknown_destination", "no address for node %d: message dropped", peer_id)
                continue
            if not sent:
                self.counters["peer_send_dropped"] += 1
        self._outbox.clear()

    # ------------------------------------------------------------------ clients

    def _receive_clients(self) -> None:
        for envelope, payload in self.clients.receive(MAX_RECEIVE_PER_TURN):
            self._handle_request(payload, ClientSink(tuple(envelope), self.now), forwarded=False)

    def _handle_request(self, payload: bytes, sink: ReplySink, forwarded: bool) -> None:
        try:
            request = parse_request(payload, self._peer_limits if forwarded else self.config.limits)
        except BadRequest as bad:
            self.counters[f"rejected_{bad.error.code.lower()}"] += 1
            self._replies.append(Reply(sink, bad.request_id, None, {}, bad.error))
            return
        rid = request.common.request_id
        if type(sink) is ClientSink:  # named for the latency histograms
            consistency = request.consistency.value if isinstance(request, ReadRequest) else "none"
            sink = ClientSink(sink.envelope, sink.received_at, request.common.op, consistency)
        shard_id = None
        try:
            self._observe_hlc(request)
            if isinstance(request, AdminRequest):
                self._admin(request, sink)
                return
            if isinstance(request, MoveRequest):
                shard_id = self._move_shard(request, forwarded)  # named in the reply: its leader hint
                self._move_request(request, shard_id, sink, payload, forwarded)
                return
            if isinstance(request, CancelWatchRequest):
                cancelled = type(sink) is ClientSink and self.watches.cancel(sink, request.watch_id)
                self._replies.append(Reply(sink, rid, None, {"cancelled": cancelled}))
                return
            if isinstance(request, WatchRequest):
                shard_id = self._route(request)
                if type(sink) is not ClientSink:
                    raise RequestError(ErrorCode.INVALID_REQUEST, "a watch is served where it was asked")
                self.watches.open(self.replicas[shard_id], request, sink, self.now)
                return
            shard_id = self._route(request)
            self._dispatch(request, self._touch(self.replicas[shard_id]), payload, sink, forwarded)
        except RequestError as exc:
            self._replies.append(Reply(sink, rid, shard_id, {}, exc))

    def _observe_hlc(self, request: Request) -> None:
        hlc = request.common.hlc
        if hlc is None:
            return
        try:
            # A stamp too far ahead is served without being merged, never refused: a client
            # carrying a faulty node's stamp must not be locked out of every node.
            if not self.clock.observe(hlc):
                self.counters["client_hlc_ignored"] += 1
        except HlcError as exc:
            raise RequestError(ErrorCode.INVALID_REQUEST, str(exc)) from None

    def _route(self, request: WriteRequest | ReadRequest | WatchRequest) -> int:
        """The hosted shard that serves `request`; WRONG_SHARD if that is none (docs/protocol.md, *Shards*).

        The key's namespace decides; a request naming another shard than its key's was routed
        by an old map. A request without a key (a listing that may span namespaces, an audit)
        names its shard, unless the cluster has only one.
        """
        shard_map = self.shard_map
        asked = request.common.shard
        key = request.routing_key
        if key is not None:
            shard_id = shard_map.shard_of(key)
            if asked is not None and asked != shard_id:
                raise self._wrong_shard(
                    shard_id, f"the namespace of {key!r} is in shard {shard_id}, not {asked}"
                )
        elif asked is not None:
            # The meta shard takes no client key; only a backup reads it (the map, the registry).
            backup = isinstance(request, ReadRequest) and isinstance(request.query, BackupQuery)
            if asked not in self._data_shards and not (backup and asked == META_SHARD):
                raise self._wrong_shard(None, f"there is no data shard {asked}")
            shard_id = asked
        elif len(self._data_shards) == 1:
            shard_id = self._data_shards[0]
        else:
            raise RequestError(
                ErrorCode.INVALID_REQUEST,
                f"this {request.common.op} may span namespaces, which live in {len(self._data_shards)} "
                "shards: send it to each with `shard` and merge the answers (docs/protocol.md, *Shards*)",
            )
        if shard_id not in self.replicas:
            holders = list(shard_map.replicas.get(shard_id, ()))
            raise self._wrong_shard(
                shard_id, f"node {self.node_id} holds no replica of shard {shard_id} (nodes {holders} do)"
            )
        return shard_id

    def _wrong_shard(self, owner: int | None, why: str) -> RequestError:
        self.counters["wrong_shard"] += 1
        epoch = self.shard_map.epoch
        return RequestError(ErrorCode.WRONG_SHARD, f"{why} (map epoch {epoch})", epoch=epoch, shard=owner)

    def _admin(self, request: AdminRequest, sink: ReplySink) -> None:
        common = request.common
        fields: dict[str, object] = {}
        if common.op == "status":
            fields = node_status(self, self._status_replica(common.shard))
        elif common.op == "shard_map":
            fields = self._shard_map_fields(request.sizes)
        self._replies.append(Reply(sink, common.request_id, None, fields))

    def _status_replica(self, asked: int | None) -> Replica | None:
        if asked is not None:
            if asked not in self.replicas:
                raise self._wrong_shard(asked, f"node {self.node_id} holds no replica of shard {asked}")
            return self._touch(self.replicas[asked])
        hosted = [s for s in self._data_shards if s in self.replicas] or sorted(self.replicas)
        return self._touch(self.replicas[hosted[0]]) if hosted else None

    def _shard_map_fields(self, sizes: bool = False) -> dict[str, object]:
        """The map as this node knows it, with the leader it knows of each shard it hosts (and
        with `sizes`, about how many bytes each takes on this node's disk)."""
        shards = []
        for shard_id in self.shard_map.replicas:
            replica = self.replicas.get(shard_id)
            # Founders included: a node without a meta replica learns maps from this answer.
            line = self.shard_map.shard_line(shard_id) | {"leader": None}
            membership = None if replica is None else replica.raft.membership
            if replica is not None and membership is not None:
                # The shard's members now, which a membership change may have moved off the map's.
                line["leader"] = replica.raft.leader_id
                line["members"] = sorted(membership.voters) + sorted(membership.learners)
            if replica is not None and sizes:
                line["bytes"] = self._approximate_bytes(shard_id)
            shards.append(line)
        return {
            **self.shard_map.to_wire(),
            "shards": shards,
            "nodes": [{"id": p.id, "address": p.client_address} for p in self.config.active_peers],
        }

    def _approximate_bytes(self, shard_id: int) -> int | None:
        try:
            return self.storage.approximate_bytes(shard_id, STATE_KINDS)
        except StorageError as exc:  # a read refused (the disk): the map answers without it
            self._drop("size_unknown", "shard %d: its size is unknown: %s", shard_id, exc)
            return None

    def _dispatch(
        self,
        request: WriteRequest | ReadRequest,
        replica: Replica,
        payload: bytes,
        sink: ReplySink,
        forwarded: bool,
    ) -> None:
        common = request.common
        timeout_ms = self.config.requests.request_timeout_ms
        if common.timeout_ms is not None:
            timeout_ms = min(timeout_ms, common.timeout_ms)
        incoming = _Incoming(payload, sink, forwarded, common.request_id, self.now + timeout_ms / 1000)
        if isinstance(request, WriteRequest):
            if not replica.is_leader:
                self._forward(replica, incoming)
                return
            self._refuse_if_stalled()
            fault = clock_fault(self.clock, self.peer_contact, self.now)
            if fault is not None:  # a clock off from its peers' stamps nothing: lead elsewhere
                self.counters["clock_fault_refused_writes"] += 1
                target = replica.hand_off_for_clock_fault()
                to = f"; handing leadership to node {target}" if target is not None else ""
                raise RequestError(ErrorCode.NOT_LEADER, f"{fault}: this node stamps no write{to}")
            command = Command(request.operation, self.clock.now(), common.principal, request.session)
            replica.accept_write(command, sink, common.request_id, incoming.deadline)
        else:
            self._read(replica, request, incoming)

    def _read(self, replica: Replica, request: ReadRequest, incoming: _Incoming) -> None:
        deadline = incoming.deadline
        if request.consistency is Consistency.LINEARIZABLE:
            if not replica.is_leader:
                if isinstance(request.query, BackupQuery):
                    # A whole shard's state may be larger than a peer link carries: the client
                    # asks the leader itself (the reply's leader hint names it).
                    self._refuse_backup_here(replica)
                self._forward(replica, incoming)
                return
            self._refuse_if_stalled()
        elif request.consistency is Consistency.VERSION:
            deadline = min(deadline, self.now + self.config.requests.version_read_wait_ms / 1000)
        replica.accept_read(PendingRead(incoming.sink, request, deadline))
        self._replies.extend(replica.replies)
        replica.replies.clear()

    def _refuse_backup_here(self, replica: Replica) -> None:
        leader = replica.raft.leader_id
        if leader is None:
            raise RequestError(ErrorCode.NO_QUORUM, "no leader is known for this shard right now")
        raise RequestError(ErrorCode.NOT_LEADER, f"node {leader} leads shard {replica.shard_id}: ask it")

    def _refuse_if_stalled(self) -> None:
        if self._stall is not None:
            raise RequestError(ErrorCode.STORAGE, f"this node cannot write to disk: {self._stall.error}")

    def _forward(self, replica: Replica, incoming: _Incoming) -> None:
        """Send a leader-only request on to the leader, once; its reply comes back as a ForwardReply."""
        leader = replica.raft.leader_id
        if leader is None:
            raise RequestError(ErrorCode.NO_QUORUM, "no leader is known for this shard right now")
        sink = incoming.sink
        if incoming.forwarded or not isinstance(sink, ClientSink) or leader == self.node_id:
            raise RequestError(ErrorCode.NOT_LEADER, f"node {leader} leads this shard")
        forward_id = self._next_forward_id
        self._next_forward_id += 1
        self._forwards[forward_id] = _Forwarded(
            sink, incoming.request_id, replica.shard_id, incoming.deadline + FORWARD_GRACE_S
        )
        self._outbox[leader].forwards.append(ForwardRequest(forward_id, replica.shard_id, incoming.payload))

    def _expire_forwards(self, now: float) -> None:
        # Like a replica's deadlines: looked at every EXPIRY_CHECK_S, not scanned every turn.
        if now < self._next_forward_expiry:
            return
        self._next_forward_expiry = now + EXPIRY_CHECK_S
        late = [fid for fid, f in self._forwards.items() if f.deadline <= now]
        for fid in late:
            f = self._forwards.pop(fid)
            error = RequestError(ErrorCode.TIMEOUT, "the leader did not answer the forwarded request in time")
            self._replies.append(Reply(f.sink, f.request_id, f.shard_id, {}, error))

    def _flush_replies(self) -> None:
        for replica in self._touched.values():
            self._replies.extend(replica.replies)
            replica.replies.clear()
        if not self._replies:
            return
        # A clock off from its peers' hands out no stamp.
        stamp = None if clock_fault(self.clock, self.peer_contact, self.now) else self.clock.now()
        now = self._time.monotonic()
        histograms = self.histograms
        for reply in self._replies:
            sink = reply.sink
            if type(sink) is ClientSink:
                histograms.request(sink.op or "unparsed", sink.consistency, now - sink.received_at)
            if isinstance(reply.sink, MapSink):
                self._map_fetch_until = 0.0  # unanswered: the next newer epoch a peer shows asks again
                continue
            if isinstance(reply.sink, MoverSink):
                leader = None  # a local refusal (NOT_LEADER): the leader our replica knows now
                if reply.error is not None and reply.error.code is ErrorCode.NOT_LEADER:
                    local = self.replicas.get(reply.shard_id) if reply.shard_id is not None else None
                    leader = None if local is None else local.raft.leader_id
                self._step_answered(reply.sink, reply.error is None, leader, reply.shard_id)
                continue
            if isinstance(reply.sink, DaemonSink):
                if reply.error is not None:  # _seed_meta writes again after its retry time
                    log.warning("shard %d: the node's own write failed: %s", reply.shard_id, reply.error)
                continue
            payload = self._encode_reply(reply, stamp)
            if isinstance(reply.sink, ClientSink):
                if not self.clients.reply(list(reply.sink.envelope), payload):
                    self.counters["client_reply_dropped"] += 1
            else:
                self._outbox[reply.sink.node_id].forward_replies.append(
                    ForwardReply(reply.sink.forward_id, payload)
                )
        self._replies.clear()
        if self._outbox:
            self._flush_peers()

    def _send_watch_message(self, reply: Reply) -> bool:
        """A watch's message, sent now; False if the client socket refused it (watches.py)."""
        sink = reply.sink
        assert type(sink) is ClientSink
        if self._watch_stamp_at != self.now:  # one stamp a turn, as the turn's replies share one
            self._watch_stamp_at = self.now
            self._watch_stamp = (
                None if clock_fault(self.clock, self.peer_contact, self.now) else self.clock.now()
            )
        return self.clients.reply(list(sink.envelope), self._encode_reply(reply, self._watch_stamp))

    def _encode_reply(self, reply: Reply, stamp: int | None) -> bytes:
        replica = None if reply.shard_id is None else self.replicas.get(reply.shard_id)
        leader_id = replica.raft.leader_id if replica is not None else None
        leader = None
        if leader_id is not None and leader_id in self._client_addresses:
            leader = LeaderHint(leader_id, self._client_addresses[leader_id])
        error = None
        if reply.error is not None:
            error = reply.error.body()
            self.error_replies[reply.error.code.value] += 1
        envelope = ReplyEnvelope(reply.request_id, self.node_id, stamp, leader, error, reply.shard_id)
        return envelope.encode(reply.fields)

    @property
    def storage_error(self) -> str | None:
        return None if self._stall is None else self._stall.error

    def _drop(self, counter: str, fmt: str, *args: object) -> None:
        self.counters[counter] += 1
        count = self.counters[counter]
        if count <= 10 or count % 1000 == 0:  # a flood must not fill the log
            log.warning(fmt + " (%d so far)", *args, count)

    # ------------------------------------------------------------------ lifecycle

    def reconfigure(self, config: NodeConfig) -> None:
        """Run with `config` from the next request on: what SIGHUP may change (reload.py says
        which fields; the caller keeps every other field as the node started with). Peers it
        removes must hold nothing here (peer_changes.py); else the peers stay as they were."""
        changes = plan_peer_changes(self.config.peers, config.peers)
        memberships = {shard: replica.raft.membership for shard, replica in self.replicas.items()}
        blocked = {n: removal_blockers(n, self.shard_map, memberships) for n in changes.removed}
        blocked = {n: shards for n, shards in blocked.items() if shards}
        if blocked:
            for node_id, shards in blocked.items():
                log.error(
                    "SIGHUP: the peers stay as they were: node %d still holds replicas of shards %s "
                    "(move them first: confctl node remove %d)",
                    node_id,
                    shards,
                    node_id,
                )
            config = dataclasses.replace(config, peers=self.config.peers)
            changes = plan_peer_changes(self.config.peers, config.peers)
        self.config = config
        self._peer_limits = dataclasses.replace(config.limits, max_request_bytes=PEER_REQUEST_BYTES)
        if changes.any:
            self._change_peers(changes)

    def _change_peers(self, changes: PeerChanges) -> None:
        for peer in changes.added:
            self.peers.add_peer(peer.id, peer.peer_address)
            log.info("node %d added to the peers (%s)", peer.id, peer.peer_address)
        for node_id in changes.removed:
            self.peers.remove_peer(node_id)
            self._outbox.pop(node_id, None)
            for known in (self.peer_contact, self._peer_incarnations, self._refused_dirs, self._echoes):
                known.pop(node_id, None)
            self._silent.discard(node_id)
            if may_forget_dir(node_id, self.config.initial_voters, self.shard_map):
                try:
                    self.storage.forget_peer_dir(node_id)
                except StorageError as exc:  # it stays known: its id cannot come back for now
                    log.warning("node %d removed from the peers; its dir id stays recorded: %s", node_id, exc)
                    continue
                self._peer_dirs.pop(node_id, None)
                log.info("node %d removed from the peers; its id may come back with a new data dir", node_id)
            else:
                log.info("node %d removed from the peers for good (a shard's first entry names it)", node_id)
        self._client_addresses = self.config.client_addresses
        self._remote_peers = sorted(self.config.remote_peer_addresses)

    def hand_off_leadership(self) -> bool:
        """Before stopping: ask every shard this node leads to move its leadership (docs/architecture.md §8).

        Returns whether any transfer started; `leads_any()` says when they are done.
        """
        started = False
        for replica in self.replicas.values():
            target = replica.hand_off_leadership()
            if target is not None:
                self.nudge(replica.shard_id)
                log.info("shard %d: handing leadership to node %d before stopping", replica.shard_id, target)
                started = True
        return started

    def leads_any(self) -> bool:
        return any(r.is_leader for r in self.replicas.values())

    def close(self) -> None:
        self.peers.close()
        self.clients.close()
        self.storage.close()


def _lost_state_message(node_id: int, refuser: int, dir_id: int) -> str:
    return (
        f"node {refuser} refuses this node: it knew node {node_id} running from another data dir "
        f"(this one, id {dir_id}, is new). A node that lost its data dir must not rejoin under its "
        f"old id: it forgot the votes it cast and the entries it acknowledged. To bring this host "
        f"back, move node {node_id}'s replicas away (confctl drain {node_id}), give the host a new "
        f"node_id with joins = true in every node's config, empty its data dir and start it "
        f"(docs/daemon.md, A node that lost its data dir)"
    )
