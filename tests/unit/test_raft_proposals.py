"""What a proposer learns: committed at (term, index), dropped, or NotLeader with a hint."""

from __future__ import annotations

import pytest

from confmand.raft import NotLeader, ProposalOutcome, ProposalRejected, ProposalStatus, Role
from tests.unit.raft_harness import Cluster

ELECTION_TICKS = 10
COMMITTED = ProposalStatus.COMMITTED
DROPPED = ProposalStatus.DROPPED


def settled() -> Cluster:
    cluster = Cluster.of(election_ticks=ELECTION_TICKS)
    cluster.elect(1)
    cluster.pump()
    return cluster


def test_proposal_is_reported_committed_at_its_term_and_index() -> None:
    cluster = settled()
    term, index = cluster[1].propose(b"x")
    assert (term, index) == (1, 2)
    cluster.pump()
    assert cluster.outcomes[1] == [ProposalOutcome(1, 2, 2, COMMITTED)]
    assert cluster.applied[1][-1].data == b"x"


def test_batch_of_proposals_is_reported_as_one_range() -> None:
    cluster = settled()
    term, first, last = cluster[1].propose_batch([b"a", b"b", b"c"])
    cluster.pump()
    assert (first, last) == (2, 4)
    assert cluster.outcomes[1] == [ProposalOutcome(term, 2, 4, COMMITTED)]


def test_outcome_is_reported_only_once_the_proposal_commits() -> None:
    cluster = settled()
    cluster.isolate(2)
    cluster.isolate(3)
    cluster[1].propose(b"x")
    cluster.pump()
    assert cluster.outcomes[1] == []


def test_proposal_is_reported_dropped_when_another_entry_commits_at_its_index() -> None:
    cluster = settled()
    old = cluster[1]
    cluster.isolate(1)
    term, index = old.propose(b"lost")
    cluster.pump()
    new = cluster[2]
    new.campaign(transfer=True)
    cluster.pump()
    assert new.role is Role.LEADER
    assert new.log.term_at(index) == new.term, "the new leader's no-op took the index"
    assert cluster.outcomes[1] == [], "overwritten is not yet dropped: nothing committed there yet here"
    cluster.heal()
    cluster.tick(times=3)
    assert old.log.term_at(index) == new.term
    assert cluster.outcomes[1] == [ProposalOutcome(term, index, index, DROPPED)]


def test_partly_overwritten_batch_reports_each_part() -> None:
    cluster = settled()
    old = cluster[1]
    term, first, _ = old.propose_batch([b"a", b"b", b"c"])
    held = cluster.drain(1).messages  # the batch reaches node 2 only
    cluster.deliver(m for m in held if m.dst == 2)
    cluster.isolate(1)
    cluster.pump()
    new = cluster[2]
    new.campaign(transfer=True)  # node 2 holds the whole batch; its no-op follows it
    cluster.pump()
    cluster.heal()
    cluster.tick(times=3)
    assert cluster.outcomes[1] == [ProposalOutcome(term, first, first + 2, COMMITTED)]


def test_follower_rejects_a_proposal_with_not_leader_and_names_the_leader() -> None:
    cluster = settled()
    with pytest.raises(NotLeader) as refused:
        cluster[2].propose(b"x")
    assert refused.value.leader_hint == 1
    assert cluster[2].last_index == 1


def test_replica_that_knows_no_leader_rejects_a_proposal_without_a_hint() -> None:
    cluster = Cluster.of()
    with pytest.raises(NotLeader) as refused:
        cluster[1].propose(b"x")
    assert refused.value.leader_hint is None


def test_empty_batch_is_rejected_and_appends_nothing() -> None:
    cluster = settled()
    with pytest.raises(ProposalRejected):
        cluster[1].propose_batch([])
    assert cluster[1].last_index == 1
