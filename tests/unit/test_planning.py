"""Plans that change the map: replicas and preferred leaders even out, a drained node keeps
nothing, a new shard goes where there is room, a split gives away the upper half."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from confmand.protocol.planning import drain_plan, new_shard, replica_plan, split_moves
from confmand.protocol.shardmap import META_SHARD, ShardMap, initial_map


def _apply(shard_map: ShardMap, plan: list[tuple[int, tuple[int, ...]]]) -> ShardMap:
    for shard, nodes in plan:
        shard_map = shard_map.with_replicas(shard, nodes)
    return shard_map


def _data_counts(shard_map: ShardMap, nodes: list[int]) -> Counter[int]:
    counts = Counter(dict.fromkeys(nodes, 0))
    counts.update(n for s in shard_map.data_shards for n in shard_map.replicas[s])
    return counts


@given(st.integers(3, 5), st.integers(1, 12), st.integers(1, 4))
def test_replica_plan_evens_out_replicas_and_preferred_leaders_over_added_nodes(
    first_nodes: int, data_shards: int, added: int
) -> None:
    start = initial_map(range(1, first_nodes + 1), data_shards, 3, 64)
    nodes = list(range(1, first_nodes + added + 1))

    after = _apply(start, replica_plan(start, nodes))

    counts = _data_counts(after, nodes)
    if 3 * data_shards >= len(nodes):  # enough replicas to give every node one
        assert max(counts.values()) - min(counts.values()) <= 1

    # Leaders even out as far as who shares a shard with whom allows: never worse than before.
    def spread(m: ShardMap) -> int:
        leads = Counter(dict.fromkeys(nodes, 0))
        leads.update(m.replicas[s][0] for s in m.replicas)
        return sum(c * c for c in leads.values())

    assert spread(after) <= spread(start)
    for shard in after.replicas:
        assert len(after.replicas[shard]) == len(start.replicas[shard])


def test_replica_plan_gives_a_new_node_replicas_and_a_preferred_leader() -> None:
    start = initial_map([1, 2, 3], 4, 3, 64)

    after = _apply(start, replica_plan(start, [1, 2, 3, 4]))

    assert _data_counts(after, [1, 2, 3, 4]) == {1: 3, 2: 3, 3: 3, 4: 3}
    assert sorted(Counter(after.replicas[s][0] for s in after.replicas).values()) == [1, 1, 1, 2]


def test_a_balanced_map_needs_no_placement() -> None:
    start = initial_map([1, 2, 3, 4, 5], 10, 3, 64)
    assert replica_plan(start, [1, 2, 3, 4, 5]) == []


@given(st.sampled_from([4, 6, 7]), st.integers(1, 10), st.data())  # 5 nodes: the meta shard is on all
def test_drain_plan_leaves_the_node_no_replica_and_every_shard_its_size(
    nodes: int, data_shards: int, data: st.DataObject
) -> None:
    start = initial_map(range(1, nodes + 1), data_shards, 3, 64)
    node = data.draw(st.integers(1, nodes))

    after = _apply(start, drain_plan(start, node, list(range(1, nodes + 1))))

    assert after.shards_on(node) == []
    for shard, held in after.replicas.items():
        assert len(held) == len(start.replicas[shard])
        assert len(set(held)) == len(held)


def test_drain_plan_refuses_when_no_other_node_can_take_a_replica() -> None:
    start = initial_map([1, 2, 3], 2, 3, 16)
    with pytest.raises(ValueError, match="no other node"):
        drain_plan(start, 2, [1, 2, 3])


def test_new_shard_goes_on_the_nodes_holding_fewest_data_replicas() -> None:
    start = initial_map([1, 2, 3, 4], 1, 3, 16)  # shard 1 on three of the four nodes
    shard, nodes = new_shard(start, [1, 2, 3, 4], 3)
    (spare,) = set(range(1, 5)) - set(start.replicas[1])
    assert shard == 2
    assert spare in nodes
    assert len(nodes) == 3
    assert start.with_shard(shard, nodes).founders == {2: nodes}


def test_split_moves_hand_the_upper_half_of_the_partitions_to_the_new_shard() -> None:
    start = initial_map([1, 2, 3], 2, 3, 8)  # shard 1 owns 0, 2, 4, 6
    assert split_moves(start, 1, 3) == [(4, 1, 3), (6, 1, 3)]
    assert META_SHARD not in {s for _, s, _ in split_moves(start, 2, 3)}
