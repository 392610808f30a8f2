"""Nodes added to and removed from the [[peers]] of a running node (SIGHUP), and when that is safe.

What applies while the node runs: a new entry with `joins = true` (the node starts talking to
it; a leader may then place replicas there), and an entry deleted or marked `removed = true`
(the node stops talking to it). Anything else about the peers waits for a restart, and says why:
a changed address (the sockets are connected), a new first-membership node (the first map
and the data dir's recorded shape come from those, so they never change), a first-membership
node deleted rather than marked removed, or a removed node marked back.

A removal applies only once the node holds no replica anywhere: no shard of the map places it
and no local replica counts it a member (`removal_blockers`); else the peers stay as they were
and the log names the shards (`confctl node remove` moves them first). Once removed, its data
dir id is forgotten, so that the same id may come back later with a new, empty dir, unless a
shard's entry 1 names it (a first-membership node or a shard's founder): such a node, started
empty, would write that entry again as if it had never voted, so its id never returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from confmand.config import PeerConfig
from confmand.protocol.shardmap import ShardMap
from confmand.raft import Membership


@dataclass(frozen=True, slots=True)
class PeerChanges:
    added: tuple[PeerConfig, ...] = ()  # new `joins = true` entries
    removed: tuple[int, ...] = ()  # entries deleted or newly marked `removed = true`
    need_restart: tuple[str, ...] = ()  # changes that cannot apply while running, each with why

    @property
    def any(self) -> bool:
        return bool(self.added or self.removed)


def plan_peer_changes(running: Iterable[PeerConfig], new: Iterable[PeerConfig]) -> PeerChanges:
    before = {p.id: p for p in running}
    after = {p.id: p for p in new}
    added: list[PeerConfig] = []
    removed: list[int] = []
    need_restart: list[str] = []
    for node_id, peer in sorted(after.items()):
        old = before.get(node_id)
        if old is None:
            if peer.removed:
                continue
            if peer.joins:
                added.append(peer)
            else:
                need_restart.append(f"peers[{node_id}] (a node new to a running cluster needs joins = true)")
        elif old.removed and not peer.removed:
            need_restart.append(f"peers[{node_id}] (a removed node does not come back: give it a new id)")
        elif peer.removed and not old.removed:
            removed.append(node_id)
        elif not peer.removed and (old.peer_address, old.client_address) != (
            peer.peer_address,
            peer.client_address,
        ):
            need_restart.append(f"peers[{node_id}] addresses")
        elif old.joins != peer.joins:
            need_restart.append(f"peers[{node_id}].joins")
    for node_id, old in sorted(before.items()):
        if node_id in after or old.removed:
            continue
        if old.joins:
            removed.append(node_id)
        else:
            need_restart.append(
                f"peers[{node_id}] (a first-membership node keeps its entry: mark it removed = true)"
            )
    return PeerChanges(tuple(added), tuple(removed), tuple(need_restart))


def removal_blockers(
    node_id: int, shard_map: ShardMap, memberships: Mapping[int, Membership | None]
) -> list[int]:
    """The shards that still place `node_id` in the map or count it a member here."""
    placed = {shard for shard, nodes in shard_map.replicas.items() if node_id in nodes}
    members = {
        shard
        for shard, membership in memberships.items()
        if membership is not None and node_id in membership.voters | membership.learners
    }
    return sorted(placed | members)


def may_forget_dir(node_id: int, initial_voters: frozenset[int], shard_map: ShardMap) -> bool:
    """Whether `node_id` may come back with an empty dir: no shard's entry 1 names it."""
    return node_id not in initial_voters and all(
        node_id not in nodes for nodes in shard_map.founders.values()
    )
