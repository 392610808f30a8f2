"""Reply parsing: one msgpack frame -> a typed result, or the `ConfmanError` its `error` names.

Pure functions, no I/O, over the protocol's own reply types (`confmand.protocol`).
`decode` never raises: a frame that is not a msgpack
map with an integer `id` is not a reply to anything we sent, and the caller
ignores it like a reply with an unknown id. Past that point a reply to one of
our requests must be well formed: a missing or mistyped field raises
`ProtocolError` (a node speaking something else is a bug, not a retry case).
Unknown fields are ignored, as docs/protocol.md promises.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from confctl.client.errors import (
    SERVER_ERRORS,
    CasFailed,
    Compacted,
    ProtocolError,
    ServerError,
    WrongShard,
)
from confctl.client.routing import is_endpoint
from confctl.client.types import (
    AuditRecord,
    AuditResult,
    GetResult,
    HistoryResult,
    LeaseResult,
    ListItem,
    ListResult,
    NodeStatus,
    PastListResult,
    PastValue,
    PeerStatus,
    ReplyMeta,
    ShardInfo,
    ShardMapResult,
    TxnResult,
    WriteResult,
)
from confmand.protocol.replies import ErrorBody, decode_reply
from confmand.protocol.shardmap import ShardMap
from confmand.protocol.types import AuditRecord as WireAuditRecord
from confmand.protocol.types import HistoryEntry, LeaderHint, TxnOpResult, Version, WireError

Reply = Mapping[str, Any]
T = TypeVar("T")


def decode(frame: bytes) -> Reply | None:
    """The reply map, or None for anything that is not a protocol reply with an integer id."""
    return decode_reply(frame)


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def field(reply: Reply, name: str, kind: type[T], *, optional: bool = False) -> T | None:
    value = reply.get(name)
    if value is None:
        if optional:
            return None
        raise ProtocolError(f"reply lacks {name!r}")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProtocolError(f"reply field {name!r} is {type(value).__name__}, want {kind.__name__}")
    return value


def need(reply: Reply, name: str, kind: type[T]) -> T:
    value = field(reply, name, kind)
    assert value is not None  # field() raises rather than return None when not optional
    return value


def version(reply: Reply, name: str, *, optional: bool = False) -> Version | None:
    text = field(reply, name, str, optional=optional)
    if text is None:
        return None
    try:
        return Version.parse(text)
    except ValueError as exc:
        raise ProtocolError(f"reply field {name!r}: {exc}") from exc


def need_version(reply: Reply, name: str) -> Version:
    v = version(reply, name)
    assert v is not None
    return v


def maps(reply: Reply, name: str) -> list[Reply]:
    items = need(reply, name, list)
    if not all(isinstance(item, dict) for item in items):
        raise ProtocolError(f"reply field {name!r} must be a list of maps")
    return items


def leader_hint(reply: Reply) -> LeaderHint | None:
    hint = reply.get("leader")
    if not isinstance(hint, dict):
        return None  # nil (no leader known) or junk: either way there is nothing to follow
    node_id, address = hint.get("id"), hint.get("address")
    if not isinstance(node_id, int) or isinstance(node_id, bool):
        return None
    if not isinstance(address, str) or not is_endpoint(address):
        return None
    return LeaderHint(node_id, address)


def shard(reply: Reply) -> int | None:
    """The shard a reply's versions belong to; None from a node-level reply or an older server."""
    return field(reply, "shard", int, optional=True)


def meta(reply: Reply) -> ReplyMeta:
    node = reply.get("node")
    return ReplyMeta(
        node_id=node if _is_int(node) else None,
        leader=leader_hint(reply),
        applied=version(reply, "applied", optional=True),
        staleness_ms=field(reply, "staleness_ms", int, optional=True),
        shard=shard(reply),
    )


def error(reply: Reply) -> ServerError:
    """The exception an `ok: false` reply stands for; unknown codes keep the server's retryable."""
    try:
        body = ErrorBody.from_wire(reply.get("error"))
    except WireError as exc:
        raise ProtocolError(str(exc)) from None
    hint = leader_hint(reply)
    cls = SERVER_ERRORS.get(body.code)
    if cls is CasFailed:
        current = version(body.extra, "current_version", optional=True) or version(
            reply, "current_version", optional=True
        )
        return CasFailed(body.message, retryable=body.retryable, leader=hint, current_version=current)
    if cls is WrongShard:
        epoch, owner = body.extra.get("epoch"), body.extra.get("shard")
        return WrongShard(
            body.message,
            retryable=body.retryable,
            leader=hint,
            epoch=epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None,
            shard=owner if isinstance(owner, int) and not isinstance(owner, bool) else None,
        )
    if cls is Compacted:
        oldest = version(body.extra, "oldest", optional=True)
        return Compacted(body.message, retryable=body.retryable, leader=hint, oldest=oldest)
    if cls is None:
        return ServerError(body.message, retryable=body.retryable, code=body.code, leader=hint)
    return cls(body.message, retryable=body.retryable, leader=hint)


def is_ok(reply: Reply) -> bool:
    ok = reply.get("ok")
    if not isinstance(ok, bool):
        raise ProtocolError("reply lacks a boolean 'ok'")
    return ok


def write_result(reply: Reply) -> WriteResult:
    return WriteResult(
        need_version(reply, "version"),
        version(reply, "prev_version", optional=True),
        meta(reply),
        moved=reply.get("moved") is True,
    )


def get_result(key: str) -> Callable[[Reply], GetResult]:
    def parse(reply: Reply) -> GetResult:
        return GetResult(
            key,
            need(reply, "value", bytes),
            need_version(reply, "version"),
            need_version(reply, "create_version"),
            need(reply, "changes", int),
            meta(reply),
        )

    return parse


def lease_granted(ttl_ms: int) -> Callable[[Reply], LeaseResult]:
    def parse(reply: Reply) -> LeaseResult:
        return LeaseResult(need(reply, "lease", int), ttl_ms, need_version(reply, "version"), meta(reply))

    return parse


def lease_kept(reply: Reply) -> LeaseResult:
    return LeaseResult(need(reply, "lease", int), need(reply, "ttl_ms", int), None, meta(reply))


def past_value(key: str) -> Callable[[Reply], PastValue]:
    """A `get` with `at_version`; NOT_FOUND (absent then) is the shell's to turn into value None."""

    def parse(reply: Reply) -> PastValue:
        at = need_version(reply, "at_version")
        return PastValue(key, need(reply, "value", bytes), need_version(reply, "version"), at, meta(reply))

    return parse


def past_list_result(reply: Reply) -> PastListResult:
    at = need_version(reply, "at_version")
    items = tuple(
        PastValue(need(i, "key", str), need(i, "value", bytes), need_version(i, "version"), at)
        for i in maps(reply, "items")
    )
    more = bool(field(reply, "more", bool, optional=True))
    return PastListResult(items, more, field(reply, "next", str, optional=True), at, meta(reply))


def _list_item(item: Reply) -> ListItem:
    return ListItem(
        need(item, "key", str),
        field(item, "value", bytes, optional=True),
        need_version(item, "version"),
        need_version(item, "create_version"),
        need(item, "changes", int),
    )


def list_result(reply: Reply) -> ListResult:
    items = tuple(_list_item(item) for item in maps(reply, "items"))
    more = bool(field(reply, "more", bool, optional=True))
    return ListResult(items, more, field(reply, "next", str, optional=True), meta(reply))


def txn_result(reply: Reply) -> TxnResult:
    try:
        raw = maps(reply, "results") if reply.get("results") is not None else []
        results = tuple(TxnOpResult.from_wire(r) for r in raw)
    except WireError as exc:
        raise ProtocolError(f"reply field 'results': {exc}") from None
    return TxnResult(
        need(reply, "succeeded", bool),
        need_version(reply, "version"),
        results,
        meta(reply),
        moved=reply.get("moved") is True,
    )


def history_result(key: str) -> Callable[[Reply], HistoryResult]:
    def parse(reply: Reply) -> HistoryResult:
        try:
            entries = tuple(HistoryEntry.from_wire(e) for e in maps(reply, "versions"))
        except WireError as exc:
            raise ProtocolError(f"reply field 'versions': {exc}") from None
        return HistoryResult(key, entries, meta(reply))

    return parse


def audit_result(reply: Reply) -> AuditResult:
    source = shard(reply)
    try:
        records = tuple(_audit_record(WireAuditRecord.from_wire(r), source) for r in maps(reply, "records"))
    except WireError as exc:
        raise ProtocolError(f"reply field 'records': {exc}") from None
    more = bool(field(reply, "more", bool, optional=True))
    next_hlc = field(reply, "next_hlc", int, optional=True)
    if more and next_hlc is None and records:  # a server from before `next_hlc`
        next_hlc = records[-1].hlc
    return AuditResult(records, more, meta(reply), next_hlc)


def _audit_record(r: WireAuditRecord, source: int | None) -> AuditRecord:
    return AuditRecord(
        r.hlc, r.version, r.principal, r.op, r.key, r.prev_version, r.new_version, r.restored_from, source
    )


def shard_map_result(reply: Reply) -> ShardMapResult:
    """The map, each shard's known leader and the nodes' addresses (junk addresses are left out)."""
    try:
        shard_map = ShardMap.from_wire(reply)
    except WireError as exc:
        raise ProtocolError(str(exc)) from None
    leaders: dict[int, int | None] = {}
    members: dict[int, tuple[int, ...]] = {}
    sizes: dict[int, int] = {}
    for item in maps(reply, "shards"):
        shard_id, leader, held = need(item, "id", int), item.get("leader"), item.get("members")
        leaders[shard_id] = leader if _is_int(leader) else None
        if _is_int(item.get("bytes")):
            sizes[shard_id] = int(item["bytes"])
        if isinstance(held, list) and all(_is_int(n) for n in held):
            members[shard_id] = tuple(held)
    addresses: dict[int, str] = {}
    for node in maps(reply, "nodes") if reply.get("nodes") is not None else []:
        node_id, address = node.get("id"), node.get("address")
        # An address that is not an endpoint would only fail at connect: route around that node.
        if isinstance(node_id, int) and isinstance(address, str) and is_endpoint(address):
            addresses[node_id] = address
    shards = tuple(
        ShardInfo(s, nodes, leaders.get(s), len(shard_map.partitions_of(s)), members.get(s, ()), sizes.get(s))
        for s, nodes in shard_map.replicas.items()
    )
    return ShardMapResult(shard_map, shards, addresses, meta(reply))


def _ids(reply: Reply, name: str) -> tuple[int, ...]:
    ids = field(reply, name, list, optional=True) or []
    if not all(_is_int(i) for i in ids):
        raise ProtocolError(f"reply field {name!r} must be a list of node ids")
    return tuple(ids)


def _peers(reply: Reply) -> dict[int, PeerStatus]:
    raw = field(reply, "peers", dict, optional=True) or {}
    peers: dict[int, PeerStatus] = {}
    for node_id, p in raw.items():
        # msgpack map keys may arrive as ints or as their decimal strings, depending on the server.
        nid = int(node_id) if isinstance(node_id, str) and node_id.isdigit() else node_id
        if not _is_int(nid) or not isinstance(p, dict):
            raise ProtocolError("reply field 'peers' must map node ids to maps")
        peers[nid] = PeerStatus(
            need(p, "match_index", int),
            need(p, "next_index", int),
            need(p, "lag", int),
            field(p, "last_contact_ms", int, optional=True),
        )
    return peers


def status_result(endpoint: str) -> Callable[[Reply], NodeStatus]:
    def parse(reply: Reply) -> NodeStatus:
        hosted, led = _shard_counts(reply)
        return NodeStatus(
            endpoint=endpoint,
            reachable=True,
            node_id=need(reply, "node_id", int),
            role=need(reply, "role", str),
            term=need(reply, "term", int),
            leader_id=field(reply, "leader_id", int, optional=True),
            commit_index=need(reply, "commit_index", int),
            applied_index=need(reply, "applied_index", int),
            last_index=field(reply, "last_index", int, optional=True),
            voters=_ids(reply, "voters"),
            learners=_ids(reply, "learners"),
            last_contact_ms=field(reply, "last_contact_ms", int, optional=True),
            peers=_peers(reply),
            shards_hosted=hosted,
            shards_led=led,
            nodes=_ids(reply, "nodes") if "nodes" in reply else None,
            shard_id=field(reply, "shard_id", int, optional=True),
        )

    return parse


def _shard_counts(reply: Reply) -> tuple[int | None, int | None]:
    """From `shards` (one line per hosted shard), if the node sent it: how many, and how many it leads."""
    lines = reply.get("shards")
    if not isinstance(lines, list):
        return None, None
    led = sum(1 for line in lines if isinstance(line, dict) and line.get("role") == "leader")
    return len(lines), led


def backup_fields(reply: Reply) -> dict[str, Any]:
    """A `backup` reply as it came: confmand/backup/collect.py checks and reads it."""
    return dict(reply)


def pong(reply: Reply) -> None:
    return None
