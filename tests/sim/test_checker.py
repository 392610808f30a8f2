"""The checker itself cannot pass silently: hand-made violations of each invariant are reported.

Each case feeds `Checker` the facts of a broken history directly; the last
one corrupts a live simulated cluster (a second leader in a term) and checks
that the engine reports it with the command that replays it.
"""

from __future__ import annotations

import pytest

from confmand.raft import (
    Entry,
    EntryKind,
    Membership,
    MemoryStorage,
    ProposalOutcome,
    ProposalStatus,
    ReadState,
    SnapshotMeta,
)
from confmand.raft.log import RaftLog
from tests.sim.engine import Scenario, Simulation, Violation
from tests.sim.invariants import Checker
from tests.sim.machine import KvMachine

pytestmark = pytest.mark.sim

NORMAL = EntryKind.NORMAL


def entry(index: int, term: int, data: bytes = b"k=v") -> Entry:
    return Entry(term, index, NORMAL, data)


def log_of(*terms: int, commit: int = 0) -> RaftLog:
    return RaftLog(0, 0, [entry(i + 1, t) for i, t in enumerate(terms)], commit)


def committed(checker: Checker, *terms: int) -> RaftLog:
    log = log_of(*terms, commit=len(terms))
    checker.commit_advanced(1, log, 0, len(terms))
    return log


def test_two_leaders_in_one_term() -> None:
    checker = Checker()
    checker.leader_elected(1, 3, log_of(1))
    checker.leader_elected(1, 3, log_of(1))  # the same leader, seen again: fine
    with pytest.raises(Violation, match="election safety"):
        checker.leader_elected(2, 3, log_of(1))


def test_one_index_and_term_naming_two_entries() -> None:
    checker = Checker()
    checker.entries_appended(1, [entry(1, 1, b"a=1"), entry(2, 1)], 0)
    checker.entries_appended(2, [entry(1, 1, b"a=1")], 0)
    with pytest.raises(Violation, match="log matching"):
        checker.entries_appended(3, [entry(1, 1, b"a=2")], 0)


def test_one_index_and_term_after_two_different_terms() -> None:
    checker = Checker()
    checker.entries_appended(1, [entry(5, 3)], 2)
    with pytest.raises(Violation, match="log matching"):
        checker.entries_appended(2, [entry(5, 3)], 1)


def test_a_leader_without_a_committed_entry() -> None:
    checker = Checker()
    committed(checker, 1, 1, 2)
    with pytest.raises(Violation, match="leader completeness"):
        checker.leader_elected(2, 3, log_of(1, 1))
    with pytest.raises(Violation, match="leader completeness"):
        checker.leader_elected(3, 4, log_of(1, 1, 3))
    checker.leader_elected(4, 5, log_of(1, 1, 2, 5))


def test_a_committed_index_committed_again_with_another_term() -> None:
    checker = Checker()
    committed(checker, 1, 2)
    other = log_of(1, 3, commit=2)
    with pytest.raises(Violation, match="committed prefix never changes"):
        checker.commit_advanced(2, other, 0, 2)


def test_a_committed_entry_overwritten_on_disk_where_no_majority_keeps_it() -> None:
    checker = Checker()
    committed(checker, 1, 2)
    voters = frozenset({1, 2, 3})
    disks = {v: MemoryStorage.bootstrap(Membership(voters)) for v in voters}
    for v in (1, 2):
        disks[v].append([entry(1, 1), entry(2, 2)])
    checker.commit_durable(1, 2, 2, voters, disks)
    checker.entry_overwritten(2, 3, 2, 3, disks)  # index 3 is not committed: fine
    with pytest.raises(Violation, match="no committed entry lost"):
        checker.entry_overwritten(2, 2, 2, 3, disks)  # only node 1 would keep it


def test_a_committed_entry_overwritten_outside_the_quorum_that_holds_it() -> None:
    """A replica cut off before the commit may lose its copy to a stale leader: a majority keeps it."""
    checker = Checker()
    committed(checker, 1, 2)
    voters = frozenset({1, 2, 3})
    disks = {v: MemoryStorage.bootstrap(Membership(voters)) for v in voters}
    for v in voters:
        disks[v].append([entry(1, 1), entry(2, 2)])
    checker.commit_durable(1, 2, 2, voters, disks)
    checker.entry_overwritten(3, 2, 2, 3, disks)


def test_a_commit_that_a_majority_does_not_hold_on_disk() -> None:
    checker = Checker()
    voters = frozenset({1, 2, 3})
    disks = {v: MemoryStorage.bootstrap(Membership(voters)) for v in voters}
    disks[1].append([entry(1, 1), entry(2, 1)])
    disks[2].append([entry(1, 1), entry(2, 2)])
    checker.commit_durable(1, 1, 1, voters, disks)
    with pytest.raises(Violation, match="durable commit"):
        checker.commit_durable(1, 2, 1, voters, disks)


def test_a_leader_that_rewrites_its_own_entries() -> None:
    with pytest.raises(Violation, match="leader append-only"):
        Checker().leader_rewrote(1, 4, 7, 9)


def test_applying_what_is_not_committed() -> None:
    checker = Checker()
    committed(checker, 1)
    checker.applied(1, entry(1, 1), 7)
    with pytest.raises(Violation, match="state-machine safety"):
        checker.applied(1, entry(2, 1), 8)
    with pytest.raises(Violation, match="state-machine safety"):
        checker.applied(2, entry(1, 1), 9)  # same entry, another digest: the machines diverged


def test_a_snapshot_with_another_digest() -> None:
    checker = Checker()
    committed(checker, 1, 1)
    checker.applied(1, entry(1, 1), 5)
    checker.applied(1, entry(2, 1), 6)
    machine = KvMachine()
    machine.applied, machine.digest = 2, 99
    with pytest.raises(Violation, match="state-machine safety"):
        checker.restored(2, SnapshotMeta(2, 1, Membership(frozenset({1}))), machine)


def test_a_read_older_than_a_commit_it_follows() -> None:
    checker = Checker()
    committed(checker, 1, 1, 1)
    checker.read_started(b"r1")
    checker.read_answered(1, ReadState(b"r1", 3))
    checker.read_started(b"r2")
    with pytest.raises(Violation, match="linearizable reads"):
        checker.read_answered(2, ReadState(b"r2", 2))


def test_outcomes_that_contradict_the_committed_log() -> None:
    checker = Checker()
    committed(checker, 1, 2, 2)
    checker.outcome(1, ProposalOutcome(2, 2, 3, ProposalStatus.COMMITTED))
    checker.outcome(1, ProposalOutcome(1, 2, 3, ProposalStatus.DROPPED))
    with pytest.raises(Violation, match="proposal outcomes"):
        checker.outcome(1, ProposalOutcome(1, 1, 2, ProposalStatus.COMMITTED))
    with pytest.raises(Violation, match="proposal outcomes"):
        checker.outcome(1, ProposalOutcome(2, 3, 3, ProposalStatus.DROPPED))


class _SecondLeader(Simulation):
    """At `at_step`, a follower of the newest leader crowns itself in the leader's term."""

    at_step = 400

    def _step(self, now: int, final: bool) -> None:
        super()._step(now, final)
        if now < self.at_step:
            return
        leaders = self._leaders()
        if not leaders:
            return
        leader = leaders[-1].node
        for sn in self.order:
            raft = sn.raft
            if raft is not None and raft is not leader and raft.term == leader.term:
                raft._become_leader()  # the corruption: no votes were asked
                sn.observe()


def test_the_engine_reports_a_corrupted_cluster_with_its_replay_command() -> None:
    scenario = Scenario.from_seed(3)
    result = _SecondLeader(scenario).run()
    assert result.violation is not None
    assert result.violation.invariant == "election safety"
    assert result.violation.step >= _SecondLeader.at_step
    assert "replay: .venv/bin/python -m tests.sim.run --seed 3" in str(result.violation)
