"""The membership steps a shard's leader takes to reach the map's replicas, one at a time."""

from __future__ import annotations

from confmand.raft import Membership, MembershipChange, MembershipChangeKind
from confmand.server.placement import Transfer, next_step, preferred_transfer

ADD, PROMOTE, REMOVE = (
    MembershipChangeKind.ADD_LEARNER,
    MembershipChangeKind.PROMOTE,
    MembershipChangeKind.REMOVE,
)


def members(voters: set[int], learners: frozenset[int] = frozenset()) -> Membership:
    return Membership(frozenset(voters), learners)


def test_a_node_the_map_adds_joins_as_a_learner_first() -> None:
    step = next_step(members({1, 2, 3}), (1, 2, 4), leader=1, matched={}, commit=10)

    assert step == MembershipChange(ADD, 4)


def test_a_learner_is_promoted_only_once_it_has_the_whole_committed_log() -> None:
    behind = next_step(members({1, 2, 3}, frozenset({4})), (1, 2, 4), leader=1, matched={4: 9}, commit=10)
    caught_up = next_step(members({1, 2, 3}, frozenset({4})), (1, 2, 4), leader=1, matched={4: 10}, commit=10)

    assert behind is None  # nothing is removed while the newcomer catches up
    assert caught_up == MembershipChange(PROMOTE, 4)


def test_a_voter_the_map_drops_goes_once_every_wanted_node_votes() -> None:
    step = next_step(members({1, 2, 3, 4}), (1, 2, 4), leader=1, matched={}, commit=10)

    assert step == MembershipChange(REMOVE, 3)


def test_a_leader_the_map_drops_hands_leadership_to_a_wanted_voter_first() -> None:
    step = next_step(members({1, 2, 3, 4}), (4, 2, 3), leader=1, matched={}, commit=10)

    assert step == Transfer(4)


def test_a_learner_the_map_does_not_name_is_removed() -> None:
    step = next_step(members({1, 2, 3}, frozenset({5})), (1, 2, 3), leader=1, matched={}, commit=10)

    assert step == MembershipChange(REMOVE, 5)


def test_a_shard_whose_voters_are_the_map_replicas_needs_nothing() -> None:
    assert next_step(members({1, 2, 3}), (3, 1, 2), leader=1, matched={}, commit=10) is None


def test_leadership_goes_to_the_preferred_leader_once_it_has_the_whole_committed_log() -> None:
    behind = preferred_transfer(members({1, 2, 3}), (2, 1, 3), leader=1, matched={2: 9}, commit=10)
    caught_up = preferred_transfer(members({1, 2, 3}), (2, 1, 3), leader=1, matched={2: 10}, commit=10)

    assert behind is None
    assert caught_up == Transfer(2)


def test_no_transfer_when_the_preferred_leader_leads_or_does_not_vote() -> None:
    assert preferred_transfer(members({1, 2, 3}), (1, 2, 3), leader=1, matched={}, commit=10) is None
    learner = members({1, 3}, frozenset({2}))
    assert preferred_transfer(learner, (2, 1, 3), leader=1, matched={2: 10}, commit=10) is None
