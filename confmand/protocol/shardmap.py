"""The shard map (which shard owns each partition, which nodes hold each shard) and key -> partition.

A key's *namespace* is its text before the first `/` (the whole key if it
has none): `payments` for `payments/db/url`. The namespace, not the key,
picks the partition, so every key of a namespace lives in one shard and a
listing or a transaction inside one namespace stays in one shard.

    partition = crc32(namespace as UTF-8) mod partitions

with CRC-32 as zlib, Ethernet and PNG compute it (polynomial 0x04C11DB7,
reflected, initial and final value 0xFFFFFFFF), which every language has: a
client in another language routes exactly as this one does (docs/sharding.md).

Shard 0 is the meta shard (the node registry and this map); data shards are
1..N. A map carries an epoch that every change bumps, so that a node and a
client can tell which of two maps is newer. `initial_map` spreads replicas and
preferred leaders over the nodes as evenly as the numbers allow.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeGuard

from confmand.protocol.types import WireError

META_SHARD = 0
META_REPLICAS_MAX = 5
NAMESPACE_SEPARATOR = "/"


def namespace_of(key: str) -> str:
    return key.split(NAMESPACE_SEPARATOR, 1)[0]


def partition_of(key: str, partitions: int) -> int:
    """The partition of `key`'s namespace, in [0, partitions)."""
    return zlib.crc32(namespace_of(key).encode("utf-8")) % partitions


@dataclass(frozen=True, slots=True)
class ShardMap:
    epoch: int
    owners: tuple[int, ...]  # partition -> the data shard that owns it
    # shard -> the nodes holding a replica, distinct; the first is the preferred leader
    replicas: Mapping[int, tuple[int, ...]]
    # shard -> its first voters, for each shard added after the first map (`with_shard`): its
    # log entry 1 on every founder; never changed, whatever its replicas become later
    founders: Mapping[int, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem is not None:
            raise WireError(f"not a shard map: {problem}")
        object.__setattr__(self, "replicas", MappingProxyType(dict(sorted(self.replicas.items()))))
        object.__setattr__(self, "founders", MappingProxyType(dict(sorted(self.founders.items()))))

    @property
    def partitions(self) -> int:
        return len(self.owners)

    @property
    def data_shards(self) -> list[int]:
        return [s for s in self.replicas if s != META_SHARD]

    def shard_of(self, key: str) -> int:
        """The data shard that owns `key` (through its namespace's partition)."""
        return self.owners[partition_of(key, len(self.owners))]

    def partitions_of(self, shard: int) -> list[int]:
        return [p for p, owner in enumerate(self.owners) if owner == shard]

    def shards_on(self, node: int) -> list[int]:
        """The shards with a replica on `node`, meta shard first."""
        return [s for s, nodes in self.replicas.items() if node in nodes]

    def preferred_leader(self, shard: int) -> int:
        return self.replicas[shard][0]

    def moved(self, partition: int, shard: int) -> ShardMap:
        """This map with `partition` owned by `shard`, one epoch later."""
        if not 0 <= partition < len(self.owners):
            raise ValueError(f"no partition {partition} (the map has {len(self.owners)})")
        owners = list(self.owners)
        owners[partition] = shard
        return ShardMap(self.epoch + 1, tuple(owners), self.replicas, self.founders)

    def with_replicas(self, shard: int, nodes: tuple[int, ...]) -> ShardMap:
        """This map with `shard` placed on `nodes` (the first its preferred leader), one epoch later."""
        if shard not in self.replicas:
            raise ValueError(f"no shard {shard}")
        return ShardMap(self.epoch + 1, self.owners, {**self.replicas, shard: nodes}, self.founders)

    def with_shard(self, shard: int, nodes: tuple[int, ...]) -> ShardMap:
        """This map with a new data shard on `nodes`, owning no partition yet, one epoch later."""
        if shard in self.replicas:
            raise ValueError(f"shard {shard} exists")
        return ShardMap(
            self.epoch + 1, self.owners, {**self.replicas, shard: nodes}, {**self.founders, shard: nodes}
        )

    # ------------------------------------------------------------------ the wire

    def to_wire(self) -> dict[str, object]:
        """Lists, not maps keyed by integers, which some languages' msgpack cannot decode."""
        return {
            "epoch": self.epoch,
            "owners": list(self.owners),
            "shards": [self.shard_line(shard) for shard in self.replicas],
        }

    def shard_line(self, shard: int) -> dict[str, object]:
        """One shard as the wire lists it: `{id, replicas}`, and `founders` for an added one."""
        line: dict[str, object] = {"id": shard, "replicas": list(self.replicas[shard])}
        if shard in self.founders:
            line["founders"] = list(self.founders[shard])
        return line

    @staticmethod
    def from_wire(raw: object) -> ShardMap:
        """The map in `raw` (as `to_wire` made it, after msgpack); WireError naming what is wrong.

        Other fields of the map and of each shard (a reply's `leader`) are ignored.
        """
        if not isinstance(raw, Mapping):
            raise WireError(f"a shard map must be a map, got {type(raw).__name__}")
        epoch, owners, shards = raw.get("epoch"), raw.get("owners"), raw.get("shards")
        if not isinstance(owners, list) or not all(type(o) is int for o in owners):
            raise WireError("shard map: 'owners' must be a list of shard ids")
        if not isinstance(shards, list):
            raise WireError("shard map: 'shards' must be a list of {id, replicas}")
        nodes: dict[int, tuple[int, ...]] = {}
        founders: dict[int, tuple[int, ...]] = {}
        for item in shards:
            shard = item.get("id") if isinstance(item, Mapping) else None
            held = item.get("replicas") if isinstance(item, Mapping) else None
            if type(shard) is not int or not _node_list(held):
                raise WireError(f"shard map: {item!r} is not {{id, replicas: [node ids]}}")
            if shard in nodes:
                raise WireError(f"shard map: shard {shard} is listed twice")
            nodes[shard] = tuple(held)
            first = item.get("founders")
            if first is not None:
                if not _node_list(first):
                    raise WireError(f"shard map: shard {shard}'s founders {first!r} are not node ids")
                founders[shard] = tuple(first)
        if type(epoch) is not int:
            raise WireError("shard map: 'epoch' must be an integer")
        return ShardMap(epoch, tuple(owners), nodes, founders)


def _node_list(raw: object) -> TypeGuard[list[int]]:
    return isinstance(raw, list) and all(type(n) is int for n in raw)


def _problem(m: ShardMap) -> str | None:
    if m.epoch < 1:
        return f"epoch {m.epoch} is below 1"
    if META_SHARD not in m.replicas:
        return "no meta shard (0)"
    for shard, nodes in m.replicas.items():
        if shard < 0:
            return f"shard id {shard} is negative"
        if not nodes:
            return f"shard {shard} has no replicas"
        if len(set(nodes)) != len(nodes) or min(nodes) < 1:
            return f"shard {shard}'s replicas {list(nodes)} are not distinct node ids >= 1"
    for shard, nodes in m.founders.items():
        if shard not in m.replicas or shard == META_SHARD:
            return f"founders of {shard}, which is not a data shard"
        if not nodes or len(set(nodes)) != len(nodes) or min(nodes) < 1:
            return f"shard {shard}'s founders {list(nodes)} are not distinct node ids >= 1"
    if not m.owners:
        return "no partitions"
    data = set(m.replicas) - {META_SHARD}
    for partition, owner in enumerate(m.owners):
        if owner not in data:
            return f"partition {partition} is owned by {owner}, which is not a data shard"
    return None


def meta_replica_count(nodes: int) -> int:
    """The meta shard's size: the largest odd number up to 5 that the nodes allow."""
    count = min(nodes, META_REPLICAS_MAX)
    return count if count % 2 else count - 1


def initial_map(nodes: Iterable[int], data_shards: int, replication: int, partitions: int) -> ShardMap:
    """The cluster's first map (epoch 1): replicas dealt round the nodes, leaders balanced.

    Data shard s takes `replication` consecutive nodes starting at slot (s-1)*replication + 1
    (the meta shard's leader, the first node, is dealt last), so every node holds the same
    number of data replicas give or take one. Each shard's preferred
    leader (its first replica) is chosen so that leader counts per node, the meta shard's
    included, differ as little as the replicas allow (`balanced_leaders`). Partition p belongs
    to data shard p mod data_shards + 1.
    """
    ids = sorted(set(nodes))
    if not ids or min(ids) < 1:
        raise ValueError(f"need node ids >= 1, got {ids}")
    if not 1 <= replication <= len(ids):
        raise ValueError(f"replication {replication} needs at least that many nodes (have {len(ids)})")
    if data_shards < 1 or partitions < data_shards:
        raise ValueError(f"need 1 <= data_shards <= partitions (got {data_shards} and {partitions})")
    holders: dict[int, list[int]] = {META_SHARD: ids[: meta_replica_count(len(ids))]}
    for shard in range(1, data_shards + 1):
        start = (shard - 1) * replication + 1
        holders[shard] = [ids[(start + r) % len(ids)] for r in range(replication)]
    leaders = balanced_leaders(holders, ids)
    replicas = {s: (leaders[s], *(n for n in held if n != leaders[s])) for s, held in holders.items()}
    owners = tuple(p % data_shards + 1 for p in range(partitions))
    return ShardMap(1, owners, replicas)


def balanced_leaders(holders: Mapping[int, list[int]], nodes: list[int]) -> dict[int, int]:
    """A leader per shard, among its holders, with the leader counts of the nodes balanced.

    Start with each shard's first holder, then, while some node leads two more shards than
    another could, shift leadership along a chain: a node leading the most hands one shard to
    another holder, which hands one of its own on, until a node leading few takes one (an
    augmenting path, found breadth-first). Each shift lowers the sum of squared counts, so it ends.
    """
    leaders = {shard: held[0] for shard, held in holders.items()}
    while True:
        counts = Counter(dict.fromkeys(nodes, 0))
        counts.update(leaders.values())
        most = max(counts.values())
        led_by: dict[int, list[int]] = {n: [] for n in nodes}
        for shard, leader in sorted(leaders.items()):
            led_by[leader].append(shard)
        queue = [n for n in nodes if counts[n] == most]
        came_from: dict[int, tuple[int, int]] = {}  # node -> (node it takes over from, shard)
        seen, found = set(queue), None
        while queue and found is None:
            node = queue.pop(0)
            for shard in led_by[node]:
                for other in holders[shard]:
                    if other in seen:
                        continue
                    seen.add(other)
                    came_from[other] = (node, shard)
                    if counts[other] <= most - 2:
                        found = other
                        break
                    queue.append(other)
                if found is not None:
                    break
        if found is None:
            return leaders
        node = found
        while node in came_from:
            previous, shard = came_from[node]
            leaders[shard] = node
            node = previous
