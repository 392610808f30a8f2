"""Which changes to [[peers]] a running node applies on SIGHUP, and when a removed node's id may return."""

from __future__ import annotations

from confmand.config import PeerConfig
from confmand.protocol.shardmap import initial_map
from confmand.raft import Membership
from confmand.server.peer_changes import may_forget_dir, plan_peer_changes, removal_blockers


def peer(node_id: int, *, joins: bool = False, removed: bool = False, port: int = 0) -> PeerConfig:
    return PeerConfig(node_id, f"tcp://h{node_id}:{7200 + port}", f"tcp://h{node_id}:7100", joins, removed)


FOUNDED = (peer(1), peer(2), peer(3))


def test_a_joining_node_added_to_the_config_applies_at_once() -> None:
    changes = plan_peer_changes(FOUNDED, (*FOUNDED, peer(4, joins=True)))

    assert (changes.added, changes.removed, changes.need_restart) == ((peer(4, joins=True),), (), ())


def test_a_new_first_membership_node_waits_for_a_restart_saying_it_needs_joins() -> None:
    changes = plan_peer_changes(FOUNDED, (*FOUNDED, peer(4)))

    assert not changes.any
    assert changes.need_restart == ("peers[4] (a node new to a running cluster needs joins = true)",)


def test_a_joined_node_deleted_from_the_config_is_removed() -> None:
    changes = plan_peer_changes((*FOUNDED, peer(4, joins=True)), FOUNDED)

    assert changes.removed == (4,)


def test_a_first_membership_node_is_removed_by_marking_it_not_by_deleting_it() -> None:
    marked = plan_peer_changes(FOUNDED, (peer(1), peer(2, removed=True), peer(3)))
    deleted = plan_peer_changes(FOUNDED, (peer(1), peer(3)))

    assert marked.removed == (2,)
    assert not deleted.any
    assert deleted.need_restart == (
        "peers[2] (a first-membership node keeps its entry: mark it removed = true)",
    )


def test_a_changed_address_or_a_removed_node_brought_back_waits_for_a_restart() -> None:
    moved = plan_peer_changes(FOUNDED, (peer(1), peer(2, port=1), peer(3)))
    back = plan_peer_changes((peer(1), peer(2, removed=True), peer(3)), FOUNDED)

    assert moved.need_restart == ("peers[2] addresses",)
    assert back.need_restart == ("peers[2] (a removed node does not come back: give it a new id)",)


def test_a_node_the_map_places_or_a_replica_counts_blocks_its_removal() -> None:
    shard_map = initial_map([1, 2, 3], data_shards=2, replication=2, partitions=4)
    learner_here = {1: Membership(frozenset({1, 2}), frozenset({4}))}

    assert removal_blockers(4, shard_map, learner_here) == [1]
    assert removal_blockers(4, shard_map, {}) == []
    assert removal_blockers(3, shard_map, {}) == [s for s, nodes in shard_map.replicas.items() if 3 in nodes]


def test_only_a_node_no_shard_s_first_entry_names_may_come_back_with_an_empty_dir() -> None:
    shard_map = initial_map([1, 2, 3], data_shards=1, replication=3, partitions=4).with_shard(2, (1, 2, 5))
    voters = frozenset({1, 2, 3})

    assert may_forget_dir(4, voters, shard_map)
    assert not may_forget_dir(3, voters, shard_map), "a first-membership node"
    assert not may_forget_dir(5, voters, shard_map), "a founder of shard 2"
