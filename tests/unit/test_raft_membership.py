"""Single-server membership changes (thesis §4.1, §4.2.2): learners, promotion, removal."""

from __future__ import annotations

import pytest

from confmand.raft import (
    EntryKind,
    Membership,
    MembershipChange,
    MembershipChangeKind,
    ProposalRejected,
    Role,
    Snapshot,
)
from confmand.raft.messages import AppendEntries, RequestVote, RequestVoteResponse, StaleCheck
from tests.unit.raft_harness import Cluster, entry, membership, of_type

ELECTION_TICKS = 10
ADD_LEARNER = MembershipChangeKind.ADD_LEARNER
PROMOTE = MembershipChangeKind.PROMOTE
REMOVE = MembershipChangeKind.REMOVE


def change(kind: MembershipChangeKind, node: int) -> MembershipChange:
    return MembershipChange(kind, node)


def settled(voters: tuple[int, ...] = (1, 2, 3), learners: tuple[int, ...] = ()) -> Cluster:
    cluster = Cluster.of(voters, learners, election_ticks=ELECTION_TICKS)
    cluster.elect(1)
    cluster.pump()
    return cluster


def committed_on_leader(cluster: Cluster, data: bytes) -> bool:
    _, index = cluster[1].propose(data)
    cluster.pump()
    return cluster[1].commit_index >= index


def test_added_learner_receives_the_whole_log() -> None:
    cluster = settled()
    cluster[1].propose(b"before the learner")
    cluster.pump()
    learner = cluster.add(4)
    cluster[1].propose_membership(change(ADD_LEARNER, 4))
    cluster.pump()
    assert cluster.log_terms(4) == cluster.log_terms(1)
    assert learner.membership == membership((1, 2, 3), (4,))
    assert learner.commit_index == cluster[1].commit_index
    assert [e.data for e in cluster.applied[4] if e.kind == EntryKind.NORMAL] == [b"before the learner"]


def test_learner_added_after_compaction_catches_up_through_a_snapshot() -> None:
    cluster = Cluster.of(election_ticks=ELECTION_TICKS, snapshot_chunk_bytes=8)
    leader = cluster.elect(1)
    for k in range(5):
        leader.propose(b"p%d" % k)
    cluster.pump()
    snapshot = Snapshot(leader.snapshot_meta(leader.applied_index), b"state through index 6")
    cluster.storages[1].save_snapshot(snapshot)
    leader.compact(snapshot.meta.index)
    learner = cluster.add(4)
    leader.propose_membership(change(ADD_LEARNER, 4))
    cluster.pump()
    cluster.tick(times=3)
    assert cluster.storages[4].latest_snapshot == snapshot
    assert learner.log.snapshot_index == snapshot.meta.index
    assert cluster.log_terms(4) == cluster.log_terms(1)
    assert learner.membership == membership((1, 2, 3), (4,))
    assert learner.commit_index == leader.commit_index


def test_learner_does_not_count_toward_the_commit_quorum() -> None:
    cluster = settled((1, 2), learners=(3,))
    cluster.isolate(2)
    assert not committed_on_leader(cluster, b"x"), "leader and learner are not a majority of {1, 2}"
    assert cluster[3].last_index == cluster[1].last_index, "the learner holds the entry all the same"
    cluster.heal()
    cluster.tick(times=ELECTION_TICKS)
    assert cluster[1].commit_index == cluster[1].last_index


def test_candidate_asks_only_voters_and_a_learners_vote_does_not_count() -> None:
    cluster = Cluster.of((1, 2, 3), (4,))
    candidate = cluster[1]
    candidate.campaign(transfer=True)
    assert {r.dst for r in of_type(cluster.drain(1).messages, RequestVote)} == {2, 3}
    candidate.step(RequestVoteResponse(0, candidate.term, 4, 1, True))
    assert candidate.status().role is Role.CANDIDATE
    candidate.step(RequestVoteResponse(0, candidate.term, 2, 1, True))
    assert candidate.role is Role.LEADER


def test_learner_never_campaigns() -> None:
    cluster = Cluster.of((1, 2, 3), (4,))
    learner = cluster[4]
    for _ in range(10 * ELECTION_TICKS):
        learner.tick()
    assert learner.role is Role.FOLLOWER
    # Hearing no leader, it only asks whether it still belongs (docs/raft.md, *Leaving a shard*).
    assert {type(m) for m in cluster.drain(4).messages} == {StaleCheck}
    learner.campaign()
    assert learner.role is Role.FOLLOWER


def test_replica_that_knows_no_membership_never_campaigns() -> None:
    cluster = Cluster()
    joiner = cluster.add(4)
    for _ in range(10 * ELECTION_TICKS):
        joiner.tick()
    assert joiner.role is Role.FOLLOWER
    assert not joiner.has_ready()


def test_promoted_learner_votes_and_counts_in_the_quorum() -> None:
    cluster = settled(learners=(4,))
    cluster[1].propose_membership(change(PROMOTE, 4))
    cluster.pump()
    assert all(cluster[n].membership == membership((1, 2, 3, 4)) for n in (1, 2, 3, 4))
    cluster.isolate(2)
    cluster.isolate(3)
    assert not committed_on_leader(cluster, b"x"), "two of four voters are no majority"
    cluster.heal()
    cluster.tick(times=ELECTION_TICKS)
    cluster.isolate(3)
    assert committed_on_leader(cluster, b"y"), "1, 2 and the promoted 4 are three of four"


def test_removed_follower_is_neither_counted_nor_sent_to() -> None:
    cluster = settled()
    cluster[1].propose_membership(change(REMOVE, 3))
    cluster.pump()
    assert cluster[1].membership == cluster[2].membership == membership((1, 2))
    assert 3 not in cluster[1].replicator.progress
    sent_before = len(cluster.delivered)
    cluster.isolate(2)
    assert not committed_on_leader(cluster, b"x"), "1 alone is no majority of {1, 2}"
    cluster.heal()
    cluster.tick(1, 2, times=ELECTION_TICKS)
    assert cluster[1].commit_index == cluster[1].last_index
    assert all(m.dst != 3 for m in cluster.delivered[sent_before:])


def test_membership_takes_effect_when_its_entry_is_appended_not_when_committed() -> None:
    cluster = settled()
    leader = cluster[1]
    leader.propose_membership(change(ADD_LEARNER, 4))
    assert leader.membership == membership((1, 2, 3), (4,))
    [to_2] = [m for m in of_type(cluster.drain(1).messages, AppendEntries) if m.dst == 2]
    cluster.deliver([to_2])
    follower = cluster[2]
    assert follower.commit_index < follower.last_index
    assert follower.membership == membership((1, 2, 3), (4,))


def test_removed_leader_replicates_until_its_removal_commits_then_steps_down() -> None:
    cluster = settled()
    leader = cluster[1]
    _, index = leader.propose_membership(change(REMOVE, 1))
    appends = of_type(cluster.drain(1).messages, AppendEntries)
    assert sorted(m.dst for m in appends) == [2, 3]
    cluster.deliver(m for m in appends if m.dst == 2)
    cluster.deliver(cluster.drain(2).messages)
    assert leader.status().role is Role.LEADER, "{2, 3} need both to commit; the leader no longer counts"
    assert leader.commit_index < index
    cluster.deliver(m for m in appends if m.dst == 3)
    cluster.deliver(cluster.drain(3).messages)
    assert leader.commit_index == index
    assert leader.role is Role.FOLLOWER


def test_removed_leader_never_campaigns_and_the_rest_elect_a_new_leader() -> None:
    cluster = settled()
    removed = cluster[1]
    removed.propose_membership(change(REMOVE, 1))
    cluster.pump()
    assert removed.role is Role.FOLLOWER
    sent_before = len(cluster.delivered)
    cluster.tick(times=10 * ELECTION_TICKS)
    assert removed.role is Role.FOLLOWER
    assert {type(m) for m in cluster.delivered[sent_before:] if m.src == 1} == {StaleCheck}
    [new_leader] = cluster.leaders()
    assert new_leader in (2, 3)
    assert cluster[new_leader].membership == membership((2, 3))


def test_removed_leader_has_nothing_ready_once_it_stepped_down() -> None:
    cluster = settled()
    removed = cluster[1]
    removed.propose_membership(change(REMOVE, 1))
    cluster.deliver(cluster.drain(1).messages)
    cluster.deliver(cluster.drain(2).messages + cluster.drain(3).messages)
    assert removed.role is Role.FOLLOWER
    cluster.drain(1)  # the removal, committed and applied
    assert not removed.has_ready(), "a driver that loops while has_ready() would spin"


def test_second_change_while_one_is_uncommitted_is_rejected() -> None:
    cluster = settled()
    leader = cluster[1]
    leader.propose_membership(change(ADD_LEARNER, 4))
    last = leader.last_index
    with pytest.raises(ProposalRejected, match="already in progress"):
        leader.propose_membership(change(ADD_LEARNER, 5))
    assert leader.last_index == last
    cluster.pump()
    leader.propose_membership(change(ADD_LEARNER, 5))
    assert leader.membership == membership((1, 2, 3), (4, 5))


def test_change_before_the_leader_committed_an_entry_of_its_term_is_rejected() -> None:
    cluster = Cluster.of()
    cluster.drop = lambda m: isinstance(m, AppendEntries)
    leader = cluster.elect(1)
    assert leader.commit_index < leader.last_index
    with pytest.raises(ProposalRejected, match="not committed an entry of its term"):
        leader.propose_membership(change(ADD_LEARNER, 4))


@pytest.mark.parametrize(
    ("kind", "node"),
    [(ADD_LEARNER, 2), (PROMOTE, 2), (PROMOTE, 9), (REMOVE, 9)],
)
def test_change_that_makes_no_sense_is_rejected(kind: MembershipChangeKind, node: int) -> None:
    cluster = settled()
    with pytest.raises(ProposalRejected):
        cluster[1].propose_membership(change(kind, node))


def test_last_voter_cannot_be_removed() -> None:
    cluster = Cluster.of((1,))
    cluster.elect(1)
    with pytest.raises(ProposalRejected, match="last voter"):
        cluster[1].propose_membership(change(REMOVE, 1))


def test_membership_reverts_when_its_uncommitted_entry_is_truncated() -> None:
    cluster = Cluster.of()
    follower = cluster[3]
    with_learner = Membership(frozenset({1, 2, 3}), frozenset({4}))
    entry_1 = entry(2, 1, with_learner.encode(), EntryKind.MEMBERSHIP)
    follower.step(AppendEntries(0, 2, 1, 3, 0, 0, (entry_1,), 0))
    assert follower.membership == with_learner
    follower.step(AppendEntries(0, 3, 2, 3, 0, 0, (entry(3, 1, kind=EntryKind.NOOP),), 0))
    assert follower.membership == membership((1, 2, 3))
    assert cluster.log_terms(3) == [3]


def test_deposed_leader_membership_reverts_when_the_new_leader_overwrites_it() -> None:
    cluster = settled()
    old = cluster[1]
    cluster.isolate(1)
    old.propose_membership(change(ADD_LEARNER, 4))
    assert old.membership == membership((1, 2, 3), (4,))
    cluster.pump()
    cluster[2].campaign(transfer=True)
    cluster.pump()
    cluster[2].propose(b"overwrites the change")
    cluster.pump()
    cluster.heal()
    cluster.tick(1, 2, 3, times=3)
    assert old.role is Role.FOLLOWER
    assert old.membership == membership((1, 2, 3))
    assert cluster.log_terms(1) == cluster.log_terms(2)
