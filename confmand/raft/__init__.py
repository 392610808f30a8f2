"""Raft as a pure, deterministic state machine (see docs/raft.md).

No sockets, clocks, files, threads or global randomness below this package:
time is `RaftNode.tick()`, randomness a seeded `random.Random` passed in,
storage an interface the driver implements (`Storage`, twin `MemoryStorage`).
"""

from confmand.raft.config import FaultSwitches, RaftConfig
from confmand.raft.errors import NotLeader, ProposalRejected, ReadyOrderError
from confmand.raft.messages import Message
from confmand.raft.node import RaftNode
from confmand.raft.ready import Ready, SoftState
from confmand.raft.status import NodeStatus, PeerStatus
from confmand.raft.storage import MemoryStorage, PersistedState, Storage
from confmand.raft.types import (
    Entry,
    EntryKind,
    HardState,
    Membership,
    MembershipChange,
    MembershipChangeKind,
    NodeId,
    ProposalOutcome,
    ProposalStatus,
    ReadState,
    Role,
    ShardId,
    Snapshot,
    SnapshotMeta,
)

__all__ = [
    "Entry",
    "EntryKind",
    "FaultSwitches",
    "HardState",
    "Membership",
    "MembershipChange",
    "MembershipChangeKind",
    "MemoryStorage",
    "Message",
    "NodeId",
    "NodeStatus",
    "NotLeader",
    "PeerStatus",
    "PersistedState",
    "ProposalOutcome",
    "ProposalRejected",
    "ProposalStatus",
    "RaftConfig",
    "RaftNode",
    "ReadState",
    "Ready",
    "ReadyOrderError",
    "Role",
    "ShardId",
    "Snapshot",
    "SnapshotMeta",
    "SoftState",
    "Storage",
]
