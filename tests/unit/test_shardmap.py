"""The shard map: keys find their partition as documented, and the first map spreads shards evenly."""

from __future__ import annotations

import zlib
from collections import Counter

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from confmand.protocol.planning import balancing_moves
from confmand.protocol.shardmap import (
    META_SHARD,
    ShardMap,
    initial_map,
    meta_replica_count,
    namespace_of,
    partition_of,
)
from confmand.protocol.types import WireError


def test_a_keys_namespace_is_its_first_path_segment() -> None:
    assert namespace_of("payments/db/url") == "payments"
    assert namespace_of("flag") == "flag"
    assert namespace_of("/abs/path") == ""


def test_the_partition_is_the_documented_crc32_of_the_namespace() -> None:
    # CRC-32's published check value: what any language's CRC-32 gives for "123456789".
    assert zlib.crc32(b"123456789") == 0xCBF43926
    assert partition_of("123456789/any/key", 1 << 32) == 0xCBF43926
    assert partition_of("123456789", 256) == 0x26


@given(st.text(min_size=1).filter(lambda t: "\x00" not in t), st.text(), st.integers(1, 4096))
def test_every_key_of_a_namespace_lands_in_one_partition(namespace: str, rest: str, partitions: int) -> None:
    head = namespace.split("/", 1)[0]
    assert partition_of(f"{head}/{rest}", partitions) == partition_of(head, partitions)
    assert 0 <= partition_of(head, partitions) < partitions


def _spread(counts: Counter[int], nodes: list[int]) -> int:
    values = [counts[n] for n in nodes]
    return max(values) - min(values)


@given(
    st.integers(1, 9),
    st.sampled_from((1, 3, 5)),
    st.integers(1, 80),
    st.integers(0, 3),
)
def test_the_first_map_spreads_replicas_and_leaders_evenly(
    node_count: int, replication: int, data_shards: int, extra_partitions: int
) -> None:
    if replication > node_count:
        return
    nodes = list(range(1, node_count + 1))
    partitions = data_shards * 4 + extra_partitions
    m = initial_map(nodes, data_shards, replication, partitions)
    assert m.epoch == 1
    assert m.data_shards == list(range(1, data_shards + 1))
    assert all(len(m.replicas[s]) == replication for s in m.data_shards)
    assert len(m.replicas[META_SHARD]) == meta_replica_count(node_count)
    held = Counter(n for s in m.data_shards for n in m.replicas[s])
    assert _spread(held, nodes) <= 1
    leaders = Counter(m.preferred_leader(s) for s in m.replicas)
    assert _spread(leaders, nodes) <= 1
    owned = Counter(m.owners)
    assert set(owned) == set(m.data_shards)
    assert max(owned.values()) - min(owned.values()) <= 1


def test_the_meta_shard_has_an_odd_number_of_replicas_up_to_five() -> None:
    assert [meta_replica_count(n) for n in range(1, 9)] == [1, 1, 3, 3, 5, 5, 5, 5]


def test_a_map_survives_msgpack_and_a_move_bumps_the_epoch() -> None:
    m = initial_map([1, 2, 3], 4, 3, 16)
    again = ShardMap.from_wire(msgpack.unpackb(msgpack.packb(m.to_wire())))
    assert again == m
    moved = m.moved(5, 1)
    assert (moved.epoch, moved.owners[5]) == (2, 1)
    assert moved.partitions_of(1) == sorted({*m.partitions_of(1), 5})
    assert m.shards_on(2) == [s for s in range(5) if 2 in m.replicas[s]]


def _s(shard: int, nodes: list[int]) -> dict[str, object]:
    return {"id": shard, "replicas": nodes}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "must be a map"),
        ({"epoch": 1, "owners": "x", "shards": []}, "'owners' must be a list"),
        ({"epoch": 1, "owners": [1], "shards": {}}, "'shards' must be a list"),
        (
            {"epoch": 1, "owners": [1], "shards": [_s(0, [1]), {"id": 1, "replicas": "a"}]},
            "is not {id, replicas",
        ),
        ({"epoch": 1, "owners": [1], "shards": [_s(0, [1]), _s(1, [1]), _s(1, [2])]}, "listed twice"),
        ({"epoch": "1", "owners": [1], "shards": [_s(0, [1]), _s(1, [1])]}, "'epoch' must be an integer"),
        ({"epoch": 0, "owners": [1], "shards": [_s(0, [1]), _s(1, [1])]}, "epoch 0 is below 1"),
        ({"epoch": 1, "owners": [1], "shards": [_s(1, [1])]}, "no meta shard"),
        ({"epoch": 1, "owners": [1], "shards": [_s(0, [1]), _s(1, [2, 2])]}, "not distinct node ids"),
        ({"epoch": 1, "owners": [2], "shards": [_s(0, [1]), _s(1, [1])]}, "owned by 2, which is not a data"),
        ({"epoch": 1, "owners": [0], "shards": [_s(0, [1]), _s(1, [1])]}, "owned by 0, which is not a data"),
        ({"epoch": 1, "owners": [], "shards": [_s(0, [1]), _s(1, [1])]}, "no partitions"),
    ],
)
def test_a_malformed_map_is_refused_with_what_is_wrong(raw: object, message: str) -> None:
    with pytest.raises(WireError, match=message):
        ShardMap.from_wire(raw)


def test_the_first_map_refuses_impossible_shapes() -> None:
    with pytest.raises(ValueError, match="replication 3 needs at least"):
        initial_map([1, 2], 1, 3, 16)
    with pytest.raises(ValueError, match="data_shards <= partitions"):
        initial_map([1, 2, 3], 8, 3, 4)


@given(st.integers(1, 6), st.lists(st.integers(0, 5), min_size=1, max_size=64))
def test_balancing_moves_leave_every_data_shard_within_one_partition_of_the_others(
    data_shards: int, owners: list[int]
) -> None:
    first = initial_map([1, 2, 3], data_shards, 3, max(len(owners), data_shards))
    skewed = ShardMap(
        2, tuple(o % data_shards + 1 for o in owners) + first.owners[len(owners) :], first.replicas
    )

    moves = balancing_moves(skewed)

    after = list(skewed.owners)
    for partition, source, target in moves:
        assert after[partition] == source
        after[partition] = target
    counts = [after.count(s) for s in skewed.data_shards]
    assert max(counts) - min(counts) <= 1
    assert len(moves) == len({p for p, _, _ in moves})  # no partition moved twice


def test_a_balanced_map_needs_no_moves() -> None:
    assert balancing_moves(initial_map([1, 2, 3], 4, 3, 64)) == []
