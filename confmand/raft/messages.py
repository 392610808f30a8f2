"""The messages Raft replicas exchange, named as in the Raft paper.

Every message names its shard, its term, its sender (`src`) and its receiver
(`dst`). Messages are frozen and slotted: the core never mutates a message it
received, and a message it sent may be delivered many times (the network may
duplicate it), so it must be safe to share.

Encoding to bytes lives in the transport's codec, not here: the core only ever
sees these objects.

The four classes every replicated write builds (appends, heartbeats and their answers) write
their `__init__` out: a frozen dataclass's generated one runs interpreted even where this module is
compiled, at 0.6 µs a message, where the compiled one takes 0.03 (docs/benchmarks.md, *Session
26*). `tests/unit/test_hot_constructors.py` checks each takes exactly its fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from confmand.raft.types import Entry, NodeId, ShardId, SnapshotMeta


@dataclass(frozen=True, slots=True)
class RequestVote:
    """A candidate asks for a vote; with `pre_vote`, asks whether it *would* get one.

    A pre-vote carries the term the candidate would campaign in (its term + 1)
    and changes no receiver's term or vote. `transfer` marks a campaign
    started by TimeoutNow, which receivers honour even inside a leader lease.
    """

    shard: ShardId
    term: int
    src: NodeId
    dst: NodeId
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False
    transfer: bool = False


@dataclass(frozen=True, slots=True)
class RequestVoteResponse:
    shard: ShardId
    term: int
    src: NodeId
    dst: NodeId
    vote_granted: bool
    pre_vote: bool = False


@dataclass(frozen=True, slots=True)
class AppendEntries:
    """Entries after (prev_log_index, prev_log_term); `entries` may be empty (a probe)."""

    shard: ShardId
    term: int
    src: NodeId
    dst: NodeId
    prev_log_index: int
    prev_log_term: int
    entries: tuple[Entry, ...]
    leader_commit: int

    def __init__(  # noqa: PLR0917 (the fields, in order, as the generated one)
        self,
        shard: ShardId,
        term: int,
        src: NodeId,
        dst: NodeId,
        prev_log_index: int,
        prev_log_term: int,
        entries: tuple[Entry, ...],
        leader_commit: int,
    ) -> None:
        object.__setattr__(self, "shard", shard)
        object.__setattr__(self, "term", term)
        object.__setattr__(self, "src", src)
        object.__setattr__(self, "dst", dst)
        object.__setattr__(self, "prev_log_index", prev_log_index)
        object.__setattr__(self, "prev_log_term", prev_log_term)
        object.__setattr__(self, "entries", entries)
        object.__setattr__(self, "leader_commit", leader_commit)


@dataclass(frozen=True, slots=True)
class AppendEntriesResponse:
    """`success`: the follower's log matches the leader's through `match_index`.

    On a rejection, `reject_index` is the `prev_log_index` that did not match,
    and the conflict hint lets the leader skip a whole term per round trip:
    `conflict_term` is the follower's term at `reject_index` (0 when its log is
    shorter) and `conflict_index` the first index it holds of that term (or its
    last index + 1).
    """

    shard: ShardId
    term: int
    src: NodeId
    dst: NodeId
    success: bool
    match_index: int = 0
    reject_index: int = 0
    conflict_index: int = 0
    conflict_term: int = 0

    def __init__(  # noqa: PLR0917 (the fields, in order, as the generated one)
        self,
        shard: ShardId,
        term: int,
        src: NodeId,
        dst: NodeId,
        success: bool,
        match_index: int = 0,
        reject_index: int = 0,
        conflict_index: int = 0,
        conflict_term: int = 0,
    ) -> None:
        object.__setattr__(self, "shard", shard)
        object.__setattr__(self, "term", term)
        object.__setattr__(self, "src", src)
        object.__setattr__(self, "dst", dst)
        object.__setattr__(self, "success", success)
        object.__setattr__(self, "match_index", match_index)
        object.__setattr__(self, "reject_index", reject_index)
        object.__setattr__(self, "conflict_index", conflict_index)
        object.__setattr__(self, "conflict_term", conflict_term)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Leadership proof without entries; `read_seq` numbers the ReadIndex round it confirms."""

    shard: ShardId
    term: int
    src: NodeId
    dst: NodeId
    leader_commit: int
    read_seq: int
    # The leader goes quiet: a follower that holds exactly the log through leader_commit stops
    # its election timer until the shard wakes (docs/raft.md, *Quiet shards*).
    quiesce: bool = False

    def __init__(  # noqa: PLR0917 (the fields, in order, as the generated one)
        self,
        shard: ShardId,
        term: int,
        src: NodeId,
        dst: NodeId,
        leader_commit: int,
        read_seq: int,
        quiesce: bool = False,
    ) -> None:
        object.__setattr__(self, "shard", shard)
        object.__setattr__(self, "term", term)
        object.__setattr__(self, "src", src)
        object.__setattr__(self, "dst", dst)
        object.__setattr__(self, "leader_commit", leader_commit)
        object.__setattr__(self, "read_seq", read_seq)
        object.__setattr__(self, "quiesce", quiesce)


@dataclass(frozen=True, slots=True)
class HeartbeatResponse:
    shard: ShardId
    term: int
    src: NodeId
    dst: NodeId
    read_seq: int
    last_index: int  # lets the leader notice a follower that lags and resume sending

    def __init__(  # noqa: PLR0917 (the fields, in order, as the generated one)
        self, shard: ShardId, term: int, src: NodeId, dst: NodeId, read_seq: int, last_index: int
    ) -> None:
        object.__setattr__(self, "shard", shard)
        object.__setattr__(self, "term", term)
        object.__setattr__(self, "src", src)
        object.__setattr__(self, "dst", dst)
        object.__setattr__(self, "read_seq", read_seq)
        object.__setattr__(self, "last_index", last_index)


@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    """One chunk of the leader's snapshot; `done` marks the last chunk."""

    shard: ShardId
    term: int
    src: NodeId
    dst: NodeId
    meta: SnapshotMeta
    offset: int
    data: bytes
    done: bool


@dataclass(frozen=True, slots=True)
class InstallSnapshotResponse:
    """`next_offset`: the byte the follower expects next; `installed` once it took the snapshot."""

    shard: ShardId
    term: int
    src: NodeId
    dst: NodeId
    snapshot_index: int
    next_offset: int
    installed: bool


@dataclass(frozen=True, slots=True)
class TimeoutNow:
    """Leadership transfer: the receiver campaigns at once, skipping PreVote and leases."""

    shard: ShardId
    term: int
    src: NodeId
    dst: NodeId


@dataclass(frozen=True, slots=True)
class StaleCheck:
    """A replica that heard no leader for a while, and is no voter (a learner, one its own log
    removed, or one started empty), asks a member whether it still belongs to the shard."""

    shard: ShardId
    term: int
    src: NodeId
    dst: NodeId


@dataclass(frozen=True, slots=True)
class Removed:
    """The receiver is no member of the shard: the membership in force at the sender's
    `commit_index` (its entry there has term `commit_term`) leaves it out, and is committed.

    Sent in answer to any message from a node outside that membership. The receiver deletes
    its replica only if its own log holds no membership that could be newer (docs/raft.md,
    *Leaving a shard*); it never changes its term for this message.
    """

    shard: ShardId
    term: int
    src: NodeId
    dst: NodeId
    commit_index: int
    commit_term: int


Message = (
    RequestVote
    | RequestVoteResponse
    | AppendEntries
    | AppendEntriesResponse
    | Heartbeat
    | HeartbeatResponse
    | InstallSnapshot
    | InstallSnapshotResponse
    | TimeoutNow
    | StaleCheck
    | Removed
)

# Every message class, for dispatch and validation: derived from the union so the two never drift.
MESSAGE_TYPES: tuple[type, ...] = get_args(Message)
