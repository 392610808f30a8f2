"""One simulated replica and its driver: a RaftNode, its disk, its write queue, its state machine.

The driver follows ready.py to the letter, with a disk that can be slow:
- each Ready goes into a FIFO write queue, where it may wait a few steps;
- when its turn comes it is persisted (`MemoryStorage.persist`: snapshot,
  entries, hard state), THEN its messages leave, then the snapshot is
  restored into the state machine and the committed entries applied, then
  read states and outcomes are reported, then `advance()`;
- a crash loses the RaftNode, the state machine and every Ready still in
  the queue (its messages were never sent); the MemoryStorage survives.
  Besides crashes at step boundaries, `DiskFaults` crashes replicas at two
  points inside the protocol: a leader between persisting new entries and
  sending them, and a voter right after its vote left;
- a restart builds a new RaftNode from the MemoryStorage with
  `applied` = the stored snapshot's index, and rebuilds the state machine from
  that snapshot: committed entries after it are handed out again.

After every input it gives the node (`step`, `tick`, a proposal), `observe()`
tells the checker what changed: a new leader, a commit index that moved (and,
on a leader, whether the disks of a majority of its voters hold that entry).
Entries are reported when a Ready hands them out, durable overwrites when
they reach the disk, applied entries as they are applied.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from dataclasses import dataclass, field, replace

from confmand.raft import MemoryStorage, NodeId, RaftConfig, RaftNode, Ready, Role, Snapshot
from confmand.raft.messages import RequestVoteResponse
from tests.sim.invariants import Checker
from tests.sim.machine import KvMachine
from tests.sim.network import Network

_LEADER = Role.LEADER
_SETTLE_LIMIT = 10_000  # Ready rounds in one step before the driver calls it a livelock


@dataclass(slots=True)
class DiskFaults:
    """How the disks of all replicas misbehave (shared; the final phase calms them)."""

    rng: random.Random
    delay_rate: float  # chance a Ready waits in the write queue ...
    delay_max_steps: int  # ... for 1..this many steps
    crash_after_vote_rate: float  # crash right after sending a granted vote
    crash_before_send_rate: float  # a leader crashes after persisting new entries, before sending

    def calm(self) -> None:
        self.delay_rate = self.crash_after_vote_rate = self.crash_before_send_rate = 0.0


@dataclass(slots=True)
class Shared:
    """What every simulated replica of one run shares: the checker, the network, the disks' faults."""

    checker: Checker
    network: Network
    disk_faults: DiskFaults
    stats: Counter[str]
    trace: list[str] | None
    disks: dict[NodeId, MemoryStorage] = field(default_factory=dict)  # every replica's durable state


class SimNode:
    def __init__(self, config: RaftConfig, storage: MemoryStorage, tick_rate: float, shared: Shared) -> None:
        self.id = config.node_id
        self.config = config
        self.storage = storage
        self.tick_rate = tick_rate
        self.checker = shared.checker
        self.network = shared.network
        self.disk_faults = shared.disk_faults
        self.stats = shared.stats
        self.trace = shared.trace
        self.disks = shared.disks
        shared.disks[self.id] = storage
        self.raft: RaftNode | None = None
        self.machine = KvMachine()
        self.queue: deque[tuple[int, Ready]] = deque()  # (step it reaches the disk, Ready), FIFO
        self.restart_step = 0  # when down: the step it comes back
        self.incarnation = 0
        self.tick_debt = 0.0
        self.leader_term = -1  # the term this node was last seen leading
        self.lead_term = self.lead_last = -1  # the last entries it handed out as a leader
        self.seen_commit = 0

    @property
    def up(self) -> bool:
        return self.raft is not None

    @property
    def node(self) -> RaftNode:
        raft = self.raft
        assert raft is not None, f"node {self.id} is down"
        return raft

    # ------------------------------------------------------------------ life cycle

    def start(self, rng: random.Random) -> None:
        """Boot (or reboot) from the disk alone."""
        snapshot = self.storage.snapshot()
        self.machine = KvMachine.decode(snapshot.data) if snapshot else KvMachine()
        if snapshot is not None:
            self.checker.restored(self.id, snapshot.meta, self.machine)
        raft = RaftNode(replace(self.config, applied=self.machine.applied), self.storage, rng)
        self.raft = raft
        self.incarnation += 1
        self.queue.clear()
        self.leader_term = self.lead_term = self.lead_last = -1
        self.seen_commit = raft.log.commit
        self.tick_debt = 0.0

    def crash(self) -> None:
        """Lose everything not on the disk: the node, the state machine, the write queue."""
        self.stats["crash"] += 1
        self.stats["ready_lost"] += len(self.queue)
        self.raft = None
        self.machine = KvMachine()
        self.queue.clear()

    # ------------------------------------------------------------------ inputs

    def observe(self) -> None:
        raft = self.node
        commit = raft.log.commit
        if commit != self.seen_commit:
            self.checker.commit_advanced(self.id, raft.log, self.seen_commit, commit)
            self.seen_commit = commit
            membership = raft.membership
            if raft.role is _LEADER and membership is not None:
                term = raft.log.term_at(commit)
                assert term is not None
                self.checker.commit_durable(self.id, commit, term, membership.voters, self.disks)
        if raft.role is _LEADER and raft.term != self.leader_term:
            self.leader_term = raft.term
            self.stats["elected"] += 1
            if self.trace is not None:
                self.trace.append(f"{self.checker.step} node {self.id} leads term {raft.term}")
            self.checker.leader_elected(self.id, raft.term, raft.log)

    def tick(self) -> None:
        """Advance this node's clock by one step's worth (clock skew: a rate, not always 1)."""
        self.tick_debt += self.tick_rate
        while self.tick_debt >= 1.0:
            self.tick_debt -= 1.0
            self.node.tick()
            self.observe()

    # ------------------------------------------------------------------ the Ready protocol

    def pump(self, now: int) -> bool:
        """Take Readies and persist those whose turn has come; returns True if the node crashed."""
        raft = self.node
        queue = self.queue
        disk = self.disk_faults
        for _ in range(_SETTLE_LIMIT):
            if raft.has_ready():
                rd = raft.ready()
                if rd.entries:
                    self._handed_out(raft, rd)
                due = now
                if disk.delay_rate and disk.rng.random() < disk.delay_rate:
                    due += 1 + int(disk.rng.random() * disk.delay_max_steps)
                if queue and queue[-1][0] > due:
                    due = queue[-1][0]
                queue.append((due, rd))
            elif not queue or queue[0][0] > now:
                return False
            while queue and queue[0][0] <= now:
                if self._persist_and_apply(queue.popleft()[1], now):
                    return True
        raise AssertionError(f"node {self.id}: Readies did not settle within {_SETTLE_LIMIT} rounds")

    def _handed_out(self, raft: RaftNode, rd: Ready) -> None:
        """New entries leave the core: they must fit the cluster's log, and a leader only appends."""
        first = rd.entries[0].index
        prev_term = raft.log.term_at(first - 1)
        assert prev_term is not None
        self.checker.entries_appended(self.id, rd.entries, prev_term)
        if raft.role is _LEADER:
            if raft.term == self.lead_term and first <= self.lead_last:
                self.checker.leader_rewrote(self.id, raft.term, first, self.lead_last)
            self.lead_term, self.lead_last = raft.term, rd.entries[-1].index

    def _persist_and_apply(self, rd: Ready, now: int) -> bool:
        """Steps 1-5 of ready.py for one Ready; returns True if the node crashed on the way."""
        raft = self.node
        storage = self.storage
        disk = self.disk_faults
        if rd.entries and rd.snapshot is None and rd.entries[0].index <= storage.last_index:
            self._check_overwrite(rd)
        storage.persist(rd)
        if rd.messages:
            if (
                disk.crash_before_send_rate
                and rd.entries
                and raft.role is _LEADER
                and disk.rng.random() < disk.crash_before_send_rate
            ):
                # Durable, but nobody heard: the divergent leader suffix of the paper's Figure 8.
                return self._crash_point(now, "after writing its new entries, before sending them")
            self.network.send(rd.messages, now)
            if disk.crash_after_vote_rate:
                for msg in rd.messages:
                    if type(msg) is RequestVoteResponse and msg.vote_granted and not msg.pre_vote:
                        if disk.rng.random() < disk.crash_after_vote_rate:
                            return self._crash_point(now, "right after granting a vote")
                        break
        machine = self.machine
        checker = self.checker
        if rd.snapshot is not None:
            machine = self.machine = KvMachine.decode(rd.snapshot.data)
            checker.restored(self.id, rd.snapshot.meta, machine)
            self.stats["snapshot_installed"] += 1
        for entry in rd.committed_entries:
            if entry.index != machine.applied + 1:
                checker.apply_out_of_order(self.id, machine.applied, entry)
            machine.apply(entry)
            checker.applied(self.id, entry, machine.digest)
        for state in rd.read_states:
            checker.read_answered(self.id, state)
            self.stats["read_answered"] += 1
        for outcome in rd.outcomes:
            checker.outcome(self.id, outcome)
            self.stats[f"outcome_{outcome.status.value}"] += 1
        raft.advance(rd)
        self.observe()
        return False

    def _crash_point(self, now: int, where: str) -> bool:
        if self.trace is not None:
            self.trace.append(f"{now} node {self.id} crashes {where}")
        self.stats["crash_point"] += 1
        self.crash()
        return True

    def _check_overwrite(self, rd: Ready) -> None:
        """The disk drops its log from the Ready's first entry: what it loses must stay on a majority."""
        stored = self.storage.entries
        if not stored:
            return
        new = rd.entries
        first = new[0].index
        lost = 0
        for old in stored[max(first - stored[0].index, 0) :]:
            pos = old.index - first
            if pos < len(new) and new[pos].term == old.term:
                continue  # the same entry (Log Matching), written again
            self.checker.entry_overwritten(
                self.id, old.index, old.term, new[pos].term if pos < len(new) else None, self.disks
            )
            lost += 1
        if lost:
            self.stats["entries_overwritten"] += lost

    # ------------------------------------------------------------------ compaction

    def snapshot(self) -> bool:
        """Snapshot the state machine at its applied index and compact the log behind it."""
        raft = self.node
        index = self.machine.applied
        log = raft.log
        if index <= log.snapshot_index or index > log.stable:
            return False
        try:
            meta = raft.snapshot_meta(index)
        except ValueError:  # a joiner that has not yet applied an entry naming its membership
            self.stats["snapshot_refused"] += 1
            return False
        self.storage.save_snapshot(Snapshot(meta, self.machine.encode()))
        self.storage.compact(index)
        raft.compact(index)
        self.stats["snapshot_taken"] += 1
        return True
