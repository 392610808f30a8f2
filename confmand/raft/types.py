"""The nouns of the Raft core: log entries, hard state, membership, snapshots.

Invariants:
- An `Entry` is immutable once created; its `(term, index)` names it uniquely
  across the cluster (the Log Matching Property makes it so).
- `Entry` is a NamedTuple, not a dataclass: it is created once per proposal on
  the hottest path of the core, and tuple construction is several times
  cheaper than a frozen dataclass's.
- A `Membership` always has at least one voter, and no node is both a voter
  and a learner.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

NodeId = int
ShardId = int


class EntryKind(enum.IntEnum):
    """What a log entry carries; the state machine sees only NORMAL data."""

    NORMAL = 0
    NOOP = 1  # appended by every new leader, so that it can commit by counting
    MEMBERSHIP = 2  # data is an encoded Membership; takes effect when appended


class Entry(NamedTuple):
    term: int
    # Shadows tuple.index(); Raft's own name for the field wins, and nothing here calls that method.
    index: int  # type: ignore[assignment]
    kind: EntryKind
    data: bytes


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be on stable storage before any message that depends on it is sent."""

    term: int = 0
    vote: NodeId | None = None
    commit: int = 0

    def __init__(self, term: int = 0, vote: NodeId | None = None, commit: int = 0) -> None:
        object.__setattr__(self, "term", term)
        object.__setattr__(self, "vote", vote)
        object.__setattr__(self, "commit", commit)


@dataclass(frozen=True, slots=True)
class Membership:
    """The replicas of a shard: voters count toward quorums, learners only receive the log."""

    voters: frozenset[NodeId]
    learners: frozenset[NodeId] = frozenset()

    def __post_init__(self) -> None:
        if not self.voters:
            raise ValueError("a membership needs at least one voter")
        if self.voters & self.learners:
            raise ValueError(f"nodes {sorted(self.voters & self.learners)} are both voter and learner")

    @property
    def members(self) -> frozenset[NodeId]:
        return self.voters | self.learners

    def encode(self) -> bytes:
        """A compact, deterministic encoding: `v1,2,3;l4` (no codec dependency in the core)."""
        voters = ",".join(str(n) for n in sorted(self.voters))
        learners = ",".join(str(n) for n in sorted(self.learners))
        return f"v{voters};l{learners}".encode()

    @staticmethod
    def decode(data: bytes) -> Membership:
        text = data.decode()
        voters_part, learners_part = text.split(";")
        if not voters_part.startswith("v") or not learners_part.startswith("l"):
            raise ValueError(f"not an encoded membership: {text!r}")

        def ids(part: str) -> frozenset[NodeId]:
            return frozenset(int(n) for n in part[1:].split(",") if n)

        return Membership(ids(voters_part), ids(learners_part))


class MembershipChangeKind(enum.Enum):
    ADD_LEARNER = "add_learner"
    PROMOTE = "promote"  # learner -> voter
    REMOVE = "remove"  # voter or learner, the leader included


@dataclass(frozen=True, slots=True)
class MembershipChange:
    kind: MembershipChangeKind
    node: NodeId

    def apply_to(self, current: Membership) -> Membership:
        """The membership after this change; raises ValueError if the change makes no sense."""
        node = self.node
        if self.kind is MembershipChangeKind.ADD_LEARNER:
            if node in current.members:
                raise ValueError(f"node {node} is already a member")
            return Membership(current.voters, current.learners | {node})
        if self.kind is MembershipChangeKind.PROMOTE:
            if node not in current.learners:
                raise ValueError(f"node {node} is not a learner")
            return Membership(current.voters | {node}, current.learners - {node})
        if node not in current.members:
            raise ValueError(f"node {node} is not a member")
        if current.voters == {node}:
            raise ValueError("cannot remove the last voter")
        return Membership(current.voters - {node}, current.learners - {node})


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """Where a snapshot sits in the log, and the membership in force at that point."""

    index: int
    term: int
    membership: Membership


@dataclass(frozen=True, slots=True)
class Snapshot:
    meta: SnapshotMeta
    data: bytes


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read may be served once the state machine has applied `index`."""

    context: bytes
    index: int

    def __init__(self, context: bytes, index: int) -> None:
        object.__setattr__(self, "context", context)
        object.__setattr__(self, "index", index)


class ProposalStatus(enum.Enum):
    COMMITTED = "committed"
    DROPPED = "dropped"  # will never commit: another entry committed at its index
    UNKNOWN = "unknown"  # a snapshot replaced the log before the outcome could be seen


@dataclass(frozen=True, slots=True)
class ProposalOutcome:
    """The fate of the proposals this node made at `first_index..last_index` in `term`.

    Reported once, when this node's commit index passes `last_index`: the
    committed entry at each index either is the proposal (COMMITTED) or is not
    (DROPPED, final: it can never commit). Ranges keep a batch of proposals
    one object, not one per entry.
    """

    term: int
    first_index: int
    last_index: int
    status: ProposalStatus

    def __init__(self, term: int, first_index: int, last_index: int, status: ProposalStatus) -> None:
        object.__setattr__(self, "term", term)
        object.__setattr__(self, "first_index", first_index)
        object.__setattr__(self, "last_index", last_index)
        object.__setattr__(self, "status", status)


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"
