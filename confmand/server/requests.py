"""Client requests: from one msgpack frame to a typed, validated request (docs/protocol.md).

Everything a client sends is checked here, before it reaches Raft or the
state machine: types, sizes, version tokens, ops. A request that fails a
check raises `BadRequest`, carrying the request id when one could be read, so
the reply still echoes it. Nothing here trusts the client: a frame of
garbage is one INVALID_REQUEST reply, never an exception elsewhere.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgpack

from confmand.config import Limits
from confmand.kv.partitions import (
    OP_NAMES,
    Drop,
    Freeze,
    Ingest,
    MapAddShard,
    MapMove,
    MapReplicas,
    PartitionOp,
)
from confmand.protocol.errors import ErrorCode
from confmand.protocol.ops import (
    AuditQuery,
    BackupQuery,
    Cas,
    Delete,
    GetQuery,
    HistoryQuery,
    LeaseExpire,
    LeaseGrant,
    LeaseKeepAlive,
    LeaseRevoke,
    ListQuery,
    Operation,
    Put,
    Query,
    Rollback,
    Txn,
)
from confmand.protocol.requests import (
    ADMIN_OPS,
    DEFAULT_WATCH_PROGRESS_MS,
    INTERNAL_MOVE_OPS,
    MAX_CLIENT_ID_BYTES,
    MAX_PRINCIPAL_BYTES,
    MAX_WATCH_PROGRESS_MS,
    MIN_WATCH_PROGRESS_MS,
    MOVE_OPS,
    NO_REQUEST_ID,
    PROTOCOL_VERSION,
    READ_OPS,
    WATCH_OPS,
    WRITE_OPS,
)
from confmand.protocol.shardmap import NAMESPACE_SEPARATOR, namespace_of
from confmand.protocol.types import Compare, Consistency, Session, TxnOp, Version
from confmand.protocol.value import value_class
from confmand.server.errors import RequestError

MAX_PEEK_FIELDS = 64  # fields looked at for the id of a request too large to decode


@value_class
class Common:
    request_id: int
    op: str
    hlc: int | None
    principal: str
    timeout_ms: int | None
    shard: int | None = None  # the shard the client routed to (None: route by the key)


@value_class
class WriteRequest:
    common: Common
    operation: Operation
    session: Session | None

    @property
    def routing_key(self) -> str | None:
        """A key whose namespace every key of the write shares (None: a txn naming no key)."""
        keys = _write_keys(self.operation)
        return keys[0] if keys else None


@value_class
class ReadRequest:
    common: Common
    query: Query
    consistency: Consistency
    min_version: Version | None

    @property
    def routing_key(self) -> str | None:
        """A key of the one namespace the read is within (None: it may span namespaces)."""
        query = self.query
        if isinstance(query, GetQuery | HistoryQuery | LeaseKeepAlive):
            return query.key
        if isinstance(query, ListQuery | AuditQuery) and NAMESPACE_SEPARATOR in query.prefix:
            return query.prefix
        return None


@value_class
class MoveRequest:
    """A step of a partition move: `move_partition` from an operator, the others from a node."""

    common: Common
    step: PartitionOp


@value_class
class AdminRequest:
    common: Common  # op is "ping", "status" or "shard_map"
    sizes: bool = False  # shard_map: each hosted shard's size on disk too


@value_class
class WatchRequest:
    """Stream the changes of keys under `prefix` after `from_version` (None: after what is applied)."""

    common: Common
    prefix: str
    from_version: Version | None
    progress_ms: int = DEFAULT_WATCH_PROGRESS_MS

    @property
    def routing_key(self) -> str | None:
        return self.prefix if NAMESPACE_SEPARATOR in self.prefix else None


@value_class
class CancelWatchRequest:
    common: Common
    watch_id: int  # the id of the `watch` request, on the same connection


Request = WriteRequest | ReadRequest | AdminRequest | MoveRequest | WatchRequest | CancelWatchRequest


class BadRequest(Exception):
    """A request that cannot be served as sent; `request_id` is -1 when none could be read."""

    def __init__(self, request_id: int, error: RequestError) -> None:
        super().__init__(error.message)
        self.request_id = request_id
        self.error = error


def _invalid(message: str) -> RequestError:
    return RequestError(ErrorCode.INVALID_REQUEST, message)


def decode_frame(payload: bytes, limits: Limits) -> dict[str, Any]:
    """The request map of a frame; raises BadRequest(NO_REQUEST_ID, ...) when it is not one."""
    if len(payload) > limits.max_request_bytes:
        raise BadRequest(
            peek_request_id(payload),
            RequestError(
                ErrorCode.TOO_LARGE,
                f"request of {len(payload)} bytes is over max_request_bytes={limits.max_request_bytes}",
            ),
        )
    try:
        obj = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise BadRequest(
            NO_REQUEST_ID, _invalid(f"not a msgpack frame ({type(exc).__name__}: {exc})")
        ) from exc
    if not isinstance(obj, dict):
        raise BadRequest(
            NO_REQUEST_ID, _invalid(f"a request must be a msgpack map, got {type(obj).__name__}")
        )
    return obj


def peek_request_id(payload: bytes) -> int:
    """The `id` of a request map read without decoding its other values (-1 when there is none).

    An oversized request is not served, but its answer (TOO_LARGE) must carry the client's id,
    or the client drops it and waits out its whole timeout. Values are skipped, not built,
    and only the first MAX_PEEK_FIELDS fields are looked at.
    """
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=len(payload))
    try:
        unpacker.feed(payload)
        fields = unpacker.read_map_header()
        for _ in range(min(fields, MAX_PEEK_FIELDS)):
            if unpacker.unpack() == "id":
                return request_id_of({"id": unpacker.unpack()})
            unpacker.skip()
    except Exception:  # garbage in any of msgpack's many ways: no id to be had
        return NO_REQUEST_ID
    return NO_REQUEST_ID


def request_id_of(obj: dict[str, Any]) -> int:
    rid = obj.get("id")
    return rid if isinstance(rid, int) and not isinstance(rid, bool) and 0 <= rid < 1 << 63 else NO_REQUEST_ID


def parse_request(payload: bytes, limits: Limits) -> Request:
    obj = decode_frame(payload, limits)
    rid = request_id_of(obj)
    try:
        return parse_map(obj, limits)
    except RequestError as exc:
        raise BadRequest(rid, exc) from exc


def parse_map(obj: dict[str, Any], limits: Limits) -> Request:
    fields = _Fields(obj, limits)
    version = fields.integer("v")
    if version != PROTOCOL_VERSION:
        raise RequestError(ErrorCode.UNSUPPORTED, f"protocol version {version} (this server speaks 1)")
    rid = fields.integer("id")
    op = fields.text("op")
    principal = fields.optional_text("principal") or "anonymous"
    if len(principal.encode()) > MAX_PRINCIPAL_BYTES:
        raise RequestError(ErrorCode.TOO_LARGE, f"principal is over {MAX_PRINCIPAL_BYTES} bytes")
    common = Common(
        rid,
        op,
        fields.optional_int("hlc"),
        principal,
        fields.optional_int("timeout_ms"),
        fields.optional_int("shard"),
    )
    if op in WRITE_OPS:
        return WriteRequest(common, _operation(op, fields), _session(fields))
    if op in READ_OPS:
        return _read(common, fields)
    if op in ADMIN_OPS:
        return AdminRequest(common, sizes=op == "shard_map" and bool(fields.optional_bool("sizes")))
    if op in MOVE_OPS or op in INTERNAL_MOVE_OPS:
        return MoveRequest(common, _move_step(op, fields))
    if op in WATCH_OPS:
        return _watch(common, fields)
    raise RequestError(ErrorCode.UNSUPPORTED, f"unknown op {op!r}")


def _watch(common: Common, f: _Fields) -> WatchRequest | CancelWatchRequest:
    if common.op == "cancel_watch":
        return CancelWatchRequest(common, f.integer("watch_id"))
    prefix = f.optional_text("prefix") or ""
    if len(prefix.encode()) > f.limits.max_key_bytes or "\x00" in prefix:
        raise _invalid(f"a watch prefix is at most max_key_bytes={f.limits.max_key_bytes} bytes, without NUL")
    progress_ms = f.optional_int("progress_ms")
    if progress_ms is None:
        progress_ms = DEFAULT_WATCH_PROGRESS_MS
    if not MIN_WATCH_PROGRESS_MS <= progress_ms <= MAX_WATCH_PROGRESS_MS:
        raise _invalid(f"field 'progress_ms' must be in [{MIN_WATCH_PROGRESS_MS}, {MAX_WATCH_PROGRESS_MS}]")
    return WatchRequest(common, prefix, f.optional_version("from_version"), progress_ms)


def _move_step(op: str, f: _Fields) -> PartitionOp:
    if op == "move_partition":
        return Freeze(f.integer("partition"), f.integer("to_shard"))
    if op == "set_replicas":
        nodes = f.obj.get("replicas")
        if not isinstance(nodes, list) or not nodes or not all(type(n) is int and n >= 1 for n in nodes):
            raise _invalid("set_replicas needs 'replicas': a non-empty list of node ids")
        if len(set(nodes)) != len(nodes):
            raise _invalid(f"set_replicas: {nodes} names a node twice")
        return MapReplicas(f.integer("data_shard"), tuple(nodes))
    if op == "add_shard":
        nodes = f.obj.get("replicas")
        if not isinstance(nodes, list) or not nodes or not all(type(n) is int and n >= 1 for n in nodes):
            raise _invalid("add_shard needs 'replicas': a non-empty list of node ids")
        if len(set(nodes)) != len(nodes):
            raise _invalid(f"add_shard: {nodes} names a node twice")
        shard = f.integer("data_shard")
        if shard < 1:
            raise _invalid(f"add_shard: 'data_shard' must be a data shard id >= 1, got {shard}")
        return MapAddShard(shard, tuple(nodes))
    if op == "partition_ingest":
        export = f.optional_bytes("export")
        if export is None:
            raise _invalid("partition_ingest needs 'export'")
        return Ingest(f.integer("partition"), f.integer("gen"), f.integer("from_shard"), export)
    if op == "partition_drop":
        return Drop(f.integer("partition"), f.integer("gen"))
    return MapMove(f.integer("partition"), f.integer("from_shard"), f.integer("to_shard"), f.integer("gen"))


def move_step_frame(request_id: int, step: PartitionOp, shard: int, hlc: int) -> bytes:
    """The request a node sends another for a step of a move it drives (parsed by `_move_step`)."""
    fields: dict[str, object] = {"v": PROTOCOL_VERSION, "id": request_id, "shard": shard, "hlc": hlc}
    fields["op"] = "move_partition" if isinstance(step, Freeze) else OP_NAMES[type(step)]
    fields.update(dataclasses.asdict(step))
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    return packed


def _operation(op: str, f: _Fields) -> Operation:
    if op == "put":
        return Put(f.key("key"), f.value("value"), f.optional_int("lease") or 0)
    if op == "delete":
        return Delete(f.key("key"))
    if op == "lease_grant":
        return LeaseGrant(f.key("key"), f.integer("ttl_ms"))
    if op == "lease_revoke":
        return LeaseRevoke(f.key("key"), f.integer("lease"))
    if op == "rollback":
        return Rollback(f.key("key"), f.version("to_version"), f.optional_version("expected_version"))
    if op == "cas":
        key, value = f.key("key"), f.value("value")
        expected_version = f.optional_version("expected_version")
        expected_value = f.optional_value("expected_value")
        if (expected_version is None) == (expected_value is None):
            raise _invalid("cas needs exactly one of expected_version and expected_value")
        return Cas(key, value, expected_version, expected_value, f.optional_int("lease") or 0)
    return _txn(f)


def _txn(f: _Fields) -> Txn:
    compare = tuple(_compare(_Fields(c, f.limits, "compare[]")) for c in f.maps("compare"))
    success = tuple(_txn_op(_Fields(o, f.limits, "success[]")) for o in f.maps("success"))
    failure = tuple(_txn_op(_Fields(o, f.limits, "failure[]")) for o in f.maps("failure", required=False))
    txn = Txn(compare, success, failure)
    namespaces = sorted({namespace_of(key) for key in _write_keys(txn)})
    if len(namespaces) > 1:
        # A namespace lives in one shard; two of them may not, now or after a move.
        shown = ", ".join(repr(n) for n in namespaces[:3]) + (", ..." if len(namespaces) > 3 else "")
        raise _invalid(
            f"a transaction stays within one namespace (the text before the first '/'): got {shown}"
        )
    return txn


def _write_keys(operation: Operation) -> list[str]:
    if isinstance(operation, Txn):
        return [c.key for c in operation.compare] + [o.key for o in (*operation.success, *operation.failure)]
    if isinstance(operation, LeaseExpire):
        return []  # the daemon's own, never parsed from a client
    return [operation.key]


def _compare(f: _Fields) -> Compare:
    key = f.key("key")
    target = f.text("target")
    if target == "version":
        return Compare(key, "version", version=f.version("version"))
    if target == "value":
        return Compare(key, "value", value=f.value("value"))
    if target == "exists":
        return Compare(key, "exists", exists=f.boolean("exists"))
    raise _invalid(f"compare target must be version, value or exists, not {target!r}")


def _txn_op(f: _Fields) -> TxnOp:
    op = f.text("op")
    if op == "put":
        return TxnOp("put", f.key("key"), f.value("value"))
    if op == "delete":
        return TxnOp("delete", f.key("key"))
    raise _invalid(f"a txn op must be put or delete, not {op!r}")


def _session(f: _Fields) -> Session | None:
    client_id = f.optional_bytes("client_id")
    if client_id is None:
        return None
    if not 1 <= len(client_id) <= MAX_CLIENT_ID_BYTES:
        raise _invalid(f"client_id must be 1 to {MAX_CLIENT_ID_BYTES} bytes")
    seq = f.integer("seq")
    ack = f.optional_int("ack") or 0
    if seq < 1:
        raise _invalid("seq must be >= 1")
    if ack > seq:
        raise _invalid("ack must not be above seq")
    return Session(client_id, seq, ack)


def _read(common: Common, f: _Fields) -> ReadRequest:
    mode_text = f.optional_text("consistency") or Consistency.LINEARIZABLE.value
    try:
        consistency = Consistency(mode_text)
    except ValueError:
        raise _invalid(f"consistency must be linearizable, version or stale, not {mode_text!r}") from None
    min_version = f.optional_version("min_version")
    if consistency is Consistency.VERSION and min_version is None:
        raise _invalid("consistency 'version' needs min_version")
    query: Query
    if common.op == "backup":
        if consistency is not Consistency.LINEARIZABLE or common.shard is None:
            raise _invalid("backup names its shard and is linearizable (served by the shard's leader)")
        query = BackupQuery(common.shard)
    elif common.op == "get":
        query = GetQuery(f.key("key"), f.optional_version("at_version"))
    elif common.op == "list":
        query = ListQuery(
            f.optional_text("prefix") or "",
            f.optional_text("after"),
            f.limit("limit", 100),
            bool(f.optional_bool("keys_only")),
            f.optional_version("at_version"),
        )
    elif common.op == "lease_keepalive":
        if consistency is not Consistency.LINEARIZABLE:
            raise _invalid("lease_keepalive is answered by the shard's leader: linearizable only")
        query = LeaseKeepAlive(f.key("key"), f.integer("lease"))
    elif common.op == "history":
        query = HistoryQuery(f.key("key"), f.limit("limit", 100))
    else:
        query = AuditQuery(
            f.optional_int("after_hlc"), f.limit("limit", 100), f.optional_text("prefix") or ""
        )
    return ReadRequest(common, query, consistency, min_version)


class _Fields:
    """Typed access to a request map; each accessor raises a RequestError naming the field."""

    def __init__(self, obj: object, limits: Limits, where: str = "") -> None:
        if not isinstance(obj, dict):
            raise _invalid(f"{where or 'request'} must be a map")
        self.obj: dict[str, Any] = obj
        self.limits = limits
        self.where = where

    def _name(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def _get(self, name: str, required: bool) -> Any:
        value = self.obj.get(name)
        if value is None and required:
            raise _invalid(f"missing field {self._name(name)!r}")
        return value

    def integer(self, name: str) -> int:
        value = self._get(name, True)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 63:
            raise _invalid(f"field {self._name(name)!r} must be an integer in [0, 2^63)")
        return value

    def optional_int(self, name: str) -> int | None:
        return None if self.obj.get(name) is None else self.integer(name)

    def limit(self, name: str, default: int) -> int:
        value = self.optional_int(name)
        if value is None:
            return default
        if not 1 <= value <= self.limits.max_list_limit:
            raise _invalid(f"field {self._name(name)!r} must be in [1, {self.limits.max_list_limit}]")
        return value

    def text(self, name: str) -> str:
        value = self._get(name, True)
        if not isinstance(value, str):
            raise _invalid(f"field {self._name(name)!r} must be a string")
        return value

    def optional_text(self, name: str) -> str | None:
        return None if self.obj.get(name) is None else self.text(name)

    def boolean(self, name: str) -> bool:
        value = self._get(name, True)
        if not isinstance(value, bool):
            raise _invalid(f"field {self._name(name)!r} must be a boolean")
        return value

    def optional_bool(self, name: str) -> bool | None:
        return None if self.obj.get(name) is None else self.boolean(name)

    def optional_bytes(self, name: str) -> bytes | None:
        value = self.obj.get(name)
        if value is None:
            return None
        if isinstance(value, str):
            value = value.encode()
        if not isinstance(value, bytes):
            raise _invalid(f"field {self._name(name)!r} must be bytes")
        return value

    def key(self, name: str) -> str:
        key = self.text(name)
        size = len(key.encode())
        if size == 0:
            raise _invalid(f"field {self._name(name)!r}: a key must not be empty")
        if size > self.limits.max_key_bytes:
            raise RequestError(
                ErrorCode.TOO_LARGE, f"key of {size} bytes is over max_key_bytes={self.limits.max_key_bytes}"
            )
        if "\x00" in key:
            raise _invalid(f"field {self._name(name)!r}: a key must not contain NUL")
        return key

    def value(self, name: str) -> bytes:
        value = self.optional_value(name)
        if value is None:
            raise _invalid(f"missing field {self._name(name)!r}")
        return value

    def optional_value(self, name: str) -> bytes | None:
        value = self.optional_bytes(name)
        if value is not None and len(value) > self.limits.max_value_bytes:
            raise RequestError(
                ErrorCode.TOO_LARGE,
                f"value of {len(value)} bytes is over max_value_bytes={self.limits.max_value_bytes}",
            )
        return value

    def version(self, name: str) -> Version:
        token = self.text(name)
        try:
            return Version.parse(token)
        except ValueError as exc:
            raise _invalid(f"field {self._name(name)!r}: {exc}") from None

    def optional_version(self, name: str) -> Version | None:
        return None if self.obj.get(name) is None else self.version(name)

    def maps(self, name: str, required: bool = True) -> list[object]:
        value = self._get(name, required)
        if value is None:
            return []
        if not isinstance(value, list):
            raise _invalid(f"field {self._name(name)!r} must be a list")
        if len(value) > self.limits.max_txn_ops:
            raise RequestError(
                ErrorCode.TOO_LARGE,
                f"txn {name} has {len(value)} items, over max_txn_ops={self.limits.max_txn_ops}",
            )
        return value
