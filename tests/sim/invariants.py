"""Raft's safety properties, checked incrementally as the simulated cluster runs.

The driver reports each fact as it happens (a node leads a term, a node's
commit index moves, a Ready carries entries, an entry is applied, a read
is answered, a proposal's outcome arrives) and the checker compares it with
what the whole cluster has seen so far. Every check costs O(1) per entry or
event, so the whole run is checked without ever scanning a log.

What "committed" means here: an index is committed once any replica's commit
index has passed it; the term it holds there is recorded in `committed`, and
the highest such index is `commit_max`. Everything below is relative to that.

- election safety: at most one leader per term, over the whole run;
- leader append-only: a leader hands out new entries only after its last;
- log matching: one (index, term) names one entry, with one term before it
  (a global map checked as entries are appended), which by induction makes
  two logs with a common (index, term) identical up to it;
- leader completeness: a new leader's log holds the entry at `commit_max`;
- durable commit: when a leader commits an index, a majority of its voters
  hold that entry on disk (the promise behind every acknowledged write);
- committed prefix: a replica's commit never passes an index holding another
  term than the one recorded, and no replica's durable log ever overwrites a
  committed entry;
- state-machine safety: only committed entries are applied, in index order,
  and every replica has the same digest after applying through an index;
  a snapshot restores the digest of its index;
- linearizable reads: a ReadState's index is at least `commit_max` as it was
  when `read_index()` was called;
- proposal outcomes: COMMITTED ranges hold the proposal's term in the
  committed log, DROPPED ones another term.

A failure raises `Violation`, naming the invariant, the step and the details.
"""

from __future__ import annotations

from typing import NoReturn

from confmand.raft import (
    Entry,
    MemoryStorage,
    NodeId,
    ProposalOutcome,
    ProposalStatus,
    ReadState,
    SnapshotMeta,
)
from confmand.raft.log import RaftLog
from tests.sim.machine import KvMachine


def disk_holds(disk: MemoryStorage, index: int, term: int) -> bool:
    """Whether the durable log (or its snapshot) holds the entry at `index` of `term`."""
    snapshot = disk.latest_snapshot
    base = snapshot.meta.index if snapshot else 0
    if index <= base:
        return snapshot is not None and (index < base or snapshot.meta.term == term)
    pos = index - base - 1
    return pos < len(disk.entries) and disk.entries[pos].term == term


class Violation(Exception):
    """A broken invariant; `replay` is the one command that replays the run (set by the engine)."""

    def __init__(self, invariant: str, step: int, details: str) -> None:
        super().__init__(invariant, step, details)
        self.invariant = invariant
        self.step = step
        self.details = details
        self.replay = ""

    def __str__(self) -> str:
        text = f"invariant '{self.invariant}' violated at step {self.step}: {self.details}"
        if self.replay:
            text += f"\nreplay: {self.replay}"
        return text


class Checker:
    def __init__(self) -> None:
        self.step = 0
        self.leaders: dict[int, NodeId] = {}  # term -> its one leader
        self.entries: dict[tuple[int, int], tuple[Entry, int]] = {}  # (index, term) -> (entry, prev term)
        self.committed: dict[int, int] = {}  # index -> committed term
        self.commit_max = 0
        self.digests: dict[int, int] = {}  # index -> state-machine digest after applying through it
        self.reads: dict[bytes, int] = {}  # read context -> commit_max when read_index() was called
        # The voters a leader last committed with: a majority of them holds every committed entry.
        self.quorum_voters: frozenset[NodeId] = frozenset()

    def fail(self, invariant: str, details: str) -> NoReturn:
        raise Violation(invariant, self.step, details)

    # ------------------------------------------------------------------ elections

    def leader_elected(self, node: NodeId, term: int, log: RaftLog) -> None:
        holder = self.leaders.setdefault(term, node)
        if holder != node:
            self.fail("election safety", f"nodes {holder} and {node} both lead term {term}")
        index = self.commit_max
        if index == 0:
            return
        want = self.committed[index]
        if log.last_index < index:
            self.fail(
                "leader completeness",
                f"node {node} leads term {term} with last index {log.last_index},"
                f" but {index} (term {want}) is committed",
            )
        have = log.term_at(index)
        if have is None:  # compacted: the snapshot's own point must be the committed one
            index, have = log.snapshot_index, log.snapshot_term
            want = self.committed.get(index, have)
        if have != want:
            self.fail(
                "leader completeness",
                f"node {node} leads term {term} with term {have} at {index}, where term {want} is committed",
            )

    # ------------------------------------------------------------------ the log

    def leader_rewrote(self, node: NodeId, term: int, first: int, last: int) -> NoReturn:
        self.fail(
            "leader append-only",
            f"node {node}, leader of term {term}, hands out entries from {first} after it had {last}",
        )

    def entries_appended(self, node: NodeId, entries: list[Entry], prev_term: int) -> None:
        table = self.entries
        for entry in entries:
            key = (entry.index, entry.term)
            seen = table.get(key)
            if seen is None:
                table[key] = (entry, prev_term)
            elif (seen[0] is not entry and seen[0] != entry) or seen[1] != prev_term:
                self.fail(
                    "log matching",
                    f"node {node} appended {entry!r} after term {prev_term};"
                    f" {key} was {seen[0]!r} after term {seen[1]}",
                )
            prev_term = entry.term

    def commit_advanced(self, node: NodeId, log: RaftLog, old: int, new: int) -> None:
        committed = self.committed
        term_at = log.term_at
        for index in range(max(old + 1, log.snapshot_index), new + 1):
            term = term_at(index)
            if term is None:
                continue
            known = committed.setdefault(index, term)
            if known != term:
                self.fail(
                    "committed prefix never changes",
                    f"node {node} commits {index} with term {term}; term {known} was committed there",
                )
        self.commit_max = max(self.commit_max, new)

    def commit_durable(
        self,
        node: NodeId,
        index: int,
        term: int,
        voters: frozenset[NodeId],
        disks: dict[NodeId, MemoryStorage],
    ) -> None:
        """A leader just committed `index`: a majority of its voters must hold it on disk."""
        holders = [v for v in sorted(voters) if v in disks and disk_holds(disks[v], index, term)]
        if len(holders) <= len(voters) // 2:
            self.fail(
                "durable commit",
                f"node {node} commits {index} (term {term}) but only {holders} of voters"
                f" {sorted(voters)} hold it on disk",
            )
        self.quorum_voters = voters

    def entry_overwritten(
        self,
        node: NodeId,
        index: int,
        old_term: int,
        new_term: int | None,
        disks: dict[NodeId, MemoryStorage],
    ) -> None:
        """A disk is about to lose a committed entry: a majority must still hold it without this one.

        Raft lets a stale leader overwrite a committed entry on a replica that was not
        part of the quorum that committed it (it held the entry from an older leader and
        was cut off meanwhile): that loses nothing. The promise is that the entry stays
        on a majority of the voters, which every later leader's election overlaps.
        """
        if self.committed.get(index) != old_term:
            return
        voters = self.quorum_voters
        others = [
            v for v in sorted(voters) if v != node and v in disks and disk_holds(disks[v], index, old_term)
        ]
        if len(others) <= len(voters) // 2:
            what = "drops" if new_term is None else f"replaces it by term {new_term}"
            self.fail(
                "no committed entry lost",
                f"node {node} {what} committed {index} (term {old_term}) on disk, and only {others}"
                f" of voters {sorted(voters)} still hold it",
            )

    # ------------------------------------------------------------------ the state machine

    def applied(self, node: NodeId, entry: Entry, digest: int) -> None:
        term = self.committed.get(entry.index)
        if term != entry.term:
            what = "no entry" if term is None else f"term {term}"
            self.fail(
                "state-machine safety",
                f"node {node} applies {entry.index} (term {entry.term}); {what} is committed there",
            )
        known = self.digests.setdefault(entry.index, digest)
        if known != digest:
            self.fail(
                "state-machine safety",
                f"node {node} has digest {digest:#x} after {entry.index}; another replica had {known:#x}",
            )

    def apply_out_of_order(self, node: NodeId, applied: int, entry: Entry) -> NoReturn:
        self.fail("state-machine safety", f"node {node} at applied {applied} is handed entry {entry.index}")

    def restored(self, node: NodeId, meta: SnapshotMeta, machine: KvMachine) -> None:
        if machine.applied != meta.index:
            self.fail(
                "state-machine safety",
                f"node {node} restores a snapshot of applied {machine.applied} labelled {meta.index}",
            )
        if meta.index == 0:
            return
        term = self.committed.get(meta.index, meta.term)
        if term != meta.term:
            self.fail(
                "state-machine safety",
                f"node {node} restores a snapshot at {meta.index} term {meta.term}; term {term} is committed",
            )
        known = self.digests.setdefault(meta.index, machine.digest)
        if known != machine.digest:
            self.fail(
                "state-machine safety",
                f"node {node} restores digest {machine.digest:#x} at {meta.index}; replicas had {known:#x}",
            )

    # ------------------------------------------------------------------ clients

    def read_started(self, context: bytes) -> None:
        self.reads[context] = self.commit_max

    def read_refused(self, context: bytes) -> None:
        del self.reads[context]

    def read_answered(self, node: NodeId, state: ReadState) -> None:
        need = self.reads.pop(state.context, None)
        if need is None:
            self.fail("linearizable reads", f"node {node} answers read {state.context!r} nobody asked")
        if state.index < need:
            self.fail(
                "linearizable reads",
                f"node {node} answers read {state.context!r} at index {state.index};"
                f" {need} was already committed when it was asked",
            )

    def outcome(self, node: NodeId, outcome: ProposalOutcome) -> None:
        status = outcome.status
        if status is ProposalStatus.UNKNOWN:
            return
        committed = self.committed
        for index in range(outcome.first_index, outcome.last_index + 1):
            term = committed.get(index)
            if status is ProposalStatus.COMMITTED:
                ok = term == outcome.term
            else:
                ok = term is not None and term != outcome.term
            if not ok:
                self.fail(
                    "proposal outcomes",
                    f"node {node} reports {status.value} for {index} (term {outcome.term});"
                    f" committed there: {term}",
                )

    # ------------------------------------------------------------------ structure

    def log_shape(self, node: NodeId, log: RaftLog) -> None:
        """The RaftLog invariants of log.py (a full scan: called every few hundred steps only)."""
        if (
            not log.applied <= log.handed_out <= log.commit <= log.last_index
            or log.handed_out < log.snapshot_index
        ):
            self.fail(
                "log shape",
                f"node {node}: snapshot {log.snapshot_index} applied {log.applied} handed out "
                f"{log.handed_out} commit {log.commit} last {log.last_index}",
            )
        if log.stable > log.last_index:
            self.fail("log shape", f"node {node}: stable {log.stable} beyond last {log.last_index}")
        prev_index, prev_term = log.snapshot_index, log.snapshot_term
        for entry in log.entries:
            if entry.index != prev_index + 1 or entry.term < prev_term:
                self.fail(
                    "log shape", f"node {node}: {entry.index}/{entry.term} after {prev_index}/{prev_term}"
                )
            prev_index, prev_term = entry.index, entry.term
