"""Request building: validate a method's arguments and turn them into the protocol's request fields.

Pure functions, no I/O. Each returns a `Request`: the op-specific fields (the
envelope — `v`, `id`, `hlc`, `principal`, `timeout_ms`, session — is added per
attempt by the call, see `confctl.client.call`). A bad argument raises
`InvalidArgument` here, before anything is sent; limits that only the server
knows (key, value and request sizes) are left to the server's TOO_LARGE.
Read consistency is settled here except the session default for `version`
reads, which the session fills in (`Session.read_floor`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from confctl.client.errors import InvalidArgument
from confctl.client.types import CONSISTENCIES, Compare, Consistency, TxnOp, Version
from confmand.protocol import ops
from confmand.protocol.requests import CONSISTENT_READ_OPS, WRITE_OPS
from confmand.protocol.shardmap import namespace_of

LIMIT_MAX = 1000
READ_OPS = CONSISTENT_READ_OPS  # the reads that carry a consistency mode
Op = Literal[
    "ping",
    "put",
    "get",
    "delete",
    "cas",
    "rollback",
    "lease_grant",
    "lease_revoke",
    "lease_keepalive",
    "list",
    "txn",
    "history",
    "audit",
    "backup",
    "status",
    "shard_map",
    "move_partition",
    "set_replicas",
    "add_shard",
]
Fields = dict[str, object]


@dataclass(frozen=True, slots=True)
class Request:
    op: Op
    fields: Fields = field(default_factory=dict)
    consistency: Consistency | None = None  # reads only
    min_version: Version | None = None  # explicit floor of a `version` read

    @property
    def is_write(self) -> bool:
        return self.op in WRITE_OPS


def key_arg(key: object, name: str = "key") -> str:
    if not isinstance(key, str) or not key:
        raise InvalidArgument(f"{name} must be a non-empty string, got {key!r}")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgument(f"{name} is not valid UTF-8: {key!r}") from exc
    return key


def value_arg(value: object, name: str = "value") -> bytes:
    """bytes as they are, str as UTF-8; anything else is refused (no silent str() of objects)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidArgument(f"{name} is not valid UTF-8") from exc
    raise InvalidArgument(f"{name} must be bytes or str, got {type(value).__name__}")


def version_arg(token: object, name: str) -> Version:
    if isinstance(token, Version):
        return token
    if isinstance(token, str):
        try:
            return Version.parse(token)
        except ValueError as exc:
            raise InvalidArgument(f"{name}: {exc}") from exc
    raise InvalidArgument(f"{name} must be a Version or a 'term:index' string, got {token!r}")


def int_arg(value: object, name: str, low: int, high: int | None = None) -> int:
    # bool is an int to Python but never what a caller meant by a count.
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise InvalidArgument(f"{name} must be {bound}, got {value}")
    return value


def consistency_arg(consistency: object, min_version: object) -> tuple[Consistency, Version | None]:
    for mode in CONSISTENCIES:
        if consistency == mode:
            break
    else:
        raise InvalidArgument(f"consistency must be one of {', '.join(CONSISTENCIES)}, got {consistency!r}")
    if min_version is None:
        return mode, None
    if mode != "version":
        raise InvalidArgument("min_version applies only to consistency='version'")
    return mode, version_arg(min_version, "min_version")


def put(key: object, value: object, lease: object = 0) -> Request:
    return Request(
        "put", ops.Put(key_arg(key), value_arg(value), _lease_arg(lease, allow_none=True)).to_wire()
    )


def _lease_arg(lease: object, *, allow_none: bool = False) -> int:
    low = 0 if allow_none else 1
    return int_arg(lease, "lease", low)


def lease_grant(key: object, ttl_ms: object) -> Request:
    return Request("lease_grant", ops.LeaseGrant(key_arg(key), int_arg(ttl_ms, "ttl_ms", 1)).to_wire())


def lease_revoke(key: object, lease: object) -> Request:
    return Request("lease_revoke", ops.LeaseRevoke(key_arg(key), _lease_arg(lease)).to_wire())


def lease_keepalive(key: object, lease: object) -> Request:
    return Request("lease_keepalive", ops.LeaseKeepAlive(key_arg(key), _lease_arg(lease)).to_wire())


def delete(key: object) -> Request:
    return Request("delete", ops.Delete(key_arg(key)).to_wire())


def cas(
    key: object,
    value: object,
    expected_version: object = None,
    expected_value: object = None,
    lease: object = 0,
) -> Request:
    checked_key, checked_value = key_arg(key), value_arg(value)
    checked_lease = _lease_arg(lease, allow_none=True)
    if (expected_version is None) == (expected_value is None):
        raise InvalidArgument("cas needs exactly one of expected_version or expected_value")
    if expected_version is not None:
        version = version_arg(expected_version, "expected_version")
        shape = ops.Cas(checked_key, checked_value, expected_version=version, lease=checked_lease)
    else:
        expected = value_arg(expected_value, "expected_value")
        shape = ops.Cas(checked_key, checked_value, expected_value=expected, lease=checked_lease)
    return Request("cas", shape.to_wire())


def rollback(key: object, to_version: object, expected_version: object = None) -> Request:
    expected = None if expected_version is None else version_arg(expected_version, "expected_version")
    shape = ops.Rollback(key_arg(key), version_arg(to_version, "to_version"), expected)
    return Request("rollback", shape.to_wire())


def get_at(key: object, at_version: object) -> Request:
    """A linearizable `get` of the key as it was at `at_version` (its kept history)."""
    query = ops.GetQuery(key_arg(key), version_arg(at_version, "at_version"))
    return Request("get", query.to_wire(), "linearizable")


def list_at(prefix: object, at_version: object, *, after: object = None, limit: object = 100) -> Request:
    if not isinstance(prefix, str):
        raise InvalidArgument(f"prefix must be a string, got {prefix!r}")
    checked_after = None if after is None else key_arg(after, "after")
    at = version_arg(at_version, "at_version")
    query = ops.ListQuery(prefix, checked_after, int_arg(limit, "limit", 1, LIMIT_MAX), at_version=at)
    return Request("list", query.to_wire(), "linearizable")


def get(key: object, consistency: object = "linearizable", min_version: object = None) -> Request:
    mode, floor = consistency_arg(consistency, min_version)
    return Request("get", ops.GetQuery(key_arg(key)).to_wire(), mode, floor)


def list_(
    prefix: object,
    *,
    after: object = None,
    limit: object = 100,
    keys_only: object = False,
    consistency: object = "linearizable",
    min_version: object = None,
) -> Request:
    if not isinstance(prefix, str):
        raise InvalidArgument(f"prefix must be a string, got {prefix!r}")
    checked_limit = int_arg(limit, "limit", 1, LIMIT_MAX)
    checked_after = None if after is None else key_arg(after, "after")
    if not isinstance(keys_only, bool):
        raise InvalidArgument(f"keys_only must be a bool, got {keys_only!r}")
    mode, floor = consistency_arg(consistency, min_version)
    query = ops.ListQuery(prefix, checked_after, checked_limit, keys_only)
    return Request("list", query.to_wire(), mode, floor)


def history(key: object, limit: object = 100, consistency: object = "linearizable") -> Request:
    mode, _ = consistency_arg(consistency, None)
    query = ops.HistoryQuery(key_arg(key), int_arg(limit, "limit", 1, LIMIT_MAX))
    return Request("history", query.to_wire(), mode)


def audit(after_hlc: object = None, limit: object = 100, prefix: object = "") -> Request:
    checked_limit = int_arg(limit, "limit", 1, LIMIT_MAX)
    checked_after = None if after_hlc is None else int_arg(after_hlc, "after_hlc", 0, 2**64 - 1)
    if not isinstance(prefix, str):
        raise InvalidArgument(f"prefix must be a str, got {type(prefix).__name__}")
    return Request("audit", ops.AuditQuery(checked_after, checked_limit, prefix).to_wire())


def backup(shard: object) -> Request:
    """Shard `shard`'s whole state (0: the meta shard), from its leader only."""
    if not isinstance(shard, int) or isinstance(shard, bool) or shard < 0:
        raise InvalidArgument(f"shard must be a shard id >= 0, got {shard!r}")
    return Request("backup", {"shard": shard})


def status() -> Request:
    return Request("status")


def ping() -> Request:
    return Request("ping")


def shard_map(sizes: bool = False) -> Request:
    """The map; with `sizes`, each shard the answering node holds says its bytes on disk too."""
    return Request("shard_map", {"sizes": True} if sizes else {})


def set_replicas(shard: object, nodes: object) -> Request:
    """Place shard `shard` (0: the meta shard) on `nodes` (the first its preferred leader); its
    leader follows."""
    if not isinstance(shard, int) or isinstance(shard, bool) or shard < 0:
        raise InvalidArgument(f"shard must be a shard id >= 0, got {shard!r}")
    return Request("set_replicas", {"data_shard": shard, "replicas": _node_ids(nodes)})


def add_shard(shard: object, nodes: object) -> Request:
    """Add data shard `shard` (an id the map does not have yet) on `nodes`, owning no partition."""
    if not isinstance(shard, int) or isinstance(shard, bool) or shard < 1:
        raise InvalidArgument(f"shard must be a data shard id >= 1, got {shard!r}")
    return Request("add_shard", {"data_shard": shard, "replicas": _node_ids(nodes)})


def _node_ids(nodes: object) -> list[int]:
    if not isinstance(nodes, list | tuple) or not nodes:
        raise InvalidArgument(f"nodes must be a non-empty list of node ids, got {nodes!r}")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in nodes) or len(
        set(nodes)
    ) != len(nodes):
        raise InvalidArgument(f"nodes must be distinct node ids >= 1, got {list(nodes)}")
    return list(nodes)


def move_partition(partition: object, to_shard: object) -> Request:
    """Start moving `partition` to data shard `to_shard` (any node passes it to the right leader)."""
    for name, value in (("partition", partition), ("to_shard", to_shard)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidArgument(f"{name} must be an int >= 0, got {value!r}")
    return Request("move_partition", {"partition": partition, "to_shard": to_shard})


def _compare(c: object) -> Compare:
    """`c` checked, with its operand in its wire type (a version token given as text parsed)."""
    if not isinstance(c, Compare):
        raise InvalidArgument(f"a txn compare must be a Compare, got {c!r}")
    key = key_arg(c.key, "compare key")
    operands = {"version": c.version, "value": c.value, "exists": c.exists}
    given = [name for name, operand in operands.items() if operand is not None]
    if given != [c.target]:
        raise InvalidArgument(f"compare on {c.key!r} with target {c.target!r} needs exactly that operand")
    if c.target == "version":
        return Compare(key, "version", version=version_arg(c.version, "compare version"))
    if c.target == "value":
        return Compare(key, "value", value=value_arg(c.value, "compare value"))
    if isinstance(c.exists, bool):
        return Compare(key, "exists", exists=c.exists)
    raise InvalidArgument(f"compare exists must be a bool, got {c.exists!r}")


def _txn_op(op: object) -> TxnOp:
    if not isinstance(op, TxnOp):
        raise InvalidArgument(f"a txn op must be a TxnOp, got {op!r}")
    if op.op == "put":
        if op.value is None:
            raise InvalidArgument(f"txn put of {op.key!r} needs a value")
        return TxnOp("put", key_arg(op.key), value_arg(op.value))
    if op.op == "delete":
        if op.value is not None:
            raise InvalidArgument(f"txn delete of {op.key!r} takes no value")
        return TxnOp("delete", key_arg(op.key))
    raise InvalidArgument(f"txn op must be 'put' or 'delete', got {op.op!r}")


def txn(compare: Sequence[object], success: Sequence[object], failure: Sequence[object] = ()) -> Request:
    for name, seq in (("compare", compare), ("success", success), ("failure", failure)):
        if isinstance(seq, str | bytes) or not isinstance(seq, Sequence):
            raise InvalidArgument(f"txn {name} must be a sequence")
    shape = ops.Txn(
        tuple(_compare(c) for c in compare),
        tuple(_txn_op(op) for op in success),
        tuple(_txn_op(op) for op in failure),
    )
    # A namespace lives in one shard and a transaction commits in one shard's log.
    keys = [c.key for c in shape.compare] + [op.key for op in (*shape.success, *shape.failure)]
    namespaces = list(dict.fromkeys(namespace_of(key) for key in keys))
    if len(namespaces) > 1:
        first, second = namespaces[:2]
        raise InvalidArgument(f"a transaction stays within one namespace: it names {first!r} and {second!r}")
    return Request("txn", shape.to_wire())


def txn_key(fields: Fields) -> str | None:
    """The first key a txn's wire fields name (all are of one namespace), or None for an empty txn."""
    for part in ("compare", "success", "failure"):
        items = fields.get(part)
        if isinstance(items, list):
            for item in items:
                if isinstance(item, dict) and isinstance(item.get("key"), str):
                    key: str = item["key"]
                    return key
    return None
