"""Drive a few RaftNodes by hand: a deterministic in-memory network for the unit tests.

A `Cluster` owns nodes and their `MemoryStorage`s. `drain(id)` plays the
driver for one node, in the order ready.py prescribes: take the Ready,
persist it, record what was applied, read and resolved, then `advance`. The
messages it returns travel only when a test calls `deliver` (or `pump`,
which drains and delivers until the cluster is quiet), so a test can hold,
drop, reorder or duplicate any of them. Nothing here reads a clock; every
node draws from its own `random.Random(seed)`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from confmand.raft import (
    Entry,
    EntryKind,
    HardState,
    Membership,
    MemoryStorage,
    Message,
    NodeId,
    ProposalOutcome,
    RaftConfig,
    RaftNode,
    ReadState,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
)

M = TypeVar("M")


def membership(voters: Iterable[NodeId], learners: Iterable[NodeId] = ()) -> Membership:
    return Membership(frozenset(voters), frozenset(learners))


def entry(term: int, index: int, data: bytes = b"", kind: EntryKind = EntryKind.NORMAL) -> Entry:
    return Entry(term, index, kind, data)


def entries_of_terms(terms: Sequence[int], first_index: int = 1) -> list[Entry]:
    """One NORMAL entry per term given, at consecutive indexes."""
    return [
        entry(term, first_index + k, f"{term}/{first_index + k}".encode()) for k, term in enumerate(terms)
    ]


def storage_with_log(
    voters: Iterable[NodeId],
    terms: Sequence[int],
    *,
    term: int | None = None,
    vote: NodeId | None = None,
    commit: int = 0,
    learners: Iterable[NodeId] = (),
) -> MemoryStorage:
    """A bootstrapped storage that already holds a log with the given entry terms."""
    meta = SnapshotMeta(0, 0, membership(voters, learners))
    hard = HardState(max(terms, default=0) if term is None else term, vote, commit)
    return MemoryStorage(hard, Snapshot(meta, b""), entries_of_terms(terms))


def of_type(messages: Iterable[object], kind: type[M]) -> list[M]:
    return [m for m in messages if isinstance(m, kind)]


@dataclass
class Cluster:
    """Nodes, their storages, a network that can cut links or drop messages, and what each node saw."""

    config: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    nodes: dict[NodeId, RaftNode] = field(default_factory=dict)
    storages: dict[NodeId, MemoryStorage] = field(default_factory=dict)
    applied: dict[NodeId, list[Entry]] = field(default_factory=dict)
    read_states: dict[NodeId, list[ReadState]] = field(default_factory=dict)
    outcomes: dict[NodeId, list[ProposalOutcome]] = field(default_factory=dict)
    delivered: list[Message] = field(default_factory=list)
    cut: set[tuple[NodeId, NodeId]] = field(default_factory=set)
    drop: Callable[[Message], bool] | None = None

    @classmethod
    def of(
        cls,
        voters: Sequence[NodeId] = (1, 2, 3),
        learners: Sequence[NodeId] = (),
        /,
        *,
        seed: int = 0,
        **config: Any,
    ) -> Cluster:
        """A bootstrapped shard: every node starts from the same membership; `config` is RaftConfig's."""
        cluster = cls(config=config, seed=seed)
        for node_id in (*voters, *learners):
            cluster.add(node_id, MemoryStorage.bootstrap(membership(voters, learners)))
        return cluster

    def add(self, node_id: NodeId, storage: MemoryStorage | None = None, **config: Any) -> RaftNode:
        """A node; `storage` defaults to an empty one (a replica joining an existing shard)."""
        storage = MemoryStorage() if storage is None else storage
        settings = RaftConfig(node_id=node_id, **{**self.config, **config})
        node = RaftNode(settings, storage, random.Random(self.seed * 1000 + node_id))
        self.nodes[node_id] = node
        self.storages[node_id] = storage
        self.applied[node_id] = []
        self.read_states[node_id] = []
        self.outcomes[node_id] = []
        return node

    def restart(self, node_id: NodeId) -> RaftNode:
        """A crash and restart: a new node from what its storage holds (everything persisted survives)."""
        settings = self.nodes[node_id].config
        restarted = RaftNode(settings, self.storages[node_id], random.Random(self.seed * 1000 + node_id + 1))
        self.nodes[node_id] = restarted
        return restarted

    def __getitem__(self, node_id: NodeId) -> RaftNode:
        return self.nodes[node_id]

    # ------------------------------------------------------------------ the driver

    def drain(self, node_id: NodeId) -> Ready:
        """One driver cycle: ready, persist, record, advance. The messages are returned, not sent."""
        node = self.nodes[node_id]
        rd = node.ready()
        self.storages[node_id].persist(rd)
        self.applied[node_id].extend(rd.committed_entries)
        self.read_states[node_id].extend(rd.read_states)
        self.outcomes[node_id].extend(rd.outcomes)
        node.advance(rd)
        return rd

    def blocked(self, msg: Message) -> bool:
        if msg.dst not in self.nodes or (msg.src, msg.dst) in self.cut:
            return True
        return self.drop is not None and self.drop(msg)

    def deliver(self, messages: Iterable[Message]) -> None:
        for msg in messages:
            if not self.blocked(msg):
                self.delivered.append(msg)
                self.nodes[msg.dst].step(msg)

    def round(self) -> bool:
        """Drain every node with something to do, in node order, then deliver; False when all were idle."""
        outbox: list[Message] = []
        busy = False
        for node_id, node in self.nodes.items():
            if node.has_ready():
                busy = True
                outbox.extend(self.drain(node_id).messages)
        self.deliver(outbox)
        return busy

    def pump(self, max_rounds: int = 1000) -> None:
        """Rounds until no node has anything to do."""
        for _ in range(max_rounds):
            if not self.round():
                return
        raise AssertionError(f"the cluster did not quiesce in {max_rounds} rounds")

    def tick(self, *node_ids: NodeId, times: int = 1) -> None:
        """Tick the given nodes (all when none given) `times` times, pumping after each tick."""
        for _ in range(times):
            for node_id in node_ids or tuple(self.nodes):
                self.nodes[node_id].tick()
            self.pump()

    # ------------------------------------------------------------------ scenarios

    def elect(self, node_id: NodeId) -> RaftNode:
        """Make `node_id` campaign now; it must win, and its no-op is committed everywhere reachable."""
        node = self.nodes[node_id]
        node.campaign()
        self.pump()
        assert node.role is Role.LEADER, f"node {node_id} did not win: {node.role}"
        return node

    def isolate(self, node_id: NodeId) -> None:
        for other in self.nodes:
            if other != node_id:
                self.cut |= {(node_id, other), (other, node_id)}

    def heal(self) -> None:
        self.cut.clear()
        self.drop = None

    def leaders(self) -> list[NodeId]:
        return [node_id for node_id, node in self.nodes.items() if node.role is Role.LEADER]

    def log_terms(self, node_id: NodeId) -> list[int]:
        return [e.term for e in self.nodes[node_id].log.entries]
