"""Leadership transfer (thesis §3.10): catch the target up, TimeoutNow, and give up after a timeout."""

from __future__ import annotations

import pytest

from confmand.raft import Message, NotLeader, ProposalRejected, Role
from confmand.raft.messages import TimeoutNow
from tests.unit.raft_harness import Cluster, of_type

ELECTION_TICKS = 10


def settled() -> Cluster:
    cluster = Cluster.of(election_ticks=ELECTION_TICKS)
    cluster.elect(1)
    cluster.pump()
    return cluster


def test_leader_sends_timeout_now_at_once_to_a_caught_up_target() -> None:
    cluster = settled()
    cluster[1].transfer_leadership(2)
    [timeout_now] = of_type(cluster.drain(1).messages, TimeoutNow)
    assert (timeout_now.dst, timeout_now.term) == (2, 1)


def test_leader_sends_timeout_now_only_once_the_target_has_caught_up() -> None:
    cluster = settled()
    leader = cluster[1]
    cluster.isolate(3)
    for k in range(5):
        leader.propose(b"p%d" % k)
    cluster.pump()
    leader.transfer_leadership(3)
    assert of_type(cluster.drain(1).messages, TimeoutNow) == []
    leader_last_index = leader.last_index
    target_last_index_when_asked: list[int] = []

    def watch(msg: Message) -> bool:
        if isinstance(msg, TimeoutNow):
            target_last_index_when_asked.append(cluster[3].last_index)
        return False

    cluster.heal()
    cluster.drop = watch
    cluster.tick(times=ELECTION_TICKS // 2)
    assert target_last_index_when_asked == [leader_last_index]
    assert cluster[3].role is Role.LEADER


def test_transfer_target_wins_without_waiting_for_an_election_timeout() -> None:
    cluster = settled()
    old = cluster[1]
    term = old.term
    old.transfer_leadership(2)
    cluster.pump()  # no tick: the followers' leader lease does not stop a transfer
    assert cluster.leaders() == [2]
    assert cluster[2].term == term + 1
    assert old.role is Role.FOLLOWER
    assert old.leader_id == 2


def test_proposals_are_rejected_while_a_transfer_is_in_progress() -> None:
    cluster = settled()
    leader = cluster[1]
    cluster.isolate(3)
    leader.transfer_leadership(3)
    last = leader.last_index
    with pytest.raises(ProposalRejected) as rejected:
        leader.propose(b"x")
    assert not isinstance(rejected.value, NotLeader)
    assert rejected.value.leader_hint == 3
    assert leader.last_index == last


def test_transfer_is_abandoned_after_election_ticks() -> None:
    cluster = settled()
    leader = cluster[1]
    cluster.isolate(3)
    leader.transfer_leadership(3)
    cluster.tick(1, 2, times=ELECTION_TICKS - 1)
    still_transferring_to = leader.transferee
    assert still_transferring_to == 3
    with pytest.raises(ProposalRejected):
        leader.propose(b"x")
    cluster.tick(1, 2)
    assert leader.transferee is None
    assert leader.role is Role.LEADER
    leader.propose(b"accepted again")


def test_transfer_to_a_non_voter_is_rejected() -> None:
    cluster = Cluster.of((1, 2, 3), (4,))
    cluster.elect(1)
    with pytest.raises(ProposalRejected):
        cluster[1].transfer_leadership(4)


def test_transfer_asked_of_a_follower_names_the_leader() -> None:
    cluster = settled()
    with pytest.raises(NotLeader) as refused:
        cluster[2].transfer_leadership(3)
    assert refused.value.leader_hint == 1


def test_timeout_now_to_a_leader_is_dropped() -> None:
    cluster = settled()
    leader = cluster[1]
    leader.step(TimeoutNow(0, leader.term, 2, 1))
    assert leader.role is Role.LEADER
    assert leader.dropped["timeout_now_to_leader"] == 1
