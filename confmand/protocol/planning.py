"""Plans that change the shard map towards a goal: what `confctl rebalance`, `add-shard`, `split`
and `drain` carry out, one map change at a time. Pure functions of a map and the nodes to use.

- `balancing_moves`: partition moves that even out the partitions per data shard;
- `replica_plan`: replica placements that even out the data replicas per node, then the
  preferred leaders (each shard's first replica, which its leader hands leadership to:
  confmand/server/placement.py) per node;
- `new_shard`: the id and replicas of a shard to add, on the nodes holding the fewest replicas;
- `split_moves`: the moves that give a new shard the upper half of a shard's partitions;
- `drain_plan`: placements that take every replica off a node, the meta shard's too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from confmand.protocol.shardmap import META_SHARD, ShardMap, balanced_leaders

Placement = tuple[int, tuple[int, ...]]  # (shard, its replicas, the preferred leader first)


def balancing_moves(shard_map: ShardMap) -> list[tuple[int, int, int]]:
    """Partition moves `(partition, from shard, to shard)` after which every data shard owns as many
    partitions as any other, give or take one: each takes a partition of the shard owning the most
    (its highest-numbered) to the shard owning the fewest, until they differ by at most one.
    """
    owned = {shard: shard_map.partitions_of(shard) for shard in shard_map.data_shards}
    moves: list[tuple[int, int, int]] = []
    while True:
        most = max(owned, key=lambda s: (len(owned[s]), -s))
        fewest = min(owned, key=lambda s: (len(owned[s]), s))
        if len(owned[most]) - len(owned[fewest]) <= 1:
            return moves
        partition = owned[most].pop()
        owned[fewest].append(partition)
        moves.append((partition, most, fewest))


def _data_counts(replicas: dict[int, list[int]], nodes: Iterable[int]) -> Counter[int]:
    counts: Counter[int] = Counter(dict.fromkeys(nodes, 0))
    for shard, held in replicas.items():
        if shard != META_SHARD:
            counts.update(n for n in held if n in counts)
    return counts


def replica_plan(
    shard_map: ShardMap, nodes: Sequence[int], leaders: Mapping[int, int | None] | None = None
) -> list[Placement]:
    """Placements after which the data replicas per node (of `nodes`) differ by at most one where
    the shards allow it, and so do the preferred leaders, the meta shard's included.

    `leaders` are the shards' leaders now: a shard led by another node than its preferred leader
    is placed again (a new map sends leadership to the preferred leader), and the preferred
    leaders are chosen starting from the leaders now, so that few leaderships move.

    A replica moves from the node holding the most to the node holding the fewest, of a shard the
    latter does not hold yet (the highest-numbered such), until no move evens them out more.
    Replicas on nodes outside `nodes` stay where they are (drain them with `drain_plan`).
    """
    pool = sorted(set(nodes))
    if not pool:
        return []
    replicas = {shard: list(held) for shard, held in shard_map.replicas.items()}
    while True:
        counts = _data_counts(replicas, pool)
        most = max(pool, key=lambda n: (counts[n], n))
        fewest = min(pool, key=lambda n: (counts[n], n))
        if counts[most] - counts[fewest] <= 1:
            break
        movable = [s for s in shard_map.data_shards if most in replicas[s] and fewest not in replicas[s]]
        if not movable:
            break
        held = replicas[max(movable)]
        held[held.index(most)] = fewest
    now = dict(leaders or {})
    for shard, held in replicas.items():  # start from who leads now where it stays a holder
        leader = now.get(shard)
        if leader in held:
            held.remove(leader)
            held.insert(0, leader)
    everyone = sorted({*pool, *(n for held in replicas.values() for n in held)})
    chosen = balanced_leaders(replicas, everyone)
    plan = []
    for shard, held in replicas.items():
        ordered = (chosen[shard], *(n for n in held if n != chosen[shard]))
        if ordered != shard_map.replicas[shard] or now.get(shard, ordered[0]) not in (None, ordered[0]):
            plan.append((shard, ordered))
    return plan


def new_shard(shard_map: ShardMap, nodes: Sequence[int], replication: int) -> Placement:
    """A new data shard's id (one above the highest) and replicas: the `replication` nodes of
    `nodes` holding the fewest data replicas (ties: the lower id), the one leading fewest first."""
    pool = sorted(set(nodes))
    if not 1 <= replication <= len(pool):
        raise ValueError(f"a shard of {replication} replicas needs that many nodes (have {pool})")
    replicas = {shard: list(held) for shard, held in shard_map.replicas.items()}
    counts = _data_counts(replicas, pool)
    chosen = sorted(pool, key=lambda n: (counts[n], n))[:replication]
    preferred = Counter(held[0] for held in replicas.values())
    first = min(chosen, key=lambda n: (preferred[n], counts[n], n))
    return max(shard_map.replicas) + 1, (first, *(n for n in chosen if n != first))


def split_moves(shard_map: ShardMap, shard: int, new: int) -> list[tuple[int, int, int]]:
    """Moves `(partition, shard, new)` of the upper half of `shard`'s partitions (by number)."""
    owned = shard_map.partitions_of(shard)
    if len(owned) < 2:
        raise ValueError(f"shard {shard} owns {len(owned)} partition(s): nothing to split")
    return [(p, shard, new) for p in owned[len(owned) // 2 :]]


def drain_plan(shard_map: ShardMap, node: int, nodes: Sequence[int]) -> list[Placement]:
    """Placements that take every replica off `node`: in each shard it holds, its place goes to the
    node of `nodes` holding the fewest replicas that is not in the shard yet (the meta shard too).

    ValueError if a shard has no such node (every other node holds it already).
    """
    pool = sorted(set(nodes) - {node})
    replicas = {shard: list(held) for shard, held in shard_map.replicas.items()}
    plan: list[Placement] = []
    for shard, held in replicas.items():
        if node not in held:
            continue
        counts: Counter[int] = Counter(dict.fromkeys(pool, 0))
        counts.update(n for other in replicas.values() for n in other if n in counts)
        free = [n for n in pool if n not in held]
        if not free:
            raise ValueError(f"shard {shard} is on {held}: no other node can take node {node}'s replica")
        held.remove(node)
        held.append(min(free, key=lambda n: (counts[n], n)))
        plan.append((shard, tuple(held)))
    return plan
