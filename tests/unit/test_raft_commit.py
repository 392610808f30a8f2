"""The commit rule (§5.4.2, Figure 8), the new leader's no-op (§8), and the leader's own durability."""

from __future__ import annotations

from confmand.raft import EntryKind, FaultSwitches, Message, Role
from confmand.raft.messages import AppendEntries
from tests.unit.raft_harness import Cluster, of_type, storage_with_log

VOTERS = (1, 2, 3, 4, 5)


def figure8(faults: FaultSwitches | None = None) -> Cluster:
    """Figure 8 (c) of the paper, built by hand.

    Index 1 (term 1) is committed everywhere. S1 once led term 2 and holds
    (2, 2); S5 led term 3 and holds (3, 2); S2-S4 hold only index 1. S1 wins
    term 4 with the votes of S2 and S3 (S4 and S5 are cut off) and
    replicates (2, 2) to them, one entry per message, while its no-op of
    term 4 is lost wherever it would be accepted. Now (2, 2) is on S1, S2
    and S3: a majority of five.
    """
    config = {"pre_vote": False, "check_quorum": False, "max_append_entries": 1}
    cluster = Cluster(config=config)
    cluster.add(1, storage_with_log(VOTERS, [1, 2], term=3, commit=1), faults=faults or FaultSwitches())
    for node_id in (2, 3, 4):
        cluster.add(node_id, storage_with_log(VOTERS, [1], term=3, commit=1))
    cluster.add(5, storage_with_log(VOTERS, [1, 3], term=3, commit=1))
    cluster.isolate(4)
    cluster.isolate(5)

    def noop_lost(msg: Message) -> bool:
        return (
            isinstance(msg, AppendEntries)
            and any(e.term == 4 for e in msg.entries)
            and cluster[msg.dst].log.term_at(msg.prev_log_index) == msg.prev_log_term
        )

    cluster.drop = noop_lost
    cluster.elect(1)
    assert cluster[1].term == 4
    return cluster


def holders(cluster: Cluster, index: int, term: int) -> list[int]:
    return [n for n, node in cluster.nodes.items() if node.log.term_at(index) == term]


def test_entry_of_an_earlier_term_is_not_committed_by_counting_replicas() -> None:
    cluster = figure8()
    assert holders(cluster, 2, 2) == [1, 2, 3], "a majority of the five holds (2, 2)"
    assert cluster[1].commit_index == 1


def test_an_earlier_term_entry_on_a_majority_can_still_be_overwritten() -> None:
    """Figure 8 (d): why the rule above is needed. S1 crashes; S5 wins term 5 with S2, S3, S4."""
    cluster = figure8()
    cluster.heal()
    cluster.isolate(1)
    s5 = cluster[5]
    s5.campaign()  # term 4: S2 and S3 already voted for S1 in it
    cluster.pump()
    s5.campaign()  # term 5
    cluster.pump()
    assert s5.role is Role.LEADER
    assert holders(cluster, 2, 3) == [2, 3, 4, 5]
    assert s5.commit_index >= 2, "(3, 2) is committed, so (2, 2) never could have been"


def test_entry_of_an_earlier_term_commits_once_an_entry_of_the_current_term_does() -> None:
    """Figure 8 (e): once S1's no-op of term 4 is on a majority, it and (2, 2) before it commit."""
    cluster = figure8()
    cluster.drop = None  # S4 and S5 stay cut off
    leader = cluster[1]
    for _ in range(10):
        if leader.commit_index >= 3:
            break
        cluster.tick(1)
    assert leader.commit_index == 3
    assert [(e.index, e.term) for e in cluster.applied[1]] == [(1, 1), (2, 2), (3, 4)]


def test_figure8_commits_the_old_entry_when_the_commit_rule_is_switched_off() -> None:
    """The fault switch proves the scenario above tells a right core from a wrong one."""
    cluster = figure8(FaultSwitches(commit_old_term_by_counting=True))
    assert cluster[1].commit_index == 2


def test_new_leader_appends_a_noop_of_its_term() -> None:
    cluster = Cluster.of()
    leader = cluster[1]
    leader.campaign()
    while leader.role is not Role.LEADER:
        assert cluster.round()
    rd = cluster.drain(1)
    [noop] = rd.entries
    assert (noop.term, noop.index, noop.kind, noop.data) == (leader.term, 1, EntryKind.NOOP, b"")
    assert all(m.entries == (noop,) for m in of_type(rd.messages, AppendEntries))


def test_new_leader_noop_is_not_reported_as_a_proposal() -> None:
    cluster = Cluster.of()
    cluster.elect(1)
    cluster.pump()
    assert cluster[1].commit_index == 1
    assert cluster.outcomes[1] == []


def test_leader_counts_itself_only_for_entries_the_driver_reported_durable() -> None:
    cluster = Cluster.of()
    leader = cluster.elect(1)
    cluster.pump()
    _, index = leader.propose(b"x")
    rd = leader.ready()  # not persisted yet: the leader may send in parallel with its own write
    cluster.deliver(m for m in rd.messages if m.dst == 2)
    cluster.deliver(cluster.drain(2).messages)
    assert leader.commit_index < index, "one follower alone is no majority of three"
    cluster.storages[1].persist(rd)
    leader.advance(rd)
    assert leader.commit_index == index


def test_leader_commits_without_its_own_write_when_a_majority_of_followers_hold_the_entry() -> None:
    cluster = Cluster.of()
    leader = cluster.elect(1)
    cluster.pump()
    _, index = leader.propose(b"x")
    rd = leader.ready()
    cluster.deliver(rd.messages)
    cluster.deliver(cluster.drain(2).messages + cluster.drain(3).messages)
    assert leader.commit_index == index


def test_single_voter_commits_its_entry_only_after_advance() -> None:
    cluster = Cluster.of((1,))
    leader = cluster.elect(1)
    assert leader.commit_index == 1
    _, index = leader.propose(b"x")
    rd = leader.ready()
    assert leader.commit_index < index
    assert rd.committed_entries == []
    cluster.storages[1].persist(rd)
    leader.advance(rd)
    assert leader.commit_index == index
    assert [e.data for e in cluster.drain(1).committed_entries] == [b"x"]


def test_follower_learns_the_commit_index_from_the_leader() -> None:
    cluster = Cluster.of()
    leader = cluster.elect(1)
    cluster.pump()
    _, index = leader.propose(b"x")
    cluster.pump()
    assert [cluster[n].commit_index for n in (1, 2, 3)] == [index] * 3
