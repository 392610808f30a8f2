"""The typed values the client hands back: version tokens, results, statuses, txn parts.

Everything here is a frozen, slotted dataclass (or a NamedTuple for `Version`)
so results are safe to keep, compare and hash. The client side carries its own
`Version` (the same `term:index` token as the server's) because confctl must
not import confmand. Versions of one shard are ordered by `index`; `term` only
makes the token self-describing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple

Consistency = Literal["linearizable", "version", "stale"]
CONSISTENCIES: tuple[Consistency, ...] = ("linearizable", "version", "stale")
CompareTarget = Literal["version", "value", "exists"]
TxnOpKind = Literal["put", "delete"]


class Version(NamedTuple):
    """A `term:index` token; `Version(0, 0)` is "absent" (the version before a key exists)."""

    term: int
    # Shadows tuple.index(); Raft's own name wins, as on the server side.
    index: int  # type: ignore[assignment]

    def __str__(self) -> str:
        return f"{self.term}:{self.index}"

    @staticmethod
    def parse(text: str) -> Version:
        """`"term:index"` -> Version; raises ValueError naming the bad token."""
        term_text, sep, index_text = text.partition(":")
        if not sep or not term_text.isdigit() or not index_text.isdigit():
            raise ValueError(f"not a version token (want term:index, e.g. 3:1042): {text!r}")
        return Version(int(term_text), int(index_text))

    def newer_than(self, other: Version | None) -> bool:
        """Index order (one shard's order), term breaking ties so the relation is total."""
        return other is None or (self.index, self.term) > (other.index, other.term)


ABSENT = Version(0, 0)


@dataclass(frozen=True, slots=True)
class LeaderHint:
    node_id: int
    address: str


@dataclass(frozen=True, slots=True)
class ReplyMeta:
    """What every successful reply says about who answered and how fresh it is."""

    node_id: int | None = None
    leader: LeaderHint | None = None
    applied: Version | None = None  # reads only: the replica's applied version
    staleness_ms: int | None = None  # stale reads only


@dataclass(frozen=True, slots=True)
class WriteResult:
    """put, delete and cas: the version of the entry that wrote, and what was there before."""

    version: Version
    prev_version: Version | None
    meta: ReplyMeta = field(default_factory=ReplyMeta)


@dataclass(frozen=True, slots=True)
class GetResult:
    key: str
    value: bytes
    version: Version  # mod version
    create_version: Version
    changes: int
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
class Compare:
    """A txn guard: the key's mod version, value or existence equals the operand.

    `version == ABSENT` means "the key must not exist".
    """

    key: str
    target: CompareTarget
    version: Version | None = None
    value: bytes | None = None
    exists: bool | None = None


@dataclass(frozen=True, slots=True)
class TxnOp:
    op: TxnOpKind
    key: str
    value: bytes | None = None  # required for put, None for delete


@dataclass(frozen=True, slots=True)
class TxnOpResult:
    op: str
    key: str
    version: Version
    prev_version: Version | None


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    version: Version
    results: tuple[TxnOpResult, ...]
    meta: ReplyMeta = field(default_factory=ReplyMeta)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    version: Version
    op: str
    value: bytes | None  # None for a delete
    hlc: int
    principal: str


@dataclass(frozen=True, slots=True)
class HistoryResult:
    key: str
    versions: tuple[HistoryEntry, ...]  # newest first
    meta: ReplyMeta = field(default_factory=ReplyMeta)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    hlc: int
    version: Version
    principal: str
    op: str
    key: str
    prev_version: Version | None
    new_version: Version | None


@dataclass(frozen=True, slots=True)
class AuditResult:
    records: tuple[AuditRecord, ...]  # oldest first
    more: bool
    meta: ReplyMeta = field(default_factory=ReplyMeta)


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
