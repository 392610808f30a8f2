"""One replica of one shard, as a pure state machine: Raft without I/O.

Inputs: `tick()` (time), `step(message)` (the network), `propose*()`,
`read_index()`, `transfer_leadership()` (clients and operators). Output: a
`Ready` (see ready.py for the order the driver must follow), then
`advance(ready)` once the driver has persisted it.

Where the rules of the Raft paper live:
- §5.1 terms, stale-term rejection ............. `step`
- §5.2 elections, randomized timeouts .......... `tick`, `campaign`, `_on_vote_response`
- §9.6 PreVote; §6.2 CheckQuorum, leader lease . `campaign`, `_tick_leader`, `_in_lease`
- §5.3 log replication, conflict hints ......... `_on_append`, `_on_append_response`, replication.py
- §5.4.1 election restriction .................. `_on_request_vote` (RaftLog.is_up_to_date)
- §5.4.2 commit rule (current term only) ....... `maybe_commit`
- §8 no-op on election, ReadIndex .............. `_become_leader`, `read_index`, `_advance_reads`
- §7 snapshots, InstallSnapshot in chunks ..... `_on_install_snapshot`, replication.py
- §6 / thesis §4 membership (single-server) .... `propose_membership`, membership.py
- thesis §3.10 leadership transfer ............. `transfer_leadership`, `_on_timeout_now`
- quiet shards (no ticks while idle) ........... `_maybe_quiesce`, `_on_heartbeat`, `wake`
- leaving a shard (deleting a removed replica) . `_tell_if_removed`, `_on_removed`, `check_membership`

Rules this file keeps:
- A replica never sends a message that promises something (a vote, an
  acknowledgement) before the state behind it is in a Ready the driver
  persists first: all messages leave only through `Ready.messages`.
- The leader counts itself toward a quorum only for entries the driver has
  reported durable (`RaftLog.stable`).
- Nothing here reads a clock, a socket, a file or global randomness.
"""

from __future__ import annotations

import random
from collections import Counter
from itertools import repeat
from typing import cast

from confmand.raft.config import RaftConfig
from confmand.raft.errors import NotLeader, ProposalRejected, ReadyOrderError
from confmand.raft.log import RaftLog
from confmand.raft.membership import MembershipTracker
from confmand.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    Removed,
    RequestVote,
    RequestVoteResponse,
    StaleCheck,
    TimeoutNow,
)
from confmand.raft.proposals import ProposalTracker
from confmand.raft.quorum import VoteResult, quorum_index, vote_result
from confmand.raft.reads import ReadTracker
from confmand.raft.ready import Ready, SoftState
from confmand.raft.replication import Replicator
from confmand.raft.snapshot_receiver import SnapshotReceiver
from confmand.raft.status import NodeStatus, PeerStatus
from confmand.raft.storage import Storage
from confmand.raft.types import (
    Entry,
    EntryKind,
    HardState,
    Membership,
    MembershipChange,
    NodeId,
    Role,
    Snapshot,
    SnapshotMeta,
)
from confmand.raft.validate import check_message

_new_entry = tuple.__new__  # builds an Entry without NamedTuple.__new__'s Python frame


class RaftNode:
    def __init__(self, config: RaftConfig, storage: Storage, rng: random.Random) -> None:
        self.config = config
        self.id = config.node_id
        self.shard = config.shard_id
        self.faults = config.faults
        self.rng = rng
        self.storage = storage
        state = storage.initial_state()
        meta = state.snapshot_meta
        hard = state.hard_state
        self.log = RaftLog(meta.index if meta else 0, meta.term if meta else 0, state.entries, hard.commit)
        applied = min(max(config.applied, self.log.snapshot_index), self.log.commit)
        applied_term = self.log.term_at(applied)
        assert applied_term is not None
        self.log.applied = self.log.handed_out = applied
        self.log.applied_term = applied_term
        self.term = hard.term
        self.vote: NodeId | None = hard.vote
        self.members = MembershipTracker(meta.membership if meta else None, self.log.snapshot_index)
        self.members.on_append(MembershipTracker.parse(state.entries))
        self.role = Role.FOLLOWER
        self.leader_id: NodeId | None = None
        self.dropped: Counter[str] = Counter()
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = self._new_election_timeout()
        self._votes: dict[NodeId, bool] = {}
        self._msgs: list[Message] = []
        self.proposals = ProposalTracker()
        self.reads = ReadTracker()
        self._noop_index = 0
        self._transferee: NodeId | None = None
        self._transfer_elapsed = 0
        self._snapshot_to_install: Snapshot | None = None
        self._snapshot_receiver = SnapshotReceiver()
        self._ready_number = 0
        self._advanced_number = 0
        self._last_hard_state = hard
        self._soft_state = SoftState(self.role, self.leader_id)  # the last Ready's (shared: frozen)
        self._quiet = False
        self._removed = False
        self.removed_at = 0  # the teller's commit index, where the membership in force left us out
        self._last_leader: NodeId | None = None
        # The highest commit index a leader has told us of: a follower whose log trails it is
        # catching up even when its own commit index (clamped to its log) shows no lag.
        self._leader_commit = 0
        self.replicator = Replicator(self)

    # ------------------------------------------------------------------ introspection

    @property
    def membership(self) -> Membership | None:
        return self.members.current

    @property
    def commit_index(self) -> int:
        return self.log.commit

    @property
    def known_commit_index(self) -> int:
        """The highest index known committed in this shard: ours, or the most a leader reported."""
        return max(self.log.commit, self._leader_commit)

    @property
    def applied_index(self) -> int:
        """How far the driver has applied the committed log (it moves in `advance`)."""
        return self.log.applied

    @property
    def applied_term(self) -> int:
        return self.log.applied_term

    @property
    def last_index(self) -> int:
        return self.log.last_index

    @property
    def removed(self) -> bool:
        """A member told this replica that a committed membership leaves it out, and its own log
        holds none that could be newer: the replica may be deleted (docs/raft.md, *Leaving a
        shard*). Final: a removed replica never takes part in the shard again."""
        return self._removed

    def is_voter(self) -> bool:
        membership = self.members.current
        return membership is not None and self.id in membership.voters

    def status(self) -> NodeStatus:
        peers = {
            peer: PeerStatus(pr.match, pr.next_index, pr.state.value)
            for peer, pr in self.replicator.progress.items()
        }
        return NodeStatus(
            self.id,
            self.role,
            self.term,
            self.leader_id,
            self.log.commit,
            self.log.applied,
            self.log.last_index,
            self.members.current,
            peers,
        )

    # ------------------------------------------------------------------ time

    @property
    def quiet(self) -> bool:
        """Idle and settled: ticks do nothing until `wake` (docs/raft.md, *Quiet shards*)."""
        return self._quiet

    def wake(self, leader_suspected: bool = False) -> None:
        """Leave the quiet state. `leader_suspected`: the driver lost contact with the leader's node,
        so this follower's lease is over and its election timer runs on from there."""
        if not self._quiet:
            return
        self._quiet = False
        if self.role is Role.LEADER:
            # CheckQuorum counts only peers heard from now on, and the followers wake at once: by
            # the next Ready's append (a proposal woke us) or else its heartbeat.
            self._election_elapsed = 0
            self._heartbeat_elapsed = 0
            self.replicator.forget_activity()
            self.replicator.want_wake_round()
        elif leader_suspected:
            self._end_lease()

    def _end_lease(self) -> None:
        """The leader this follower heard is taken for gone: votes may be granted, its timer runs on."""
        self._quiet = False
        self._election_elapsed = max(self._election_elapsed, self.config.election_ticks)

    def _maybe_quiesce(self) -> bool:
        """Whether this leader may go quiet: nothing in flight, every peer holds the whole log."""
        log = self.log
        return (
            self.config.quiesce
            and self._transferee is None
            and not self.reads.waiting
            and log.commit == log.last_index == log.stable
            and self.members.latest_index <= log.commit
            and self.replicator.all_hold(log.last_index)
        )

    def tick(self) -> None:
        if self._quiet or self._removed:
            return
        if self.role is Role.LEADER:
            self._tick_leader()
            return
        self._election_elapsed += 1
        if self.is_voter():
            if self._election_elapsed >= self._randomized_timeout:
                self._election_elapsed = 0
                self.campaign()
        elif self._election_elapsed >= 2 * self.config.election_ticks:
            # No voter, so no campaign would ever reach a member: ask whether we still belong,
            # again every election timeout until a leader is heard.
            self._election_elapsed = self.config.election_ticks
            self.check_membership()

    def _tick_leader(self) -> None:
        cfg = self.config
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        if self._transferee is not None:
            self._transfer_elapsed += 1
            if self._transfer_elapsed >= cfg.election_ticks:
                self._transferee = None  # the target did not take over in time
        if self._election_elapsed >= cfg.election_ticks:
            self._election_elapsed = 0
            if cfg.check_quorum and not self.replicator.quorum_recently_active():
                self._become_follower(self.term, None)
                return
        self.replicator.tick()
        if self._heartbeat_elapsed >= cfg.heartbeat_ticks:
            self._heartbeat_elapsed = 0
            quiesce = self._maybe_quiesce()
            self.replicator.tick_heartbeat(quiesce)
            self._quiet = quiesce

    def _new_election_timeout(self) -> int:
        ticks = self.config.election_ticks
        return self.rng.randrange(ticks, 2 * ticks)

    def _in_lease(self) -> bool:
        """Heard from a live leader recently: a vote request now would only disrupt it."""
        return (
            self.config.check_quorum
            and self.leader_id is not None
            and self._election_elapsed < self.config.election_ticks
        )

    # ------------------------------------------------------------------ elections

    def campaign(self, transfer: bool = False) -> None:
        """Start an election (with a PreVote round first, unless this is a transfer)."""
        if not self.is_voter() or self.role is Role.LEADER:
            return
        if self.config.pre_vote and not transfer:
            self.role = Role.PRE_CANDIDATE
            self.leader_id = None
            self._request_votes(pre_vote=True, transfer=False)
        else:
            self._become_candidate()
            self._request_votes(pre_vote=False, transfer=transfer)

    def _request_votes(self, pre_vote: bool, transfer: bool) -> None:
        membership = self.members.current
        assert membership is not None  # only voters campaign
        self._votes = {self.id: True}
        if vote_result(membership.voters, self._votes) is VoteResult.WON:
            self._election_won(pre_vote)
            return
        # A pre-vote asks for the term we would campaign in, without moving to it.
        term = self.term + 1 if pre_vote else self.term
        last = self.log.last_index, self.log.last_term
        for voter in sorted(membership.voters - {self.id}):
            self.send(RequestVote(self.shard, term, self.id, voter, *last, pre_vote, transfer))

    def _election_won(self, pre_vote: bool) -> None:
        if pre_vote:
            self._become_candidate()
            self._request_votes(pre_vote=False, transfer=False)
        else:
            self._become_leader()

    def _on_request_vote(self, msg: RequestVote) -> None:
        can_vote = (
            self.vote == msg.src
            or (self.vote is None and self.leader_id is None)
            or (msg.pre_vote and msg.term > self.term)
        )
        log_ok = self.faults.vote_without_log_check or self.log.is_up_to_date(
            msg.last_log_index, msg.last_log_term
        )
        if can_vote and log_ok and self._may_vote():
            if not msg.pre_vote:
                self.vote = msg.src
                self._election_elapsed = 0
            self.send(RequestVoteResponse(self.shard, msg.term, self.id, msg.src, True, msg.pre_vote))
        else:
            self.send(RequestVoteResponse(self.shard, self.term, self.id, msg.src, False, msg.pre_vote))

    def _may_vote(self) -> bool:
        """A replica with no state grants no vote: as a node whose disk was lost, it could elect a
        leader that lacks what it had acknowledged. Nor does one started again after its node
        deleted it, until it holds a membership from after it left (docs/raft.md, *Leaving a
        shard*): an old one may still count it as a voter."""
        if self.members.current is None:
            return False
        rejoin = self.config.rejoin_after
        return rejoin is None or self.members.latest_index > rejoin

    def _on_vote_response(self, msg: RequestVoteResponse) -> None:
        membership = self.members.current
        expected = Role.PRE_CANDIDATE if msg.pre_vote else Role.CANDIDATE
        if self.role is not expected or membership is None:
            return
        self._votes[msg.src] = msg.vote_granted
        result = vote_result(membership.voters, self._votes)
        if result is VoteResult.WON:
            self._election_won(msg.pre_vote)
        elif result is VoteResult.LOST:
            self._become_follower(self.term, None)

    def _become_follower(self, term: int, leader: NodeId | None) -> None:
        if term > self.term:
            self.term = term
            self.vote = None
        self.role = Role.FOLLOWER
        self.leader_id = leader
        self._reset_role_state()

    def _become_candidate(self) -> None:
        self.term += 1
        self.vote = self.id
        self.role = Role.CANDIDATE
        self.leader_id = None
        self._reset_role_state()

    def _become_leader(self) -> None:
        self.role = Role.LEADER
        self.leader_id = self.id
        self._reset_role_state()
        self.replicator.reset(self.members.current)
        # §8: a no-op of the new term lets the leader commit its predecessors' entries.
        self._noop_index = self.log.last_index + 1
        self._append_own([_new_entry(Entry, (self.term, self._noop_index, EntryKind.NOOP, b""))], track=False)

    def _reset_role_state(self) -> None:
        self._quiet = False
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = self._new_election_timeout()
        self._votes = {}
        self._transferee = None
        self.reads.clear()
        self.replicator.clear()

    # ------------------------------------------------------------------ the network

    def step(self, raw: object) -> None:
        """Take one message from a peer; malformed or impossible ones are dropped and counted."""
        reason = check_message(raw, self.id, self.shard)
        if reason is not None:
            self.dropped[reason] += 1
            return
        msg = cast(Message, raw)  # checked above (compiled, the assignment checks the type again)
        if isinstance(msg, Removed):
            self._on_removed(msg)
            return  # says nothing of terms: a removed replica's term no longer matters
        # Before the term rules (a lease drops a removed voter's pre-vote unanswered), and without
        # dropping the message: a node outside our membership may lead one we do not know yet.
        self._tell_if_removed(msg.src)
        if isinstance(msg, StaleCheck):
            membership = self.members.current
            if self.role is Role.LEADER and membership is not None and msg.src in membership.members:
                self.wake()  # a member that hears nothing from a quiet leader: heartbeat it
            return
        if isinstance(msg, RequestVote) and msg.src == self.leader_id and self.role is not Role.LEADER:
            # Our leader campaigns: it lost its leadership (it restarted). Nothing is left to
            # protect with a lease, and a quiet follower would otherwise wait for it forever.
            self._end_lease()
        if self._quiet and self.role is Role.LEADER and isinstance(msg, RequestVote):
            # A peer campaigns: it missed the quiesce heartbeat, or restarted. Waking heartbeats it
            # back into line (the vote itself still meets the lease below).
            self.wake()
        if msg.term > self.term and not self._step_higher_term(msg):
            return
        if msg.term < self.term:
            self._step_lower_term(msg)
            return
        if self._quiet and _wakes(msg):
            self.wake()
        self._dispatch(msg)

    def _step_higher_term(self, msg: Message) -> bool:
        """§5.1: a newer term makes us a follower; returns False if the message is ignored."""
        if isinstance(msg, RequestVote):
            if not msg.transfer and self._in_lease():
                self.dropped["vote_in_lease"] += 1
                return False
            if not msg.pre_vote:
                self._become_follower(msg.term, None)
        elif isinstance(msg, RequestVoteResponse) and msg.pre_vote and msg.vote_granted:
            pass  # a granted pre-vote carries the term we would campaign in
        elif isinstance(msg, AppendEntries | Heartbeat | InstallSnapshot):
            self._become_follower(msg.term, msg.src)
        else:
            self._become_follower(msg.term, None)
        return True

    def _step_lower_term(self, msg: Message) -> None:
        if isinstance(msg, AppendEntries | Heartbeat | InstallSnapshot):
            # A stale leader (back from a partition) learns the newer term and steps down.
            self.send(AppendEntriesResponse(self.shard, self.term, self.id, msg.src, False))
        elif isinstance(msg, RequestVote) and msg.pre_vote:
            self.send(RequestVoteResponse(self.shard, self.term, self.id, msg.src, False, True))
        else:
            self.dropped["stale_term"] += 1

    def _dispatch(self, msg: Message) -> None:
        if isinstance(msg, AppendEntries):
            if self._accept_leader(msg.src):
                self._on_append(msg)
        elif isinstance(msg, AppendEntriesResponse):
            if self._leader_only():
                self.replicator.on_append_response(msg)
        elif isinstance(msg, Heartbeat):
            if self._accept_leader(msg.src):
                self._on_heartbeat(msg)
        elif isinstance(msg, HeartbeatResponse):
            if self._leader_only():
                self.replicator.on_heartbeat_response(msg)
        elif isinstance(msg, RequestVote):
            self._on_request_vote(msg)
        elif isinstance(msg, RequestVoteResponse):
            self._on_vote_response(msg)
        elif isinstance(msg, InstallSnapshot):
            if self._accept_leader(msg.src):
                self._on_install_snapshot(msg)
        elif isinstance(msg, InstallSnapshotResponse):
            if self._leader_only():
                self.replicator.on_snapshot_response(msg)
        elif isinstance(msg, TimeoutNow):
            self._on_timeout_now(msg)

    # ------------------------------------------------------------------ leaving a shard

    def check_membership(self, fallback: tuple[NodeId, ...] = ()) -> None:
        """Ask the members we know (knowing none, the last leader heard, else `fallback`) whether
        this replica still belongs to the shard; one that does not answers Removed. The driver
        calls this for a replica its shard map no longer places here, which may be quiet and
        never ask by itself, with the map's replicas as the fallback."""
        if self.role is Role.LEADER or self._removed:
            return
        membership = self.members.current
        if membership is not None:
            targets = sorted(membership.members - {self.id})
        elif self._last_leader is not None:
            targets = [self._last_leader]
        else:
            targets = sorted(set(fallback) - {self.id})
        for dst in targets:
            self.send(StaleCheck(self.shard, self.term, self.id, dst))

    def _tell_if_removed(self, src: NodeId) -> None:
        """`src` is outside our membership, which is committed: tell it so (Removed), naming our
        commit index, the furthest point of the log we know the membership in force at."""
        membership = self.members.current
        # On every message: two set lookups, no `members` union built.
        if membership is None or src in membership.voters or src in membership.learners:
            return
        log = self.log
        if self.members.latest_index > log.commit:
            return  # the change that left src out may still be undone
        term = log.term_at(log.commit)
        if term is None:
            return
        self.send(Removed(self.shard, self.term, self.id, src, log.commit, term))

    def _on_removed(self, msg: Removed) -> None:
        """Removed for good when our own log holds no membership that could be newer than the
        committed one that left us out: our latest is at or before the teller's commit index, or
        our log is not the committed one there (so every membership we hold from there on is
        uncommitted and will be truncated)."""
        if self._removed:
            return
        latest = self.members.latest_index
        mine = self.log.term_at(msg.commit_index)
        if latest <= msg.commit_index or (mine is not None and mine != msg.commit_term):
            self._removed = True
            self.removed_at = msg.commit_index
            self._quiet = False
            self._msgs.clear()  # nothing more leaves a removed replica
        else:
            self.dropped["removed_but_newer_membership"] += 1

    def _accept_leader(self, src: NodeId) -> bool:
        if self.role is Role.LEADER:
            # Two leaders in one term would break election safety; never obey the other one.
            self.dropped["second_leader_in_term"] += 1
            return False
        if self.role is not Role.FOLLOWER:
            self._become_follower(self.term, src)
        self.leader_id = self._last_leader = src
        self._election_elapsed = 0
        return True

    def _leader_only(self) -> bool:
        if self.role is not Role.LEADER:
            self.dropped["response_not_leader"] += 1
            return False
        return True

    def _on_append(self, msg: AppendEntries) -> None:
        log = self.log
        self._leader_commit = max(self._leader_commit, msg.leader_commit)
        prev, prev_term, entries = msg.prev_log_index, msg.prev_log_term, msg.entries
        if prev < log.commit:
            # Our log matches the leader's through our commit index: skip what we already hold.
            skip = min(log.commit - prev, len(entries))
            entries = entries[skip:]
            prev = log.commit
            prev_term_known = log.term_at(prev)
            assert prev_term_known is not None
            prev_term = prev_term_known
            if not entries:
                self.send(AppendEntriesResponse(self.shard, self.term, self.id, msg.src, True, prev))
                return
        if log.term_at(prev) != prev_term:
            self._reject_append(msg.src, prev)
            return
        pos = log.find_conflict(entries)
        if pos < len(entries):
            new = list(entries[pos:])
            try:
                memberships = MembershipTracker.parse(new)
            except ValueError:
                self.dropped["malformed_membership"] += 1
                return
            if new[0].index <= log.last_index:
                self._truncate(new[0].index)
            log.append(new)
            self.members.on_append(memberships)
        last_new = prev + len(entries)
        commit = min(msg.leader_commit, last_new)
        log.commit = max(log.commit, commit)
        self.send(AppendEntriesResponse(self.shard, self.term, self.id, msg.src, True, last_new))

    def _reject_append(self, leader: NodeId, prev: int) -> None:
        log = self.log
        if prev > log.last_index:
            conflict_index, conflict_term = log.last_index + 1, 0
        else:
            term = log.term_at(prev)
            assert term is not None  # prev >= commit >= snapshot_index
            conflict_index, conflict_term = log.first_index_of_term(prev), term
        self.send(
            AppendEntriesResponse(
                self.shard, self.term, self.id, leader, False, 0, prev, conflict_index, conflict_term
            )
        )

    def _truncate(self, index: int) -> None:
        self.log.truncate_from(index)
        self.members.on_truncate(index)

    def _on_heartbeat(self, msg: Heartbeat) -> None:
        log = self.log
        self._leader_commit = max(self._leader_commit, msg.leader_commit)
        commit = min(msg.leader_commit, log.last_index)
        log.commit = max(log.commit, commit)
        self.send(HeartbeatResponse(self.shard, self.term, self.id, msg.src, msg.read_seq, log.last_index))
        # Quiet only holding exactly the leader's log, all of it committed: anything else needs
        # the leader awake, and this follower's timer then wakes it in time.
        if msg.quiesce and log.last_index == msg.leader_commit == log.commit:
            self._quiet = True

    def _on_install_snapshot(self, msg: InstallSnapshot) -> None:
        if msg.meta.index <= self.log.commit:
            # We hold everything it covers, committed: acknowledge up to our commit instead.
            self._snapshot_receiver.reset()
            self._reply_snapshot(msg, self.log.commit, 0, installed=True)
            return
        result = self._snapshot_receiver.on_chunk(msg)
        if result.snapshot is not None:
            self._restore(result.snapshot)
        self._reply_snapshot(msg, msg.meta.index, result.next_offset, installed=result.snapshot is not None)

    def _reply_snapshot(self, msg: InstallSnapshot, index: int, offset: int, installed: bool) -> None:
        self.send(InstallSnapshotResponse(self.shard, self.term, self.id, msg.src, index, offset, installed))

    def _restore(self, snapshot: Snapshot) -> None:
        meta = snapshot.meta
        if self.log.term_at(meta.index) == meta.term:
            # Our log already holds the snapshot's last entry: it only tells us it is committed.
            self.log.commit = max(self.log.commit, meta.index)
            return
        self.proposals.forget_upto(meta.index)
        self.log.restore(meta.index, meta.term)
        self.members.restore(meta.membership, meta.index)
        self._snapshot_to_install = snapshot

    def _on_timeout_now(self, msg: TimeoutNow) -> None:
        if self.role is Role.LEADER:
            self.dropped["timeout_now_to_leader"] += 1
            return
        self.campaign(transfer=True)

    def send(self, msg: Message) -> None:
        if not self._removed:
            self._msgs.append(msg)

    # ------------------------------------------------------------------ clients

    def propose(self, data: bytes) -> tuple[int, int]:
        """Append one command; returns its (term, index). Raises NotLeader or ProposalRejected."""
        term, first, _ = self.propose_batch((data,))
        return term, first

    def propose_batch(self, commands: list[bytes] | tuple[bytes, ...]) -> tuple[int, int, int]:
        """Append commands as consecutive entries; returns (term, first index, last index)."""
        self._check_can_propose(len(commands))
        self.wake()
        term = self.term
        first = self.log.last_index + 1
        count = len(commands)
        kinds = repeat(EntryKind.NORMAL, count)
        fields = zip(repeat(term, count), range(first, first + count), kinds, commands, strict=True)
        entries = list(map(_new_entry, repeat(Entry, count), fields))
        self._append_own(entries)
        return term, first, first + len(commands) - 1

    def propose_membership(self, change: MembershipChange) -> tuple[int, int]:
        """One single-server change (see docs/raft.md); returns the (term, index) of its entry."""
        self._check_can_propose(1)
        self.wake()
        current = self.members.current
        assert current is not None  # a leader always knows its membership
        if self.members.latest_index > self.log.commit:
            raise ProposalRejected("a membership change is already in progress", self.id)
        if self.log.commit < self._noop_index:
            # Without this, two overlapping single-server changes from successive leaders
            # can produce disjoint majorities (Ongaro's 2015 correction to the thesis).
            raise ProposalRejected("the leader has not committed an entry of its term yet", self.id)
        try:
            new = change.apply_to(current)
        except ValueError as exc:
            raise ProposalRejected(str(exc), self.id) from exc
        index = self.log.last_index + 1
        self._append_own([_new_entry(Entry, (self.term, index, EntryKind.MEMBERSHIP, new.encode()))])
        return self.term, index

    def _check_can_propose(self, count: int) -> None:
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader_id)
        if self._transferee is not None:
            raise ProposalRejected("leadership transfer in progress", self._transferee)
        if count < 1:
            raise ProposalRejected("nothing to propose", self.id)

    def _append_own(self, entries: list[Entry], track: bool = True) -> None:
        self.log.append(entries)
        if entries[-1].kind == EntryKind.MEMBERSHIP:
            self.members.on_append(MembershipTracker.parse(entries))
            self.replicator.membership_changed(self.members.current)
        if track:
            self.proposals.add(self.term, entries[0].index, entries[-1].index)
        self.replicator.want_broadcast()

    def read_index(self, context: bytes) -> None:
        """Ask for a linearizable read; a ReadState with `context` arrives in a later Ready."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader_id)
        self.wake()
        if self.faults.read_index_without_heartbeat:
            self.reads.serve_now(context, self.log.commit)
        elif self.log.commit < self._noop_index:
            self.reads.wait_for_commit(context)
        else:
            self._start_read(context)

    def _start_read(self, context: bytes) -> None:
        if self.replicator.single_voter():
            self.reads.serve_now(context, self.log.commit)
        else:
            self.reads.register(context, self.log.commit)
            self.replicator.want_read_round()

    def transfer_leadership(self, target: NodeId) -> None:
        """Hand leadership to `target` (thesis §3.10); proposals pause until it is done or times out."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader_id)
        membership = self.members.current
        if target == self.id:
            return
        if membership is None or target not in membership.voters:
            raise ProposalRejected(f"node {target} is not a voter", self.id)
        self.wake()
        self._transferee = target
        self._transfer_elapsed = 0
        self.replicator.transfer_to(target)

    def send_timeout_now(self, target: NodeId) -> None:
        self.send(TimeoutNow(self.shard, self.term, self.id, target))

    @property
    def transferee(self) -> NodeId | None:
        return self._transferee

    # ------------------------------------------------------------------ commit

    def maybe_commit(self) -> None:
        """§5.4.2: commit the highest index a majority holds, if it is of the current term."""
        membership = self.members.current
        if membership is None:
            return
        match = self.replicator.match_indexes()
        match[self.id] = self.log.stable
        index = quorum_index(membership.voters, match)
        log = self.log
        if index <= log.commit:
            return
        if log.term_at(index) != self.term and not self.faults.commit_old_term_by_counting:
            return
        log.commit = index
        if index >= self._noop_index:
            for context in self.reads.take_waiting_for_commit():
                self._start_read(context)
        if self.id not in membership.voters and self.members.latest_index <= index:
            # Our own removal is committed: hand over by simply stopping (thesis §4.2.2).
            self._become_follower(self.term, None)
        else:
            self.replicator.commit_advanced()

    # ------------------------------------------------------------------ snapshots

    def snapshot_meta(self, index: int) -> SnapshotMeta:
        """The meta of a snapshot of the state machine taken at applied `index`."""
        if not self.log.snapshot_index <= index <= self.log.applied:
            raise ValueError(
                f"index {index} is outside [{self.log.snapshot_index}, {self.log.applied}] (applied)"
            )
        term = self.log.term_at(index)
        membership = self.members.at(index)
        assert term is not None
        if membership is None:
            # A replica that joined with an empty disk and got the log from index 1 never saw
            # the bootstrap membership; it can snapshot once it has applied a membership entry.
            raise ValueError(f"the membership in force at {index} is unknown to this replica")
        return SnapshotMeta(index, term, membership)

    def compact(self, index: int) -> None:
        """Drop the log through `index`; the driver has stored a snapshot covering it."""
        self.log.compact(index)
        self.members.compact(index)

    # ------------------------------------------------------------------ Ready

    def has_ready(self) -> bool:
        log = self.log
        return bool(
            self._msgs
            or self.reads.ready
            or self._snapshot_to_install
            or log.unstable_from <= log.last_index
            or log.handed_out < log.commit
            or self.replicator.has_pending_sends()
            or self.proposals.resolvable(log.commit)
            or self._hard_state_changed()
        )

    def ready(self) -> Ready:
        # A node hosting many shards makes a Ready per busy shard per loop turn, most of them
        # small: nothing is built here that did not change.
        if self.role is Role.LEADER:
            self.replicator.flush()
        log = self.log
        proposals = self.proposals
        if proposals.resolvable(log.commit):
            proposals.resolve(log.commit, log.term_at)
        hard = None
        if self._hard_state_changed():
            hard = self._last_hard_state = self._hard_state()
        soft = self._soft_state
        if soft.role is not self.role or soft.leader_id != self.leader_id:
            soft = self._soft_state = SoftState(self.role, self.leader_id)
        self._ready_number += 1
        rd = Ready(
            self._ready_number,
            soft,
            hard,
            self._snapshot_to_install,
            log.take_unstable(),
            self._msgs,
            self._take_committed(),
            self.reads.take_ready(),
            proposals.take_outcomes(),
        )
        self._snapshot_to_install = None
        self._msgs = []
        return rd

    def advance(self, rd: Ready) -> None:
        """The driver persisted `rd`; entries it carried now count toward the leader's quorum.

        Every Ready comes back exactly once, in the order handed out: a driver that skips one,
        repeats one or reorders two would count entries durable that are not; that is a bug,
        refused with ReadyOrderError (errors.py).
        """
        if rd.number != self._advanced_number + 1:
            raise ReadyOrderError(
                f"advance of Ready {rd.number}, but Ready {self._advanced_number + 1} is the next to "
                f"come back ({self._ready_number} handed out)"
            )
        self._advanced_number = rd.number
        log = self.log
        if rd.snapshot is not None and rd.snapshot.meta.index > log.applied:
            log.applied, log.applied_term = rd.snapshot.meta.index, rd.snapshot.meta.term
        if rd.committed_entries:
            last = rd.committed_entries[-1]
            log.applied, log.applied_term = last.index, last.term
        if rd.entries:
            last = rd.entries[-1]
            before = self.log.stable
            self.log.stable_to(last.index, last.term)
            if self.role is Role.LEADER and self.log.stable > before:
                self.maybe_commit()

    def _hard_state_changed(self) -> bool:
        last = self._last_hard_state
        vote = None if self.faults.vote_before_persist else self.vote
        return last.term != self.term or last.vote != vote or last.commit != self.log.commit

    def _hard_state(self) -> HardState:
        vote = None if self.faults.vote_before_persist else self.vote
        return HardState(self.term, vote, self.log.commit)

    def _take_committed(self) -> list[Entry]:
        log = self.log
        upto = log.last_index if self.faults.apply_uncommitted else log.commit
        if log.handed_out >= upto:
            return []
        cfg = self.config
        entries = log.slice(log.handed_out + 1, min(upto, log.handed_out + cfg.max_apply_entries) + 1)
        size = 0
        for count, entry in enumerate(entries):
            size += len(entry.data)
            if size > cfg.max_apply_bytes and count:  # the rest in the next Ready (has_ready says so)
                entries = entries[:count]
                break
        log.handed_out = entries[-1].index
        return entries


def _wakes(msg: Message) -> bool:
    """Messages that need the shard awake: a leader's traffic, a campaign, a transfer.

    Answers (to the quiesce heartbeat itself, or late ones) do not wake a quiet leader.
    """
    if isinstance(msg, Heartbeat):
        return not msg.quiesce
    return isinstance(msg, AppendEntries | InstallSnapshot | RequestVote | TimeoutNow)
