"""Elections (§5.1, §5.2, §5.4.1), PreVote (thesis §9.6), CheckQuorum and the leader lease (thesis §6.2).

One test per rule; each builds the smallest cluster that shows it and drives
it by hand through tests/unit/raft_harness.py.
"""

from __future__ import annotations

import pytest

from confmand.raft import HardState, Role
from confmand.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    RequestVote,
    RequestVoteResponse,
)
from tests.unit.raft_harness import Cluster, of_type, storage_with_log

ELECTION_TICKS = 10


def vote_request(
    term: int, src: int, dst: int, *, last_index: int = 0, last_term: int = 0, transfer: bool = False
) -> RequestVote:
    return RequestVote(0, term, src, dst, last_index, last_term, False, transfer)


def ticks_until_campaign(seed: int) -> int:
    cluster = Cluster.of(seed=seed, election_ticks=ELECTION_TICKS)
    node = cluster[1]
    ticks = 0
    while node.role is Role.FOLLOWER:
        node.tick()
        ticks += 1
        assert ticks < 2 * ELECTION_TICKS, f"seed {seed}: no campaign within 2 * election_ticks"
    return ticks


def test_election_timeout_is_randomized_within_election_ticks_and_twice_that() -> None:
    timeouts = [ticks_until_campaign(seed) for seed in range(60)]
    assert all(ELECTION_TICKS <= t < 2 * ELECTION_TICKS for t in timeouts)
    assert len(set(timeouts)) >= ELECTION_TICKS // 2, "timeouts should spread over the whole range"


def test_election_timeout_is_the_same_for_the_same_seed() -> None:
    assert ticks_until_campaign(7) == ticks_until_campaign(7)


def test_follower_campaigns_once_its_election_timeout_elapses() -> None:
    cluster = Cluster.of(election_ticks=ELECTION_TICKS)
    node = cluster[1]
    for _ in range(ELECTION_TICKS - 1):
        node.tick()
    assert node.role is Role.FOLLOWER
    for _ in range(ELECTION_TICKS):
        node.tick()
    requests = of_type(cluster.drain(1).messages, RequestVote)
    assert sorted(r.dst for r in requests) == [2, 3]


def test_follower_that_hears_from_its_leader_never_campaigns() -> None:
    cluster = Cluster.of(election_ticks=ELECTION_TICKS)
    leader = cluster.elect(1)
    term = leader.term
    cluster.tick(times=10 * ELECTION_TICKS)
    assert cluster.leaders() == [1]
    assert [cluster[n].term for n in (1, 2, 3)] == [term] * 3


def test_pre_candidate_asks_for_the_next_term_without_bumping_its_own_term_or_vote() -> None:
    cluster = Cluster.of()
    node = cluster[1]
    node.campaign()
    assert node.role is Role.PRE_CANDIDATE
    rd = cluster.drain(1)
    assert rd.hard_state is None, "a pre-vote round persists nothing"
    assert (node.term, node.vote) == (0, None)
    requests = of_type(rd.messages, RequestVote)
    assert {(r.dst, r.term, r.pre_vote) for r in requests} == {(2, 1, True), (3, 1, True)}


def test_granting_a_pre_vote_changes_neither_term_nor_vote_of_the_voter() -> None:
    cluster = Cluster.of()
    cluster[1].campaign()
    cluster.deliver(cluster.drain(1).messages)
    voter = cluster[2]
    rd = cluster.drain(2)
    assert (voter.term, voter.vote, rd.hard_state) == (0, None, None)
    [response] = of_type(rd.messages, RequestVoteResponse)
    assert response.vote_granted
    assert response.pre_vote


def test_pre_candidate_becomes_candidate_only_after_a_majority_of_pre_votes() -> None:
    cluster = Cluster.of()
    node = cluster[1]
    node.campaign()
    cluster.deliver(m for m in cluster.drain(1).messages if m.dst == 2)
    cluster.deliver(cluster.drain(2).messages)
    assert node.role is Role.CANDIDATE
    assert (node.term, node.vote) == (1, 1)
    requests = of_type(cluster.drain(1).messages, RequestVote)
    assert {(r.dst, r.term, r.pre_vote) for r in requests} == {(2, 1, False), (3, 1, False)}


def test_candidate_that_wins_a_majority_becomes_leader() -> None:
    cluster = Cluster.of((1, 2, 3, 4, 5))
    node = cluster[1]
    node.campaign(transfer=True)  # skip PreVote: one round of real votes
    requests = cluster.drain(1).messages
    cluster.deliver(m for m in requests if m.dst in (2, 3))
    for voter in (2, 3):
        assert node.role is Role.CANDIDATE
        cluster.deliver(cluster.drain(voter).messages)
    assert node.role is Role.LEADER


def test_candidate_that_a_majority_refuses_returns_to_follower() -> None:
    cluster = Cluster.of()
    node = cluster[1]
    node.campaign(transfer=True)
    cluster.drain(1)
    for voter in (2, 3):
        node.step(RequestVoteResponse(0, node.term, voter, 1, False))
    assert node.role is Role.FOLLOWER
    assert node.term == 1


def test_partitioned_node_rejoining_does_not_disrupt_a_stable_leader() -> None:
    cluster = Cluster.of(election_ticks=ELECTION_TICKS)
    leader = cluster.elect(1)
    term = leader.term
    cluster.isolate(3)
    cluster.tick(times=10 * ELECTION_TICKS)
    assert cluster[3].term == term, "PreVote: a node that cannot win never raises its term"
    cluster.heal()
    cluster.tick(times=3 * ELECTION_TICKS)
    assert cluster.leaders() == [1]
    assert [cluster[n].term for n in (1, 2, 3)] == [term] * 3
    assert cluster[3].leader_id == 1


def test_without_pre_vote_a_rejoining_partitioned_node_does_disrupt_the_leader() -> None:
    """The contrast that shows what PreVote buys (and that the test above can fail)."""
    cluster = Cluster.of(election_ticks=ELECTION_TICKS, pre_vote=False)
    leader = cluster.elect(1)
    term = leader.term
    cluster.isolate(3)
    cluster.tick(times=10 * ELECTION_TICKS)
    assert cluster[3].term > term
    cluster.heal()
    cluster.tick(times=3 * ELECTION_TICKS)
    assert cluster[1].term > term


@pytest.mark.parametrize("ticks_before_partition", [0, 1, ELECTION_TICKS // 2, ELECTION_TICKS])
def test_leader_that_hears_from_no_quorum_for_election_ticks_steps_down(ticks_before_partition: int) -> None:
    """CheckQuorum runs once per election_ticks period: the step-down comes one to two periods after the
    last answer from a quorum, whatever the phase of the period when the partition starts."""
    cluster = Cluster.of(election_ticks=ELECTION_TICKS)
    leader = cluster.elect(1)
    term = leader.term
    cluster.tick(1, times=ticks_before_partition)
    cluster.isolate(1)
    ticks = 0
    while leader.role is Role.LEADER:
        cluster.tick(1)
        ticks += 1
        assert ticks <= 2 * ELECTION_TICKS, "still leading after two CheckQuorum periods alone"
    assert ticks >= ELECTION_TICKS
    assert leader.role is Role.FOLLOWER
    assert leader.term == term, "stepping down is not a new term"


def test_leader_without_check_quorum_keeps_leading_alone() -> None:
    cluster = Cluster.of(election_ticks=ELECTION_TICKS, check_quorum=False)
    leader = cluster.elect(1)
    cluster.isolate(1)
    cluster.tick(1, times=5 * ELECTION_TICKS)
    assert leader.role is Role.LEADER


def test_replica_that_heard_from_its_leader_recently_ignores_a_vote_request() -> None:
    cluster = Cluster.of(election_ticks=ELECTION_TICKS)
    leader = cluster.elect(1)
    follower = cluster[2]
    term = leader.term
    follower.step(vote_request(term + 1, 3, 2, last_index=100, last_term=term))
    assert (follower.term, follower.vote) == (term, 1)
    assert follower.dropped["vote_in_lease"] == 1
    assert of_type(cluster.drain(2).messages, RequestVoteResponse) == []


def test_replica_inside_the_leader_lease_honours_a_vote_request_for_a_leadership_transfer() -> None:
    cluster = Cluster.of(election_ticks=ELECTION_TICKS)
    leader = cluster.elect(1)
    follower = cluster[2]
    term = leader.term
    follower.step(vote_request(term + 1, 3, 2, last_index=100, last_term=term, transfer=True))
    assert (follower.term, follower.vote) == (term + 1, 3)
    [response] = of_type(cluster.drain(2).messages, RequestVoteResponse)
    assert response.vote_granted


def test_replica_votes_again_once_election_ticks_pass_without_a_leader() -> None:
    cluster = Cluster.of(election_ticks=ELECTION_TICKS)
    leader = cluster.elect(1)
    follower = cluster[2]
    term = leader.term
    for _ in range(ELECTION_TICKS):
        follower.tick()
    follower.step(vote_request(term + 1, 3, 2, last_index=100, last_term=term))
    assert (follower.term, follower.vote) == (term + 1, 3)


def test_follower_rejects_append_from_stale_term_and_tells_the_sender_its_term() -> None:
    cluster = Cluster()
    follower = cluster.add(2, storage_with_log((1, 2, 3), [1, 1], term=3))
    follower.step(AppendEntries(0, 2, 1, 2, 2, 1, (), 0))
    [response] = of_type(cluster.drain(2).messages, AppendEntriesResponse)
    assert (response.term, response.success) == (3, False)
    assert follower.last_index == 2
    assert follower.term == 3


def test_stale_leader_steps_down_when_an_answer_carries_a_newer_term() -> None:
    cluster = Cluster.of()
    leader = cluster.elect(1)
    leader.step(AppendEntriesResponse(0, leader.term + 1, 2, 1, False))
    assert leader.role is Role.FOLLOWER
    assert leader.term == 2


def test_vote_request_from_a_stale_term_is_dropped() -> None:
    cluster = Cluster()
    node = cluster.add(1, storage_with_log((1, 2, 3), [], term=5))
    node.step(vote_request(4, 2, 1))
    assert node.dropped["stale_term"] == 1
    assert node.vote is None
    assert cluster.drain(1).messages == []


def test_pre_vote_from_a_stale_term_is_refused_with_the_newer_term() -> None:
    cluster = Cluster()
    node = cluster.add(1, storage_with_log((1, 2, 3), [], term=5))
    node.step(RequestVote(0, 4, 2, 1, 0, 0, True))
    [response] = of_type(cluster.drain(1).messages, RequestVoteResponse)
    assert (response.term, response.vote_granted, response.pre_vote) == (5, False, True)


def test_vote_is_granted_to_at_most_one_candidate_per_term() -> None:
    cluster = Cluster.of()
    node = cluster[1]
    node.step(vote_request(1, 2, 1))
    node.step(vote_request(1, 3, 1))
    node.step(vote_request(1, 2, 1))  # a retry by the candidate it voted for
    responses = of_type(cluster.drain(1).messages, RequestVoteResponse)
    assert [(r.dst, r.vote_granted) for r in responses] == [(2, True), (3, False), (2, True)]
    assert node.vote == 2


@pytest.mark.parametrize(
    ("last_index", "last_term", "granted"),
    [
        (9, 1, False),  # longer, but its last term is older than ours
        (1, 2, False),  # same last term, shorter log
        (2, 2, True),  # same log
        (3, 2, True),  # same last term, longer log
        (1, 3, True),  # newer last term, however short
    ],
)
def test_vote_is_denied_to_a_candidate_whose_log_is_less_up_to_date(
    last_index: int, last_term: int, granted: bool
) -> None:
    cluster = Cluster()
    node = cluster.add(1, storage_with_log((1, 2, 3), [1, 2]))
    node.step(vote_request(3, 2, 1, last_index=last_index, last_term=last_term))
    [response] = of_type(cluster.drain(1).messages, RequestVoteResponse)
    assert response.vote_granted is granted
    assert node.vote == (2 if granted else None)


def test_vote_and_term_are_in_the_hard_state_of_the_ready_that_carries_the_vote() -> None:
    cluster = Cluster.of()
    node = cluster[1]
    node.step(vote_request(5, 2, 1))
    rd = node.ready()
    assert rd.hard_state == HardState(5, 2, 0)
    [response] = of_type(rd.messages, RequestVoteResponse)
    assert response.vote_granted


def test_candidate_term_and_self_vote_are_in_the_ready_that_carries_its_vote_requests() -> None:
    cluster = Cluster.of()
    node = cluster[1]
    node.campaign(transfer=True)
    rd = node.ready()
    assert rd.hard_state == HardState(1, 1, 0)
    assert {r.dst for r in of_type(rd.messages, RequestVote)} == {2, 3}


def test_restarted_replica_remembers_its_term_and_vote() -> None:
    cluster = Cluster.of()
    cluster[1].step(vote_request(5, 2, 1))
    cluster.drain(1)
    restarted = cluster.restart(1)
    assert (restarted.term, restarted.vote) == (5, 2)
    restarted.step(vote_request(5, 3, 1))
    [response] = of_type(cluster.drain(1).messages, RequestVoteResponse)
    assert not response.vote_granted


def test_vote_not_yet_persisted_is_forgotten_by_a_crash_and_was_never_sent() -> None:
    cluster = Cluster.of()
    cluster[1].step(vote_request(5, 2, 1))  # the Ready holding the vote is never taken: a crash
    restarted = cluster.restart(1)
    assert (restarted.term, restarted.vote) == (0, None)
    assert not restarted.has_ready()
