"""Log replication (§5.3): the consistency check, conflict hints, pipelining and flow control."""

from __future__ import annotations

from confmand.raft import Message, Role
from confmand.raft.messages import AppendEntries, AppendEntriesResponse, Heartbeat
from tests.unit.raft_harness import Cluster, entries_of_terms, entry, of_type, storage_with_log

ELECTION_TICKS = 10


def append(
    prev_index: int, prev_term: int, terms: list[int], *, term: int = 3, commit: int = 0, dst: int = 2
) -> AppendEntries:
    """An AppendEntries from leader 1 carrying one entry per term given, right after prev."""
    return AppendEntries(
        0, term, 1, dst, prev_index, prev_term, tuple(entries_of_terms(terms, prev_index + 1)), commit
    )


def follower_with_log(terms: list[int], term: int = 2, commit: int = 0) -> Cluster:
    """Node 2 alone, at `term`, holding one entry per term given."""
    cluster = Cluster()
    cluster.add(2, storage_with_log((1, 2, 3), terms, term=term, commit=commit))
    return cluster


def only_response(cluster: Cluster, node_id: int = 2) -> AppendEntriesResponse:
    [response] = of_type(cluster.drain(node_id).messages, AppendEntriesResponse)
    return response


def appends_to(messages: list[Message], dst: int) -> list[AppendEntries]:
    return [m for m in of_type(messages, AppendEntries) if m.dst == dst]


def replicating_cluster(**config: int) -> Cluster:
    """Leader 1 elected, its no-op committed, both followers in REPLICATE."""
    cluster = Cluster.of(**config)
    cluster.elect(1)
    cluster.pump()
    return cluster


# ---------------------------------------------------------------- the follower's side


def test_follower_accepts_append_whose_prev_entry_matches() -> None:
    cluster = follower_with_log([1, 1])
    cluster[2].step(append(2, 1, [3]))
    response = only_response(cluster)
    assert (response.success, response.match_index) == (True, 3)
    assert cluster.log_terms(2) == [1, 1, 3]


def test_follower_rejects_append_whose_prev_entry_it_lacks() -> None:
    cluster = follower_with_log([1, 1])
    cluster[2].step(append(3, 1, [3]))
    assert only_response(cluster).success is False
    assert cluster.log_terms(2) == [1, 1]


def test_follower_truncates_a_conflicting_suffix_and_takes_the_leaders_entries() -> None:
    cluster = follower_with_log([1, 1, 2, 2], commit=2)
    cluster[2].step(append(2, 1, [3]))
    rd = cluster.drain(2)
    assert cluster.log_terms(2) == [1, 1, 3]
    assert rd.entries == entries_of_terms([3], 3), "the driver truncates its log from entries[0].index"
    assert [e.term for e in cluster.storages[2].entries] == [1, 1, 3]
    [response] = of_type(rd.messages, AppendEntriesResponse)
    assert (response.success, response.match_index) == (True, 3)


def test_follower_keeps_its_log_when_a_late_append_holds_nothing_new() -> None:
    cluster = follower_with_log([1, 1, 1, 1])
    cluster[2].step(append(1, 1, [1], term=2))
    response = only_response(cluster)
    assert (response.success, response.match_index) == (True, 2)
    assert cluster.log_terms(2) == [1, 1, 1, 1], "a matching prefix truncates nothing"


def test_follower_advances_its_commit_only_through_entries_it_holds_from_this_leader() -> None:
    cluster = follower_with_log([1, 1, 2, 2])
    cluster[2].step(append(1, 1, [1], term=3, commit=9))
    assert cluster[2].commit_index == 2, "commit stops at the last entry the append vouched for"


def test_follower_knows_the_leaders_commit_index_beyond_the_log_it_holds() -> None:
    cluster = follower_with_log([1, 1])
    cluster[2].step(append(7, 3, [3], commit=9))  # rejected: it lacks entry 7

    assert cluster[2].commit_index == 0
    assert cluster[2].known_commit_index == 9, "a follower this far behind is catching up"


def test_rejection_names_the_conflicting_term_and_its_first_index() -> None:
    cluster = follower_with_log([1, 2, 2, 2])
    cluster[2].step(append(4, 3, [3]))
    response = only_response(cluster)
    assert not response.success
    assert (response.reject_index, response.conflict_term, response.conflict_index) == (4, 2, 2)


def test_rejection_from_a_short_log_hints_its_last_index_plus_one() -> None:
    cluster = follower_with_log([1, 1])
    cluster[2].step(append(7, 3, [3]))
    response = only_response(cluster)
    assert (response.reject_index, response.conflict_term, response.conflict_index) == (7, 0, 3)


# ---------------------------------------------------------------- the leader's side


def test_leader_skips_a_whole_divergent_term_per_round_trip() -> None:
    """A follower with 40 divergent entries in two terms costs two rejections, not forty."""
    voters = (1, 2, 3)
    leader_log = [1] * 3 + [4] * 40
    cluster = Cluster()
    cluster.add(1, storage_with_log(voters, leader_log, commit=3))
    cluster.add(2, storage_with_log(voters, [1] * 3 + [2] * 20 + [3] * 20, commit=3))
    cluster.add(3, storage_with_log(voters, leader_log, commit=3))
    cluster.elect(1)
    rejections = [
        m for m in of_type(cluster.delivered, AppendEntriesResponse) if m.src == 2 and not m.success
    ]
    assert [(r.conflict_term, r.conflict_index) for r in rejections] == [(3, 24), (2, 4)]
    assert cluster.log_terms(2) == cluster.log_terms(1)
    assert cluster[1].commit_index == cluster[1].last_index


def test_leader_that_holds_the_conflicting_term_resumes_right_after_its_last_entry_of_that_term() -> None:
    voters = (1, 2, 3)
    leader_log = [1, 2, 2, 5, 5]
    cluster = Cluster()
    cluster.add(1, storage_with_log(voters, leader_log, commit=1))
    cluster.add(2, storage_with_log(voters, [1, 2, 2, 2, 2, 2, 2, 2], commit=1))
    cluster.add(3, storage_with_log(voters, leader_log, commit=1))
    cluster.elect(1)
    rejections = [
        m for m in of_type(cluster.delivered, AppendEntriesResponse) if m.src == 2 and not m.success
    ]
    assert len(rejections) == 1
    assert cluster.log_terms(2) == cluster.log_terms(1)


def test_leader_sends_a_probing_follower_one_append_per_round_trip() -> None:
    cluster = Cluster.of()
    cluster.drop = lambda m: isinstance(m, AppendEntries) and m.dst == 2  # the probe sent on election is lost
    leader = cluster.elect(1)
    counts = []
    for k in range(3):
        leader.propose(b"p%d" % k)
        messages = cluster.drain(1).messages
        counts.append((len(appends_to(messages, 2)), len(appends_to(messages, 3))))
    assert counts == [(0, 1), (0, 1), (0, 1)], "node 2 is probed, node 3 replicates"


def test_leader_pipelines_appends_to_a_replicating_follower_up_to_max_inflight_msgs() -> None:
    cluster = replicating_cluster(max_inflight_msgs=3)
    leader = cluster[1]
    held: list[AppendEntries] = []
    counts = []
    for k in range(5):
        leader.propose(b"p%d" % k)
        sent = appends_to(cluster.drain(1).messages, 2)
        held.extend(sent)
        counts.append(len(sent))
    assert counts == [1, 1, 1, 0, 0]
    cluster.deliver(held[:1])
    cluster.deliver(cluster.drain(2).messages)
    [resumed] = appends_to(cluster.drain(1).messages, 2)
    assert [e.index for e in resumed.entries] == [5, 6], "the two proposals that waited leave together"


def test_leader_bounds_the_bytes_in_flight_to_a_follower_by_max_inflight_bytes() -> None:
    cluster = replicating_cluster(max_inflight_bytes=100)
    leader = cluster[1]
    counts = []
    for _ in range(3):
        leader.propose(b"x" * 60)
        counts.append(len(appends_to(cluster.drain(1).messages, 2)))
    assert counts == [1, 1, 0]


def test_batch_of_proposals_between_two_readies_leaves_as_one_append_per_follower() -> None:
    cluster = replicating_cluster()
    leader = cluster[1]
    for k in range(10):
        leader.propose(b"p%d" % k)
    leader.propose_batch([b"a", b"b"])
    messages = cluster.drain(1).messages
    for follower in (2, 3):
        [sent] = appends_to(messages, follower)
        assert [e.index for e in sent.entries] == list(range(2, 14))


def test_max_append_entries_splits_an_append_into_several_messages() -> None:
    cluster = replicating_cluster(max_append_entries=4)
    cluster[1].propose_batch([b"p%d" % k for k in range(10)])
    sent = appends_to(cluster.drain(1).messages, 2)
    assert [[e.index for e in m.entries] for m in sent] == [
        [2, 3, 4, 5],
        [6, 7, 8, 9],
        [10, 11],
    ]
    assert [m.prev_log_index for m in sent] == [1, 5, 9]


def test_max_append_bytes_splits_an_append_but_never_below_one_entry() -> None:
    cluster = replicating_cluster(max_append_bytes=100)
    cluster[1].propose_batch([b"x" * 40] * 5 + [b"y" * 150, b"z"])
    sent = appends_to(cluster.drain(1).messages, 2)
    assert [len(m.entries) for m in sent] == [2, 2, 1, 1, 1]
    assert [e.data for e in sent[3].entries] == [b"y" * 150], "an entry above the limit goes alone"


def test_lost_append_is_resent_after_the_stall_timeout() -> None:
    cluster = replicating_cluster(election_ticks=ELECTION_TICKS)
    lost: list[Message] = []

    def lose_first_append_to_2(msg: Message) -> bool:
        if not lost and isinstance(msg, AppendEntries) and msg.dst == 2 and msg.entries:
            lost.append(msg)
            return True
        return False

    cluster.drop = lose_first_append_to_2
    _, index = cluster[1].propose(b"lost once")
    cluster.pump()
    assert lost
    assert cluster[2].last_index < index
    ticks = 0
    while cluster[2].last_index < index:
        cluster.tick()
        ticks += 1
        assert ticks <= ELECTION_TICKS, "the append was never resent"
    assert ticks > 1, "a heartbeat alone does not resend what is still in flight"
    assert cluster.leaders() == [1]


def test_leader_catches_up_a_follower_that_was_partitioned() -> None:
    cluster = replicating_cluster()
    cluster.isolate(3)
    for k in range(20):
        cluster[1].propose(b"p%d" % k)
        cluster.tick()
    cluster.heal()
    cluster.tick(times=ELECTION_TICKS)
    assert cluster.log_terms(3) == cluster.log_terms(1)
    assert cluster[3].commit_index == cluster[1].commit_index == cluster[1].last_index
    assert cluster[1].role is Role.LEADER


def test_entries_reach_the_follower_state_machine_once_and_in_order() -> None:
    cluster = replicating_cluster()
    for k in range(5):
        cluster[1].propose(b"p%d" % k)
    cluster.pump()
    cluster.tick(times=2)
    for node in (1, 2, 3):
        assert [e.index for e in cluster.applied[node]] == list(range(1, 7))
        assert [e.data for e in cluster.applied[node][1:]] == [b"p%d" % k for k in range(5)]
    assert cluster.applied[2][0] == entry(1, 1, kind=cluster.applied[1][0].kind)


# ---------------------------------------------------------------- heartbeats under load


def heartbeats_on_tick(cluster: Cluster) -> set[int]:
    """Tick the leader once and return who its heartbeats went to (nothing delivered)."""
    cluster[1].tick()
    return {h.dst for h in of_type(cluster.drain(1).messages, Heartbeat)}


def test_a_follower_that_got_an_append_since_the_last_heartbeat_tick_gets_no_heartbeat() -> None:
    cluster = replicating_cluster(election_ticks=ELECTION_TICKS)
    heartbeats_on_tick(cluster)  # a tick with nothing appended: a full round
    cluster.pump()

    cluster[1].propose(b"x")
    cluster.pump()

    assert heartbeats_on_tick(cluster) == set()


def test_the_next_tick_without_appends_heartbeats_every_follower_again() -> None:
    cluster = replicating_cluster(election_ticks=ELECTION_TICKS)
    cluster[1].propose(b"x")
    cluster.pump()
    heartbeats_on_tick(cluster)
    cluster.pump()

    assert heartbeats_on_tick(cluster) == {2, 3}


def test_a_waiting_read_makes_the_tick_heartbeat_every_follower_even_after_appends() -> None:
    cluster = replicating_cluster(election_ticks=ELECTION_TICKS)
    cluster.cut |= {(2, 1), (3, 1)}  # the read's own round goes unanswered: it still waits
    cluster[1].read_index(b"r")
    cluster.pump()
    cluster[1].propose(b"x")  # and an append reaches each follower after that round
    cluster.pump()
    cluster.heal()

    assert heartbeats_on_tick(cluster) == {2, 3}


def test_followers_streamed_appends_never_campaign_although_heartbeats_are_skipped() -> None:
    cluster = replicating_cluster(election_ticks=ELECTION_TICKS)

    for i in range(5 * ELECTION_TICKS):
        cluster[1].propose(b"%d" % i)
        cluster.tick()

    assert cluster.leaders() == [1]
    assert cluster[1].term == cluster[2].term == cluster[3].term


def test_a_follower_replaced_by_an_empty_replica_is_caught_up_from_the_log_it_has() -> None:
    # A late acknowledgement from a replica that was deleted and started again empty leaves the
    # leader's match above the new replica's log (simulator seed 212); its rejection corrects it.
    cluster = replicating_cluster(election_ticks=ELECTION_TICKS)
    for i in range(5):
        cluster[1].propose(b"%d" % i)
    cluster.pump()
    assert cluster[1].replicator.progress[3].match == cluster[1].log.last_index

    cluster.add(3)  # node 3's replica, deleted and started again with no log
    cluster.tick(times=3 * ELECTION_TICKS)

    assert cluster[3].log.last_index == cluster[1].log.last_index
    assert cluster[1].replicator.progress[3].match == cluster[1].log.last_index
