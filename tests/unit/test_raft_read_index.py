"""ReadIndex (thesis §6.4): linearizable reads confirmed by a heartbeat round, never by the log."""

from __future__ import annotations

import pytest

from confmand.raft import NotLeader, ReadState, Role
from confmand.raft.messages import AppendEntries, Heartbeat
from tests.unit.raft_harness import Cluster, of_type

ELECTION_TICKS = 10
FIVE = (1, 2, 3, 4, 5)


def settled(voters: tuple[int, ...] = FIVE) -> Cluster:
    cluster = Cluster.of(voters, election_ticks=ELECTION_TICKS)
    cluster.elect(1)
    cluster.pump()
    return cluster


def answer(cluster: Cluster, heartbeats: list[Heartbeat], *followers: int) -> None:
    """Deliver the round to `followers` and their answers back to the leader."""
    cluster.deliver(h for h in heartbeats if h.dst in followers)
    for follower in followers:
        cluster.deliver(cluster.drain(follower).messages)


def test_read_is_answered_only_after_a_majority_acknowledges_a_heartbeat_round() -> None:
    cluster = settled()
    leader = cluster[1]
    commit = leader.commit_index
    leader.read_index(b"r")
    rd = cluster.drain(1)
    assert rd.read_states == []
    heartbeats = of_type(rd.messages, Heartbeat)
    assert sorted(h.dst for h in heartbeats) == [2, 3, 4, 5]
    answer(cluster, heartbeats, 2)
    assert cluster.drain(1).read_states == [], "the leader and one follower are two of five"
    answer(cluster, heartbeats, 3)
    assert cluster.drain(1).read_states == [ReadState(b"r", commit)]


def test_read_index_is_the_commit_index_when_the_read_arrived() -> None:
    cluster = settled()
    leader = cluster[1]
    leader.read_index(b"before")
    _, index = leader.propose(b"x")
    cluster.pump()
    assert leader.commit_index == index
    assert cluster.read_states[1] == [ReadState(b"before", index - 1)]


def test_one_heartbeat_round_serves_every_read_registered_before_it() -> None:
    cluster = settled()
    leader = cluster[1]
    for context in (b"a", b"b", b"c"):
        leader.read_index(context)
    heartbeats = of_type(cluster.drain(1).messages, Heartbeat)
    assert len(heartbeats) == 4, "one round for the three reads"
    assert len({h.read_seq for h in heartbeats}) == 1
    leader.read_index(b"d")  # arrives after the round left: it needs the next one
    answer(cluster, heartbeats, 2, 3, 4, 5)
    rd = cluster.drain(1)
    assert [r.context for r in rd.read_states] == [b"a", b"b", b"c"]
    cluster.deliver(rd.messages)  # the round for "d"
    cluster.pump()
    assert [r.context for r in cluster.read_states[1]] == [b"a", b"b", b"c", b"d"]


def test_answers_to_an_earlier_round_do_not_confirm_a_later_read() -> None:
    cluster = settled()
    leader = cluster[1]
    leader.read_index(b"a")
    first = of_type(cluster.drain(1).messages, Heartbeat)
    leader.read_index(b"b")
    second = of_type(cluster.drain(1).messages, Heartbeat)
    assert {h.read_seq for h in second} == {first[0].read_seq + 1}
    answer(cluster, first, 2, 3, 4, 5)
    assert [r.context for r in cluster.drain(1).read_states] == [b"a"]
    answer(cluster, second, 2, 3)
    assert [r.context for r in cluster.drain(1).read_states] == [b"b"]


def test_read_waits_until_the_leader_commits_an_entry_of_its_term() -> None:
    cluster = Cluster.of(FIVE, election_ticks=ELECTION_TICKS)
    cluster.drop = lambda m: isinstance(m, AppendEntries)
    leader = cluster.elect(1)
    assert leader.commit_index == 0
    leader.read_index(b"r")
    cluster.tick(1, times=3)  # heartbeat rounds are acknowledged, but the no-op is not committed
    assert cluster.read_states[1] == []
    cluster.heal()
    for _ in range(ELECTION_TICKS):
        if cluster.read_states[1]:
            break
        cluster.tick(1)
    assert cluster.read_states[1] == [ReadState(b"r", 1)]


def test_leader_that_lost_its_quorum_never_answers_a_read() -> None:
    cluster = settled((1, 2, 3))
    leader = cluster[1]
    cluster.isolate(1)
    leader.read_index(b"r")
    cluster.tick(1, times=3 * ELECTION_TICKS)
    assert leader.role is Role.FOLLOWER
    with pytest.raises(NotLeader):
        leader.read_index(b"again")
    cluster.heal()
    cluster.tick(times=5 * ELECTION_TICKS)
    assert cluster.read_states[1] == [], "a read pending at step-down is abandoned, never answered"


def test_deposed_leader_does_not_answer_a_read_with_a_stale_commit_index() -> None:
    cluster = settled((1, 2, 3))
    old = cluster[1]
    cluster.isolate(1)
    old.read_index(b"stale?")
    cluster.drain(1)
    new = cluster[2]
    new.campaign(transfer=True)
    cluster.pump()
    assert new.role is Role.LEADER
    new.propose(b"written after the read arrived at the old leader")
    cluster.pump()
    cluster.heal()
    cluster.tick(1, 2, 3, times=3)
    assert cluster.read_states[1] == []
    assert old.role is Role.FOLLOWER


def test_single_voter_answers_a_read_at_once() -> None:
    cluster = Cluster.of((1,))
    leader = cluster.elect(1)
    assert leader.commit_index == 1
    leader.read_index(b"r")
    rd = cluster.drain(1)
    assert rd.read_states == [ReadState(b"r", 1)]
    assert rd.messages == []


def test_follower_refuses_a_read_and_names_the_leader() -> None:
    cluster = settled()
    with pytest.raises(NotLeader) as refused:
        cluster[3].read_index(b"r")
    assert refused.value.leader_hint == 1
