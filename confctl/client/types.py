"""The typed values the client hands back: results and statuses, over the protocol's own types.

Everything here is a frozen, slotted dataclass, so results are safe to keep, compare and
hash. Version tokens, txn parts and results, history entries, audit records and leader
hints are the wire's own types
(`confmand.protocol.types`, the one definition the server uses too), re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from confmand.protocol.shardmap import ShardMap
from confmand.protocol.types import (
    ABSENT,
    Compare,
    CompareTarget,
    HistoryEntry,
    LeaderHint,
    TxnOp,
    TxnOpKind,
    TxnOpResult,
    Version,
)
from confmand.protocol.types import AuditRecord as WireAuditRecord
from confmand.protocol.types import Consistency as ConsistencyMode
from confmand.protocol.value import value_class

__all__ = [
    "ABSENT",
    "CONSISTENCIES",
    "AuditRecord",
    "AuditResult",
    "Compare",
    "CompareTarget",
    "Consistency",
    "GetResult",
    "HistoryEntry",
    "HistoryResult",
    "LeaderHint",
    "LeaseResult",
    "ListItem",
    "ListResult",
    "NodeStatus",
    "PastListResult",
    "PastValue",
    "PeerStatus",
    "ReplyMeta",
    "ShardInfo",
    "ShardMapResult",
    "TxnOp",
    "TxnOpKind",
    "TxnOpResult",
    "TxnResult",
    "Version",
    "WatchBatch",
    "WatchEvent",
    "WriteResult",
]

# The API takes the mode as text; the names are the protocol's.
Consistency = Literal["linearizable", "version", "stale"]
CONSISTENCIES: tuple[Consistency, ...] = ("linearizable", "version", "stale")
assert tuple(m.value for m in ConsistencyMode) == CONSISTENCIES


@dataclass(frozen=True, slots=True)
class ReplyMeta:
    """What every successful reply says about who answered and how fresh it is."""

    node_id: int | None = None
    leader: LeaderHint | None = None
    applied: Version | None = None  # reads only: the replica's applied version
    staleness_ms: int | None = None  # stale reads only
    shard: int | None = None  # whose versions these are (None: unsharded, node-level or merged)
    # Served from the client's local cache while no node answered (cache.py): what the cluster
    # said `cached_age_s` seconds ago, not a read of the cluster at any consistency.
    from_cache: bool = False
    cached_age_s: float | None = None


@value_class  # as its base: a frozen dataclass cannot extend it
class AuditRecord(WireAuditRecord):
    """The wire's audit record and the shard whose log it is from (None from an unsharded cluster).

    Each shard has its own audit log; a merged page interleaves them by HLC, so the
    shard says which log a record's `version` indexes.
    """

    shard: int | None = None


@dataclass(frozen=True, slots=True)
class WriteResult:
    """put, delete and cas: the version of the entry that wrote, and what was there before."""

    version: Version
    prev_version: Version | None
    meta: ReplyMeta = field(default_factory=ReplyMeta)
    # The write was applied before its key's partition moved and answered again after: `version`
    # is the move's in the new shard (the first there that includes the write), not the write's.
    moved: bool = False


@dataclass(frozen=True, slots=True)
class GetResult:
    key: str
    value: bytes
    version: Version  # mod version
    create_version: Version
    changes: int
    meta: ReplyMeta = field(default_factory=ReplyMeta)


@dataclass(frozen=True, slots=True)
class LeaseResult:
    """A lease granted or kept alive: its id (in its namespace's shard) and its TTL. The holder
    may count on it for `ttl_ms` from when it *sent* the request this answers (docs/protocol.md)."""

    lease: int
    ttl_ms: int
    version: Version | None = None  # the grant's entry (None for a keepalive)
    meta: ReplyMeta = field(default_factory=ReplyMeta)


@dataclass(frozen=True, slots=True)
class PastValue:
    """A key as it was at `at_version` (from its kept history): `value` None if it was absent."""

    key: str
    value: bytes | None
    version: Version | None  # its mod version then
    at_version: Version
    meta: ReplyMeta = field(default_factory=ReplyMeta)


@dataclass(frozen=True, slots=True)
class PastListResult:
    """The keys under a prefix that existed at `at_version`, with their values then, paged."""

    items: tuple[PastValue, ...]
    more: bool
    next: str | None
    at_version: Version
    meta: ReplyMeta = field(default_factory=ReplyMeta)


@dataclass(frozen=True, slots=True)
class ListItem:
    key: str
    value: bytes | None  # None with keys_only
    version: Version
    create_version: Version
    changes: int


@dataclass(frozen=True, slots=True)
class ListResult:
    items: tuple[ListItem, ...]
    more: bool
    next: str | None  # pass as `after` for the next page
    meta: ReplyMeta = field(default_factory=ReplyMeta)


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    version: Version
    results: tuple[TxnOpResult, ...]
    meta: ReplyMeta = field(default_factory=ReplyMeta)
    moved: bool = False  # as WriteResult.moved


@dataclass(frozen=True, slots=True)
class HistoryResult:
    key: str
    versions: tuple[HistoryEntry, ...]  # newest first
    meta: ReplyMeta = field(default_factory=ReplyMeta)


@dataclass(frozen=True, slots=True)
class AuditResult:
    records: tuple[AuditRecord, ...]  # oldest first
    more: bool
    meta: ReplyMeta = field(default_factory=ReplyMeta)
    next_hlc: int | None = None  # with `more`: the `after_hlc` of the next page


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """A leader's view of one follower."""

    match_index: int
    next_index: int
    lag: int
    last_contact_ms: int | None


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """One node's own view, as its `status` reply says; `reachable=False` when it did not answer."""

    endpoint: str
    reachable: bool
    node_id: int | None = None
    role: str | None = None
    term: int | None = None
    leader_id: int | None = None
    commit_index: int | None = None
    applied_index: int | None = None
    last_index: int | None = None
    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()
    last_contact_ms: int | None = None
    peers: dict[int, PeerStatus] = field(default_factory=dict)
    error: str | None = None  # why it is unreachable
    shards_hosted: int | None = None  # how many shards the node holds a replica of (None: not said)
    shards_led: int | None = None  # how many of them it leads
    nodes: tuple[int, ...] | None = None  # the cluster's nodes as its config lists them (None: not said)
    shard_id: int | None = None  # the shard the role, term and indexes are of (None: not said)


@dataclass(frozen=True, slots=True)
class ShardInfo:
    id: int  # 0 is the meta shard
    replicas: tuple[int, ...]  # node ids, the preferred leader first
    leader: int | None  # the leader the answering node knows (None: it knows none)
    partitions: int  # how many partitions the shard owns (0 for the meta shard)
    members: tuple[int, ...] = ()  # its members as the answering node knows them (): it holds none
    bytes: int | None = None  # about how much of the answering node's disk it takes (asked with sizes)


@dataclass(frozen=True, slots=True)
class ShardMapResult:
    """The `shard_map` reply: the map, the nodes' client addresses, and each shard's known leader."""

    map: ShardMap
    shards: tuple[ShardInfo, ...]
    addresses: dict[int, str]  # node id -> client address
    meta: ReplyMeta = field(default_factory=ReplyMeta)

    @property
    def epoch(self) -> int:
        return self.map.epoch

    @property
    def partitions(self) -> int:
        return self.map.partitions


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change of a key, as a watch tells it: what the entry at `version` did to `key`."""

    type: Literal["put", "delete"]
    key: str
    value: bytes | None  # None for a delete
    version: Version
    hlc: int
    shard: int | None = None


@dataclass(frozen=True, slots=True)
class WatchBatch:
    """What one watch message said: the changes of whole entries, in log order, and `progress`:
    every change of the shard's keys under the prefix up to this version has been told."""

    events: tuple[WatchEvent, ...]
    progress: Version
    shard: int | None = None
    node_id: int | None = None
