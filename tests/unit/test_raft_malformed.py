"""Malformed or impossible messages are dropped, counted by reason, and never raise.

Every case is sent to a settled three-node cluster (leader 1 in term 1, the
log is its no-op at index 1): the receiver's state must not move, nothing
must leave it, and `node.dropped` must name the reason once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import pytest

from confmand.raft import EntryKind, Message, RaftNode, SnapshotMeta
from confmand.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Removed,
    RequestVote,
)
from tests.unit.raft_harness import Cluster, entry, membership

META = SnapshotMeta(5, 1, membership((1, 2, 3)))


def append(*term_index: tuple[int, int], prev: int = 1, prev_term: int = 1, term: int = 1) -> AppendEntries:
    """From leader 1 to follower 2; one entry per (term, index) given."""
    return AppendEntries(0, term, 1, 2, prev, prev_term, tuple(entry(t, i) for t, i in term_index), 1)


def membership_append(data: bytes) -> AppendEntries:
    return AppendEntries(0, 1, 1, 2, 1, 1, (entry(1, 2, data, EntryKind.MEMBERSHIP),), 1)


TO_FOLLOWER: dict[str, tuple[object, str]] = {
    "wrong shard": (AppendEntries(7, 1, 1, 2, 1, 1, (), 1), "wrong_shard"),
    "wrong destination": (AppendEntries(0, 1, 1, 3, 1, 1, (), 1), "wrong_destination"),
    "from itself": (Heartbeat(0, 1, 2, 2, 1, 0), "from_self"),
    "negative term": (RequestVote(0, -1, 3, 2, 0, 0), "negative_term"),
    "negative prev index": (append(prev=-1), "index_out_of_range"),
    "negative leader commit": (AppendEntries(0, 1, 1, 2, 1, 1, (), -1), "index_out_of_range"),
    "prev term above the message term": (append(prev_term=2), "index_out_of_range"),
    "entries not after prev": (append((1, 3)), "entries_not_contiguous"),
    "entries with a gap at the end": (append((1, 2), (1, 4)), "entries_not_contiguous"),
    "entry term above the message term": (append((2, 2)), "entry_term_out_of_range"),
    "entry term below prev term": (append((0, 2)), "entry_term_out_of_range"),
    "malformed membership entry": (membership_append(b"not a membership"), "malformed_membership"),
    "membership with no voter": (membership_append(b"v;l4"), "malformed_membership"),
    "membership naming a voter a learner": (membership_append(b"v1,2;l2"), "malformed_membership"),
    "membership that is not text": (membership_append(b"\xff\xfe"), "malformed_membership"),
    "not a message": (object(), "unknown_type"),
    "vote request with negative last index": (RequestVote(0, 2, 3, 2, -1, 0), "index_out_of_range"),
    "vote request with last term above its term": (RequestVote(0, 2, 3, 2, 1, 3), "index_out_of_range"),
    "heartbeat with negative read_seq": (Heartbeat(0, 1, 1, 2, 1, -1), "index_out_of_range"),
    "snapshot chunk with negative offset": (
        InstallSnapshot(0, 1, 1, 2, META, -1, b"x", True),
        "index_out_of_range",
    ),
    "snapshot newer than the message term": (
        InstallSnapshot(0, 1, 1, 2, SnapshotMeta(5, 2, META.membership), 0, b"x", True),
        "index_out_of_range",
    ),
}

TO_LEADER: dict[str, tuple[object, str]] = {
    "append response matching beyond the leader's last index": (
        AppendEntriesResponse(0, 1, 2, 1, True, 99),
        "index_out_of_range",
    ),
    "append response with a negative conflict index": (
        AppendEntriesResponse(0, 1, 2, 1, False, 0, 1, -1, 0),
        "index_out_of_range",
    ),
    "snapshot response beyond the leader's last index": (
        InstallSnapshotResponse(0, 1, 2, 1, 99, 0, True),
        "index_out_of_range",
    ),
    "snapshot response with a negative offset": (
        InstallSnapshotResponse(0, 1, 2, 1, 1, -1, False),
        "index_out_of_range",
    ),
    "heartbeat response from a stranger": (HeartbeatResponse(0, 1, 9, 1, 1, 1), "unknown_peer"),
}


def state(node: RaftNode) -> tuple[object, ...]:
    progress = {peer: (p.match, p.next_index, p.state) for peer, p in node.replicator.progress.items()}
    return (
        node.role,
        node.term,
        node.vote,
        node.leader_id,
        list(node.log.entries),
        node.log.commit,
        node.membership,
        progress,
    )


def settled() -> Cluster:
    cluster = Cluster.of()
    cluster.elect(1)
    cluster.pump()
    return cluster


def assert_dropped(node_id: int, message: object, reason: str) -> None:
    cluster = settled()
    node = cluster[node_id]
    before = state(node)
    node.step(cast(Message, message))
    assert dict(node.dropped) == {reason: 1}
    assert state(node) == before
    # A node outside the membership is told so (docs/raft.md, *Leaving a shard*), and only that.
    if reason == "unknown_peer":
        commit = node.commit_index
        src = cast(Message, message).src
        told: list[Message] = [Removed(0, node.term, node_id, src, commit, node.log.term_at(commit) or 0)]
    else:
        told = []
    assert cluster.drain(node_id).messages == told


@pytest.mark.parametrize(("message", "reason"), TO_FOLLOWER.values(), ids=TO_FOLLOWER.keys())
def test_follower_drops_and_counts_a_malformed_message(message: object, reason: str) -> None:
    assert_dropped(2, message, reason)


@pytest.mark.parametrize(("message", "reason"), TO_LEADER.values(), ids=TO_LEADER.keys())
def test_leader_drops_and_counts_an_impossible_answer(message: object, reason: str) -> None:
    assert_dropped(1, message, reason)


def test_answer_that_reaches_a_follower_is_dropped() -> None:
    assert_dropped(2, AppendEntriesResponse(0, 1, 3, 2, True, 1), "response_not_leader")


def test_append_from_a_second_leader_in_the_same_term_is_dropped() -> None:
    assert_dropped(1, AppendEntries(0, 1, 2, 1, 1, 1, (), 1), "second_leader_in_term")


def test_dropped_messages_add_up_by_reason() -> None:
    cluster = settled()
    follower = cluster[2]
    for _ in range(3):
        follower.step(AppendEntries(7, 1, 1, 2, 1, 1, (), 1))
    follower.step(cast(Message, "not a message"))
    assert dict(follower.dropped) == {"wrong_shard": 3, "unknown_type": 1}


MIDDLE_OF_THE_APPEND: dict[str, Callable[[], AppendEntries]] = {
    "a gap between entries whose ends are right": lambda: append((1, 2), (1, 4), (1, 4)),
    "an index going back into the log": lambda: append((1, 2), (1, 1), (1, 4)),
    "a middle entry term above the message term": lambda: append((1, 2), (5, 3), (1, 4)),
    "terms going down inside the append": lambda: append((1, 2), (0, 3), (1, 4)),
}


@pytest.mark.parametrize("build", MIDDLE_OF_THE_APPEND.values(), ids=MIDDLE_OF_THE_APPEND.keys())
def test_append_malformed_in_its_middle_is_dropped(build: Callable[[], AppendEntries]) -> None:
    cluster = settled()
    follower = cluster[2]
    before = state(follower)
    follower.step(build())
    assert sum(follower.dropped.values()) == 1
    assert state(follower) == before


def test_append_whose_middle_entry_points_into_the_committed_log_does_not_raise() -> None:
    """The follower holds 1..3, all committed; the middle entry claims index 1 in another term."""
    cluster = Cluster.of()
    cluster.elect(1)
    for data in (b"a", b"b"):
        cluster[1].propose(data)
    cluster.pump()
    follower = cluster[2]
    assert follower.commit_index == 3
    follower.step(AppendEntries(0, 2, 1, 2, 2, 1, (entry(1, 3), entry(2, 1), entry(2, 5)), 2))
    assert sum(follower.dropped.values()) == 1


def test_leader_drops_a_rejection_naming_an_index_beyond_its_log() -> None:
    assert_dropped(1, AppendEntriesResponse(0, 1, 2, 1, False, 0, 99, 99, 0), "index_out_of_range")
