"""The whole-daemon checker cannot pass silently: each promise, broken by hand, is reported.

Each case runs a calm cluster of real nodes for a while (seed 0: the calm
profile), breaks one fact the checker looks at, and shows the checker the
next turn. The fault-switch tier proves the same from the other side: real
bugs, caught by these checks.
"""

from __future__ import annotations

import pytest

from confmand.raft import RaftNode, Role
from tests.sim.checks import ShardChecker, Violation
from tests.sim.engine import Simulation
from tests.sim.host import SimHost
from tests.sim.scenario import Scenario

pytestmark = pytest.mark.sim

CALM_SEED = 0

DATA_SHARD = 1  # the data shard whose facts the cases break


class _Running(Simulation):
    """A simulation stopped after `until_s` of its faulty part, to be inspected and broken."""

    def start(self, until_s: float = 2.0) -> None:
        for host in self.active:
            self._start(host)
        for process in range(1, self.scenario.clients + 1):
            self._add_client(process).start()
        self.world.run_until(until_s)

    def leader(self) -> SimHost:
        leader = self._leader()
        assert leader is not None
        assert leader.node is not None
        return leader

    def follower(self) -> SimHost:
        leader = self.leader()
        return next(h for h in self.active if h is not leader and h.node is not None)

    @property
    def data(self) -> ShardChecker:
        """The checker of the data shard, whose facts the cases break."""
        return self.checker.shard(DATA_SHARD)

    def show(self, host: SimHost) -> Violation:
        with pytest.raises(Violation) as caught:
            self.checker.after_turn(host, self.world.now)
        return caught.value


def running() -> _Running:
    scenario = Scenario.from_seed(CALM_SEED)
    assert scenario.profile == "calm"
    sim = _Running(scenario)
    sim.start()
    assert sim.checker.commit_max > 5
    return sim


def raft_of(host: SimHost) -> RaftNode:
    assert host.node is not None
    return host.node.replicas[DATA_SHARD].raft


def test_a_second_leader_in_a_term_breaks_election_safety() -> None:
    sim = running()
    follower, term = sim.follower(), raft_of(sim.leader()).term
    raft = raft_of(follower)
    raft.role, raft.term = Role.LEADER, term
    assert sim.show(follower).invariant == "election safety"


def test_a_second_vote_in_a_term_is_reported_across_restarts() -> None:
    sim = running()
    follower = sim.follower()
    raft = raft_of(follower)
    assert raft.vote is not None
    raft.vote = next(h.id for h in sim.active if h.id != raft.vote)
    assert sim.show(follower).invariant == "one vote per term"


def test_a_stale_leader_need_not_hold_what_a_later_terms_leader_committed() -> None:
    sim = running()
    leader = sim.leader()
    beyond = raft_of(leader).log.last_index + 1
    sim.data.committed[beyond] = raft_of(leader).term + 1
    sim.data.max_committed_in[raft_of(leader).term + 1] = beyond
    sim.data._leading.pop(leader.id)
    sim.checker.after_turn(leader, sim.world.now)


def test_a_commit_of_another_term_at_a_committed_index_breaks_the_committed_prefix() -> None:
    sim = running()
    follower = sim.follower()
    index = raft_of(follower).log.commit
    sim.data.committed[index] += 1
    sim.checker.restarted(follower)  # look at its whole committed log again
    assert sim.show(follower).invariant == "committed prefix"


def test_a_disk_overwriting_a_committed_entry_is_reported() -> None:
    sim = running()
    follower = sim.follower()
    index = raft_of(follower).log.commit
    term = sim.data.committed[index]
    follower.overwritten.append((DATA_SHARD, index, term, term + 1))
    assert sim.show(follower).invariant == "no committed entry lost"


def test_a_new_leader_without_the_newest_committed_entry_breaks_leader_completeness() -> None:
    sim = running()
    leader = sim.leader()
    beyond = raft_of(leader).log.last_index + 1
    sim.data.committed[beyond] = raft_of(leader).term - 1
    sim.data.max_committed_in[raft_of(leader).term - 1] = beyond
    sim.data._leading.pop(leader.id)  # as if it had just been elected
    assert sim.show(leader).invariant == "leader completeness"


def test_a_leader_committing_an_earlier_terms_entry_breaks_the_commit_rule() -> None:
    sim = running()
    leader = sim.leader()
    raft = raft_of(leader)
    sim.data._leading[leader.id] = (raft.term + 1, raft.log.commit - 1)
    raft.term += 1  # its own entries are now an earlier term's: its commit just moved onto one
    sim.data.leaders.pop(raft.term, None)
    assert sim.show(leader).invariant == "leader commit rule"


def test_applying_past_the_commit_is_reported() -> None:
    sim = running()
    follower = sim.follower()
    raft_of(follower).log.commit -= 1
    sim.checker.restarted(follower)
    assert sim.show(follower).invariant == "applied <= committed"


class _SecondLeader(Simulation):
    """One second in, a follower of the leader crowns itself in the leader's term."""

    def _run(self) -> None:
        self.world.at(1.0, self._corrupt)
        super()._run()

    def _corrupt(self) -> None:
        leader = self._leader()
        if leader is None:
            self.world.at(self.world.now + 0.1, self._corrupt)
            return
        host = next(h for h in self.active if h is not leader and h.node is not None)
        raft = raft_of(host)
        raft.term = raft_of(leader).term
        raft._become_leader()  # the corruption: no votes were asked
        host.poke()


def test_the_engine_reports_a_corrupted_cluster_with_its_replay_command() -> None:
    result = _SecondLeader(Scenario.from_seed(CALM_SEED)).run()
    assert result.violation is not None
    assert result.violation.invariant == "election safety"
    assert result.violation.at_s >= 1.0
    assert f"replay: .venv/bin/python -m tests.sim.run --seed {CALM_SEED}" in str(result.violation)
