"""Quiet shards: an idle, settled shard stops ticking, and wakes for any work without losing a promise."""

from __future__ import annotations

from confmand.raft import Role
from confmand.raft.messages import Heartbeat, RequestVote
from tests.unit.raft_harness import Cluster, of_type

ELECTION_TICKS = 10


def settled() -> Cluster:
    cluster = Cluster.of((1, 2, 3), election_ticks=ELECTION_TICKS, quiesce=True)
    cluster.elect(1)
    cluster.pump()
    return cluster


def quiet_cluster() -> Cluster:
    cluster = settled()
    cluster.tick(1)  # the first heartbeat with everything settled is the quiesce heartbeat
    return cluster


def test_an_idle_leader_whose_peers_hold_its_log_goes_quiet_with_them() -> None:
    cluster = quiet_cluster()

    assert [cluster[n].quiet for n in (1, 2, 3)] == [True, True, True]
    cluster.tick(times=5 * ELECTION_TICKS)  # time passes: nothing is sent, nobody campaigns
    assert cluster[1].role is Role.LEADER
    assert not any(cluster[n].has_ready() for n in (1, 2, 3))


def test_a_leader_with_a_peer_behind_stays_awake() -> None:
    cluster = settled()
    cluster.cut |= {(1, 3)}
    cluster[1].propose(b"x")
    cluster.pump()

    cluster.tick(1)

    assert not cluster[1].quiet
    assert not cluster[3].quiet


def test_a_proposal_wakes_the_leader_and_its_append_wakes_the_followers() -> None:
    cluster = quiet_cluster()

    cluster[1].propose(b"x")
    cluster.pump()

    assert [cluster[n].quiet for n in (1, 2, 3)] == [False, False, False]
    assert [cluster[n].commit_index for n in (1, 2, 3)] == [cluster[1].last_index] * 3


def test_a_read_on_a_quiet_leader_still_waits_for_a_heartbeat_round() -> None:
    cluster = quiet_cluster()
    leader = cluster[1]

    leader.read_index(b"r")
    rd = cluster.drain(1)

    assert rd.read_states == []
    assert {h.dst for h in of_type(rd.messages, Heartbeat)} == {2, 3}
    cluster.deliver(rd.messages)
    cluster.pump()
    assert [r.context for r in cluster.read_states[1]] == [b"r"]


def test_a_quiet_follower_whose_leader_is_suspected_campaigns_within_an_election_timeout() -> None:
    cluster = quiet_cluster()
    cluster.isolate(1)

    for follower in (2, 3):
        cluster[follower].wake(leader_suspected=True)
    cluster.tick(2, 3, times=ELECTION_TICKS)

    assert {cluster[n].role for n in (2, 3)} == {Role.LEADER, Role.FOLLOWER}
    assert cluster[2].term == cluster[3].term > cluster[1].term


def test_a_woken_quiet_leader_that_hears_no_quorum_steps_down() -> None:
    cluster = quiet_cluster()
    cluster.isolate(1)

    cluster[1].propose(b"x")
    cluster.tick(1, times=ELECTION_TICKS)

    assert cluster[1].role is Role.FOLLOWER


def test_a_follower_that_missed_the_quiesce_heartbeat_is_brought_back_by_waking_the_leader() -> None:
    cluster = settled()
    cluster.drop = lambda m: isinstance(m, Heartbeat) and m.quiesce and m.dst == 3
    cluster.tick(1)
    cluster.heal()
    assert (cluster[1].quiet, cluster[3].quiet) == (True, False)

    cluster.tick(3, times=2 * ELECTION_TICKS)  # it times out and asks for (pre-)votes

    assert any(isinstance(m, RequestVote) for m in cluster.delivered)
    assert (cluster[1].role, cluster[3].role, cluster[3].leader_id) == (Role.LEADER, Role.FOLLOWER, 1)
    assert cluster[3].term == cluster[1].term


def test_a_quiet_follower_ignores_a_campaign_while_its_leader_lease_holds() -> None:
    cluster = quiet_cluster()
    term = cluster[2].term

    cluster[3].wake(leader_suspected=True)
    cluster.cut |= {(3, 1)}
    cluster.tick(3, times=2 * ELECTION_TICKS)

    assert cluster[2].quiet
    assert cluster[2].term == term
    assert cluster[1].role is Role.LEADER


def test_a_late_quiesce_heartbeat_does_not_quiet_a_follower_that_holds_more_than_it_says() -> None:
    cluster = settled()
    held: list[Heartbeat] = []

    def hold(m: object) -> bool:
        if isinstance(m, Heartbeat) and m.quiesce and m.dst == 2:
            held.append(m)
            return True
        return False

    cluster.drop = hold
    cluster.tick(1)
    cluster.heal()
    cluster[1].propose(b"x")
    cluster.pump()

    cluster.deliver(held)

    assert not cluster[2].quiet


def test_quiet_followers_elect_a_new_leader_when_their_leader_restarts_and_campaigns() -> None:
    cluster = quiet_cluster()
    term = cluster[1].term
    cluster.restart(1)  # its replica comes back a follower with no leader; the others stay quiet

    cluster.tick(1, times=2 * ELECTION_TICKS)

    assert len(cluster.leaders()) == 1
    assert cluster[cluster.leaders()[0]].term > term
