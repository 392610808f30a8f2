"""Leaving a shard (docs/raft.md, *Leaving a shard*): a removed replica learns it, and only then.

A replica is `removed` (the driver may delete it) once a member tells it that a committed
membership leaves it out and its own log holds no membership that could be newer. Members say so
(Removed) in answer to any message from a node outside their committed membership; a replica
that is no voter and hears no leader asks (StaleCheck); a removed voter's campaign asks for it.
"""

from __future__ import annotations

from confmand.raft import MembershipChange, MembershipChangeKind, RaftNode, Role
from confmand.raft.messages import AppendEntries, Removed, RequestVote, RequestVoteResponse, StaleCheck
from confmand.raft.storage import MemoryStorage
from confmand.raft.types import HardState, Snapshot, SnapshotMeta
from tests.unit.raft_harness import Cluster, membership, of_type

ELECTION_TICKS = 10
ADD_LEARNER = MembershipChangeKind.ADD_LEARNER
REMOVE = MembershipChangeKind.REMOVE


def settled(voters: tuple[int, ...] = (1, 2, 3), learners: tuple[int, ...] = ()) -> Cluster:
    cluster = Cluster.of(voters, learners, election_ticks=ELECTION_TICKS)
    cluster.elect(1)
    cluster.pump()
    return cluster


def removed(node: RaftNode) -> bool:
    """Read through a call: mypy would otherwise narrow the property across a tick."""
    return node.removed


def remove(cluster: Cluster, node: int) -> int:
    _, index = cluster[1].propose_membership(MembershipChange(REMOVE, node))
    cluster.pump()
    return index


def test_voter_that_missed_its_removal_is_told_when_it_campaigns() -> None:
    cluster = settled()
    index = remove(cluster, 3)
    assert cluster[3].membership == membership((1, 2, 3)), "the leader stopped sending to it at once"
    cluster.tick(3, times=2 * ELECTION_TICKS)
    told = of_type(cluster.delivered, Removed)
    assert [(m.src, m.dst) for m in told] == [(1, 3), (2, 3)]
    assert min(m.commit_index for m in told) >= index, "each names a point where the removal is committed"
    assert removed(cluster[3])
    assert not removed(cluster[1])
    assert not removed(cluster[2])


def test_removed_learner_asks_and_is_told() -> None:
    cluster = settled(learners=(4,))
    remove(cluster, 4)
    cluster.tick(4, times=2 * ELECTION_TICKS)
    assert removed(cluster[4])


def test_leader_that_removed_itself_steps_down_then_learns_it_is_removed() -> None:
    cluster = settled()
    remove(cluster, 1)
    assert cluster[1].role is Role.FOLLOWER
    assert not removed(cluster[1])
    sent_before = len(cluster.delivered)
    cluster.tick(times=3 * ELECTION_TICKS)
    assert removed(cluster[1])
    assert {type(m) for m in cluster.delivered[sent_before:] if m.src == 1} == {StaleCheck}
    [leader] = cluster.leaders()
    assert cluster[leader].membership == membership((2, 3))


def test_a_member_asking_is_never_told_it_is_removed() -> None:
    cluster = settled(learners=(4,))
    cluster[4].check_membership()
    cluster.pump()
    assert len(of_type(cluster.delivered, StaleCheck)) == 3
    assert of_type(cluster.delivered, Removed) == []
    assert not removed(cluster[4])


def test_no_one_is_told_removed_while_the_removal_may_still_be_undone() -> None:
    cluster = settled()
    cluster.isolate(2)
    leader = cluster[1]
    _, index = leader.propose_membership(MembershipChange(REMOVE, 3))
    cluster.pump()
    assert leader.commit_index < index, "{1, 2} must both hold the removal to commit it"
    cluster[3].check_membership()
    cluster.pump()
    assert of_type(cluster.delivered, Removed) == []
    assert not removed(cluster[3])


def test_replica_holding_a_newer_membership_than_the_teller_stays() -> None:
    """Node 2 lags: it knows 3's removal committed, not 3's return as a learner after it."""
    cluster = settled()
    remove(cluster, 3)
    cluster.cut |= {(1, 2)}
    cluster[1].propose_membership(MembershipChange(ADD_LEARNER, 3))
    cluster.pump()
    assert cluster[3].membership == membership((1, 2), (3,))
    assert cluster[2].membership == membership((1, 2))
    cluster[3].check_membership()
    cluster.pump()
    assert [m.src for m in of_type(cluster.delivered, Removed)] == [2], "the lagging member tells it"
    assert not removed(cluster[3])
    assert cluster[3].dropped["removed_but_newer_membership"] == 1


def test_empty_replica_started_by_a_stale_message_is_told_removed() -> None:
    cluster = settled()
    remove(cluster, 3)
    late = AppendEntries(0, cluster[1].term, 1, 4, 0, 0, (), 0)  # sent before 4 was ever a member
    empty = cluster.add(4)
    cluster.deliver([late])
    cluster.pump()
    assert empty.membership is None
    assert [m.dst for m in of_type(cluster.delivered, Removed)] == [4]
    assert removed(empty)


def test_empty_replica_asks_the_leader_it_last_heard() -> None:
    cluster = settled()
    empty = cluster.add(4)
    cluster.cut |= {(4, 1)}  # its answer to the stray append is lost
    cluster.deliver([AppendEntries(0, cluster[1].term, 1, 4, 0, 0, (), 0)])
    cluster.pump()
    cluster.heal()
    cluster.tick(4, times=2 * ELECTION_TICKS)
    assert [m.dst for m in of_type(cluster.delivered, StaleCheck)] == [1]
    assert removed(empty)


def test_removed_replica_sends_nothing_and_never_campaigns() -> None:
    cluster = settled()
    remove(cluster, 3)
    cluster.tick(3, times=2 * ELECTION_TICKS)
    assert removed(cluster[3])
    sent_before = len(cluster.delivered)
    cluster.tick(times=5 * ELECTION_TICKS)
    assert [m for m in cluster.delivered[sent_before:] if m.src == 3] == []
    assert not of_type(cluster.delivered[sent_before:], RequestVote)


def test_removed_changes_no_term_and_is_final() -> None:
    cluster = settled()
    follower = cluster[2]
    term = follower.term
    follower.step(Removed(0, term + 5, 1, 2, 1, 1))
    assert follower.term == term
    assert removed(follower)
    cluster.tick(2, times=3 * ELECTION_TICKS)
    assert follower.role is Role.FOLLOWER
    assert removed(follower)


def test_deposed_leader_whose_newer_membership_conflicts_with_the_committed_log_is_removed() -> None:
    """Its own membership entry is newer, but its log differs at the removal's index: all it holds
    from there on is uncommitted and would be truncated."""
    cluster = settled()
    cluster.isolate(1)
    old = cluster[1]
    old.propose(b"lost 1")
    old.propose(b"lost 2")
    _, mine = old.propose_membership(MembershipChange(ADD_LEARNER, 5))
    cluster.pump()
    cluster.tick(2, 3, times=3 * ELECTION_TICKS)
    [leader] = [n for n in cluster.leaders() if n != 1]
    _, index = cluster[leader].propose_membership(MembershipChange(REMOVE, 1))
    cluster.pump()
    assert old.members.latest_index == mine > index
    cluster.tick(1, times=2 * ELECTION_TICKS)  # CheckQuorum: alone, it steps down
    assert old.role is Role.FOLLOWER
    cluster.heal()
    old.check_membership()
    cluster.pump()
    assert removed(old)


def test_a_replica_with_no_state_grants_no_vote() -> None:
    """As a node whose disk was lost (or whose replica was deleted), it could elect a leader that
    lacks entries it had acknowledged."""
    cluster = settled()
    empty = cluster.add(4)
    for pre_vote in (True, False):
        empty.step(RequestVote(0, 9, 1, 4, 0, 0, pre_vote))
    answers = of_type(cluster.drain(4).messages, RequestVoteResponse)
    assert [a.vote_granted for a in answers] == [False, False]


def test_a_replica_started_again_after_its_deletion_votes_only_with_a_membership_from_after_it() -> None:
    """Node 3 left at index `left` and was deleted; started again (its term kept) holding an old
    membership that still counts it, it grants no vote until it holds one from after `left`."""
    cluster = settled()
    left = remove(cluster, 3)
    old = Snapshot(SnapshotMeta(0, 0, membership((1, 2, 3))), b"")
    again = cluster.add(3, MemoryStorage(HardState(cluster[3].term), old, []), rejoin_after=left)
    again.step(RequestVote(0, again.term + 1, 2, 3, 99, again.term, pre_vote=True))
    refused = of_type(cluster.drain(3).messages, RequestVoteResponse)
    cluster[1].propose_membership(MembershipChange(ADD_LEARNER, 3))
    cluster.pump()
    assert again.members.latest_index > left
    cluster.cut |= {(1, 3)}
    cluster.tick(3, times=ELECTION_TICKS)  # its lease from leader 1 runs out
    again.step(RequestVote(0, again.term + 1, 2, 3, 99, again.term, pre_vote=True))
    granted = of_type(cluster.drain(3).messages, RequestVoteResponse)
    assert [v.vote_granted for v in refused] == [False]
    assert [v.vote_granted for v in granted] == [True]


def test_knowing_no_member_nor_leader_it_asks_the_nodes_the_driver_names() -> None:
    cluster = settled()
    empty = cluster.add(4)
    empty.check_membership(fallback=(1, 4))
    cluster.pump()
    assert [m.dst for m in of_type(cluster.delivered, StaleCheck)] == [1]
    assert removed(empty)
    assert empty.removed_at == cluster[1].commit_index
