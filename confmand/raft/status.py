"""A replica's state as operators and tests see it: a frozen copy, safe to keep and compare."""

from __future__ import annotations

from dataclasses import dataclass

from confmand.raft.types import Membership, NodeId, Role


@dataclass(frozen=True, slots=True)
class PeerStatus:
    match: int
    next_index: int
    state: str


@dataclass(frozen=True, slots=True)
class NodeStatus:
    node_id: NodeId
    role: Role
    term: int
    leader_id: NodeId | None
    commit_index: int
    applied_index: int
    last_index: int
    membership: Membership | None
    peers: dict[NodeId, PeerStatus]
