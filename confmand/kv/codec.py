"""The wire form of a `Command`: the bytes of a NORMAL log entry, encoded and decoded strictly.

Every replica decodes the same entry bytes, so decoding must be total and deterministic:
`decode_command` returns a `Command` or raises `CommandDecodeError` naming what is wrong, and
never any other exception type. `encode_command` validates with the same rules (raising
`InvalidCommandError`, a `CommandDecodeError`), so nothing the leader proposes can fail to
decode on a follower.

Wire form (msgpack, see commands.py): `[1, op_code, hlc, principal, session, body]` with
`session` = `None` or `[client_id, seq, ack]` and, by op code:

| op code | op | body |
|---|---|---|
| 1 | put | `[key, value]` |
| 2 | delete | `[key]` |
| 3 | cas | `[key, value, expected_version, expected_value]` (exactly one not nil) |
| 4 | txn | `[compares, success, failure]`; compare `[key, target, operand]`, op `[op, key, value]` |

A version is `[term, index]`. Integers are unsigned 64-bit; `bool` never passes for an int.

Rules beyond the types (the limits the wire format itself needs; the server enforces its
configurable, smaller limits before proposing):
- a key is a non-empty str without NUL ("\\x00"): history records place a NUL after the key
  (see records.py), so a NUL inside a key could alias another key's history;
- `principal` is at most 128 UTF-8 bytes; `client_id` is 1-64 bytes; `seq >= 1`;
- a txn branch has at most 65,535 ops (audit records number a txn's changes in 2 bytes).
"""

from __future__ import annotations

from typing import Any, Final

import msgpack

from confmand.kv.commands import (
    Cas,
    Command,
    CommandDecodeError,
    Compare,
    Delete,
    LeaseExpire,
    LeaseGrant,
    LeaseRevoke,
    Operation,
    Put,
    Rollback,
    Session,
    Txn,
    TxnOp,
)
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
from confmand.protocol.types import Version

WIRE_FORMAT: Final = 1
OP_PUT: Final = 1
OP_DELETE: Final = 2
OP_CAS: Final = 3
OP_TXN: Final = 4
# The steps of a partition move (kv/partitions.py): written by the daemon, never by a client.
OP_FREEZE: Final = 5
OP_INGEST: Final = 6
OP_DROP: Final = 7
OP_MAP_MOVE: Final = 8
OP_MAP_REPLICAS: Final = 9
OP_MAP_ADD_SHARD: Final = 10
OP_ROLLBACK: Final = 11
OP_LEASE_GRANT: Final = 12
OP_LEASE_REVOKE: Final = 13
OP_LEASE_EXPIRE: Final = 14

MAX_UINT64: Final = 2**64 - 1
MAX_PRINCIPAL_BYTES: Final = 128
MAX_CLIENT_ID_BYTES: Final = 64
MAX_TXN_BRANCH_OPS: Final = 65_535

_TARGETS: Final = ("version", "value", "exists")
_TXN_OPS: Final = ("put", "delete")


class InvalidCommandError(CommandDecodeError):
    """A `Command` breaks a rule of the wire format, found before encoding it."""


# ---------------------------------------------------------------- encoding


def encode_command(cmd: Command) -> bytes:
    """The entry bytes of `cmd`; raises `InvalidCommandError` if it could not decode again."""
    try:
        validate_command(cmd)
    except CommandDecodeError as exc:
        raise InvalidCommandError(str(exc)) from None
    session = None if cmd.session is None else [cmd.session.client_id, cmd.session.seq, cmd.session.ack]
    op_code, body = _encode_op(cmd.op)
    packed: bytes = msgpack.packb([WIRE_FORMAT, op_code, cmd.hlc, cmd.principal, session, body])
    return packed


def _version(v: Version | None) -> list[int] | None:
    return None if v is None else [v.term, v.index]


def _encode_op(op: Operation | PartitionOp) -> tuple[int, list[Any]]:
    if isinstance(op, Freeze):
        return OP_FREEZE, [op.partition, op.to_shard]
    if isinstance(op, Ingest):
        return OP_INGEST, [op.partition, op.gen, op.from_shard, op.export]
    if isinstance(op, Drop):
        return OP_DROP, [op.partition, op.gen]
    if isinstance(op, MapMove):
        return OP_MAP_MOVE, [op.partition, op.from_shard, op.to_shard, op.gen]
    if isinstance(op, MapReplicas):
        return OP_MAP_REPLICAS, [op.data_shard, list(op.nodes)]
    if isinstance(op, MapAddShard):
        return OP_MAP_ADD_SHARD, [op.shard, list(op.nodes)]
    if isinstance(op, Put):
        return OP_PUT, [op.key, op.value, op.lease] if op.lease else [op.key, op.value]
    if isinstance(op, Delete):
        return OP_DELETE, [op.key]
    if isinstance(op, Cas):
        body = [op.key, op.value, _version(op.expected_version), op.expected_value]
        return OP_CAS, [*body, op.lease] if op.lease else body
    if isinstance(op, LeaseGrant):
        return OP_LEASE_GRANT, [op.key, op.ttl_ms]
    if isinstance(op, LeaseRevoke):
        return OP_LEASE_REVOKE, [op.key, op.lease]
    if isinstance(op, LeaseExpire):
        return OP_LEASE_EXPIRE, [op.lease]
    if isinstance(op, Rollback):
        return OP_ROLLBACK, [op.key, _version(op.to_version), _version(op.expected_version)]
    compares = [[c.key, c.target, _compare_operand(c)] for c in op.compare]
    return OP_TXN, [compares, _encode_txn_ops(op.success), _encode_txn_ops(op.failure)]


def _compare_operand(c: Compare) -> object:
    if c.target == "version":
        return _version(c.version)
    if c.target == "value":
        return c.value
    return c.exists


def _encode_txn_ops(ops: tuple[TxnOp, ...]) -> list[list[object]]:
    return [[o.op, o.key, o.value] for o in ops]


# ---------------------------------------------------------------- validation (shared by both ways)


def validate_key(key: object, where: str = "key") -> str:
    """`key` if it is a non-empty str without NUL that encodes as UTF-8, else CommandDecodeError."""
    if not isinstance(key, str):
        raise CommandDecodeError(f"{where}: want a str, got {type(key).__name__}")
    if not key:
        raise CommandDecodeError(f"{where}: must not be empty")
    if "\x00" in key:
        raise CommandDecodeError(f"{where}: must not contain NUL (\\x00): {key!r}")
    _utf8(key, where)
    return key


def _utf8(text: str, where: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise CommandDecodeError(f"{where}: not encodable as UTF-8: {text!r}") from None


def _uint(value: object, where: str, low: int = 0) -> int:
    if type(value) is not int:
        raise CommandDecodeError(f"{where}: want an int, got {type(value).__name__}")
    if not low <= value <= MAX_UINT64:
        raise CommandDecodeError(f"{where}: {value} is outside {low}..2**64-1")
    return value


def _bytes(value: object, where: str) -> bytes:
    if type(value) is not bytes:
        raise CommandDecodeError(f"{where}: want bytes, got {type(value).__name__}")
    return value


def validate_command(cmd: Command) -> None:
    """Raise CommandDecodeError naming the first rule of the wire format that `cmd` breaks."""
    _uint(cmd.hlc, "hlc")
    if not isinstance(cmd.principal, str):
        raise CommandDecodeError(f"principal: want a str, got {type(cmd.principal).__name__}")
    if len(_utf8(cmd.principal, "principal")) > MAX_PRINCIPAL_BYTES:
        raise CommandDecodeError(f"principal: longer than {MAX_PRINCIPAL_BYTES} bytes")
    if cmd.session is not None:
        _validate_session(cmd.session)
    _validate_op(cmd.op)


def _validate_session(s: Session) -> None:
    if not 1 <= len(_bytes(s.client_id, "session.client_id")) <= MAX_CLIENT_ID_BYTES:
        raise CommandDecodeError(f"session.client_id: want 1-{MAX_CLIENT_ID_BYTES} bytes")
    _uint(s.seq, "session.seq", low=1)
    _uint(s.ack, "session.ack")


def _validate_version(v: object, where: str) -> None:
    if not isinstance(v, Version):
        raise CommandDecodeError(f"{where}: want a Version, got {type(v).__name__}")
    _uint(v.term, f"{where}.term")
    _uint(v.index, f"{where}.index")


def _validate_op(op: object) -> None:
    if isinstance(op, Put):
        validate_key(op.key, "put.key")
        _bytes(op.value, "put.value")
        _uint(op.lease, "put.lease")
    elif isinstance(op, LeaseGrant):
        validate_key(op.key, "lease_grant.key")
        _uint(op.ttl_ms, "lease_grant.ttl_ms", low=1)
    elif isinstance(op, LeaseRevoke):
        validate_key(op.key, "lease_revoke.key")
        _uint(op.lease, "lease_revoke.lease", low=1)
    elif isinstance(op, LeaseExpire):
        _uint(op.lease, "lease_expire.lease", low=1)
    elif isinstance(op, Delete):
        validate_key(op.key, "delete.key")
    elif isinstance(op, Cas):
        validate_key(op.key, "cas.key")
        _bytes(op.value, "cas.value")
        _uint(op.lease, "cas.lease")
        if (op.expected_version is None) == (op.expected_value is None):
            raise CommandDecodeError("cas: want exactly one of expected_version, expected_value")
        if op.expected_version is not None:
            _validate_version(op.expected_version, "cas.expected_version")
        else:
            _bytes(op.expected_value, "cas.expected_value")
    elif isinstance(op, Rollback):
        validate_key(op.key, "rollback.key")
        _validate_version(op.to_version, "rollback.to_version")
        if op.expected_version is not None:
            _validate_version(op.expected_version, "rollback.expected_version")
    elif isinstance(op, MapReplicas):
        _uint(op.data_shard, "set_replicas.shard")
        for node in op.nodes:
            _uint(node, "set_replicas.node", low=1)
    elif isinstance(op, MapAddShard):
        _uint(op.shard, "add_shard.shard", low=1)
        for node in op.nodes:
            _uint(node, "add_shard.node", low=1)
    elif isinstance(op, Freeze | Ingest | Drop | MapMove):
        for name, value in ((n, getattr(op, n)) for n in op.__dataclass_fields__):
            if name == "export":
                _bytes(value, "ingest.export")
            else:
                _uint(value, f"{OP_NAMES[type(op)]}.{name}")
    elif isinstance(op, Txn):
        for i, c in enumerate(op.compare):
            _validate_compare(c, f"txn.compare[{i}]")
        _validate_branch(op.success, "txn.success")
        _validate_branch(op.failure, "txn.failure")
    else:
        raise CommandDecodeError(f"op: not an operation: {type(op).__name__}")


def _validate_compare(c: object, where: str) -> None:
    if not isinstance(c, Compare):
        raise CommandDecodeError(f"{where}: want a Compare, got {type(c).__name__}")
    validate_key(c.key, f"{where}.key")
    operands = {"version": c.version, "value": c.value, "exists": c.exists}
    if c.target not in operands:
        raise CommandDecodeError(f"{where}.target: want one of {_TARGETS}, got {c.target!r}")
    if any(v is not None for t, v in operands.items() if t != c.target):
        raise CommandDecodeError(f"{where}: only the {c.target} operand may be set")
    if c.target == "version":
        _validate_version(c.version, f"{where}.version")
    elif c.target == "value":
        _bytes(c.value, f"{where}.value")
    elif type(c.exists) is not bool:
        raise CommandDecodeError(f"{where}.exists: want a bool, got {type(c.exists).__name__}")


def _validate_branch(ops: object, where: str) -> None:
    if not isinstance(ops, tuple):
        raise CommandDecodeError(f"{where}: want a tuple of TxnOp")
    if len(ops) > MAX_TXN_BRANCH_OPS:
        raise CommandDecodeError(f"{where}: more than {MAX_TXN_BRANCH_OPS} ops")
    for i, o in enumerate(ops):
        at = f"{where}[{i}]"
        if not isinstance(o, TxnOp):
            raise CommandDecodeError(f"{at}: want a TxnOp, got {type(o).__name__}")
        if o.op not in _TXN_OPS:
            raise CommandDecodeError(f"{at}.op: want one of {_TXN_OPS}, got {o.op!r}")
        validate_key(o.key, f"{at}.key")
        if o.op == "put":
            _bytes(o.value, f"{at}.value")
        elif o.value is not None:
            raise CommandDecodeError(f"{at}.value: a delete carries no value")


# ---------------------------------------------------------------- decoding


def decode_command(data: bytes) -> Command:
    """The `Command` in entry bytes; raises `CommandDecodeError` (only) on anything malformed."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CommandDecodeError(f"want bytes, got {type(data).__name__}")
    try:
        raw = msgpack.unpackb(
            data if type(data) is bytes else bytes(data), raw=False, use_list=True, strict_map_key=True
        )
    except Exception as exc:  # msgpack raises many types (ExtraData, ValueError, ...): one answer
        raise CommandDecodeError(f"not msgpack: {type(exc).__name__}: {exc}") from None
    fields = _list(raw, "command", 6)
    if type(fields[0]) is not int or fields[0] != WIRE_FORMAT:
        raise CommandDecodeError(f"unsupported command format {fields[0]!r} (want {WIRE_FORMAT})")
    # Each field is checked once, here, by every rule validate_command applies to it (the
    # codec tests check that both ways agree), so decoding does not validate a second time.
    op = _decode_op(fields[1], fields[5])
    principal = fields[3]
    if not isinstance(principal, str):
        raise CommandDecodeError(f"principal: want a str, got {type(principal).__name__}")
    if len(principal) > MAX_PRINCIPAL_BYTES // 4 and len(_utf8(principal, "principal")) > MAX_PRINCIPAL_BYTES:
        raise CommandDecodeError(f"principal: longer than {MAX_PRINCIPAL_BYTES} bytes")
    session = None if fields[4] is None else _decode_session(fields[4])
    return Command(op=op, hlc=_uint(fields[2], "hlc"), principal=principal, session=session)


def _list(value: object, where: str, length: int) -> list[Any]:
    if not isinstance(value, list):
        raise CommandDecodeError(f"{where}: want an array, got {type(value).__name__}")
    if len(value) != length:
        raise CommandDecodeError(f"{where}: want {length} fields, got {len(value)}")
    return value


def _decode_session(raw: object) -> Session:
    client_id, seq, ack = _list(raw, "session", 3)
    if not 1 <= len(_bytes(client_id, "session.client_id")) <= MAX_CLIENT_ID_BYTES:
        raise CommandDecodeError(f"session.client_id: want 1-{MAX_CLIENT_ID_BYTES} bytes")
    return Session(
        client_id=client_id,
        seq=_uint(seq, "session.seq", low=1),
        ack=_uint(ack, "session.ack"),
    )


def _decode_version(raw: object, where: str) -> Version:
    term, index = _list(raw, where, 2)
    return Version(_uint(term, f"{where}.term"), _uint(index, f"{where}.index"))


def _decode_op(op_code: object, body: object) -> Operation | PartitionOp:
    if type(op_code) is int and OP_FREEZE <= op_code <= OP_MAP_ADD_SHARD:
        return _decode_partition_op(op_code, body)
    if op_code == OP_PUT and type(op_code) is int:
        fields = _list(body, "put", 3) if isinstance(body, list) and len(body) == 3 else _list(body, "put", 2)
        key, value = fields[:2]
        lease = _uint(fields[2], "put.lease", low=1) if len(fields) == 3 else 0
        return Put(key=validate_key(key, "put.key"), value=_bytes(value, "put.value"), lease=lease)
    if op_code == OP_LEASE_GRANT and type(op_code) is int:
        key, ttl_ms = _list(body, "lease_grant", 2)
        return LeaseGrant(validate_key(key, "lease_grant.key"), _uint(ttl_ms, "lease_grant.ttl_ms", low=1))
    if op_code == OP_LEASE_REVOKE and type(op_code) is int:
        key, lease = _list(body, "lease_revoke", 2)
        return LeaseRevoke(validate_key(key, "lease_revoke.key"), _uint(lease, "lease_revoke.lease", low=1))
    if op_code == OP_LEASE_EXPIRE and type(op_code) is int:
        (lease,) = _list(body, "lease_expire", 1)
        return LeaseExpire(_uint(lease, "lease_expire.lease", low=1))
    if op_code == OP_DELETE and type(op_code) is int:
        (key,) = _list(body, "delete", 1)
        return Delete(key=validate_key(key, "delete.key"))
    if op_code == OP_CAS and type(op_code) is int:
        fields = _list(body, "cas", 5) if isinstance(body, list) and len(body) == 5 else _list(body, "cas", 4)
        key, value, expected_version, expected_value = fields[:4]
        lease = _uint(fields[4], "cas.lease", low=1) if len(fields) == 5 else 0
        if (expected_version is None) == (expected_value is None):
            raise CommandDecodeError("cas: want exactly one of expected_version, expected_value")
        return Cas(
            key=validate_key(key, "cas.key"),
            value=_bytes(value, "cas.value"),
            expected_version=None
            if expected_version is None
            else _decode_version(expected_version, "cas.expected_version"),
            expected_value=None if expected_value is None else _bytes(expected_value, "cas.expected_value"),
            lease=lease,
        )
    if op_code == OP_ROLLBACK and type(op_code) is int:
        key, to_version, expected_version = _list(body, "rollback", 3)
        return Rollback(
            key=validate_key(key, "rollback.key"),
            to_version=_decode_version(to_version, "rollback.to_version"),
            expected_version=None
            if expected_version is None
            else _decode_version(expected_version, "rollback.expected_version"),
        )
    if op_code == OP_TXN and type(op_code) is int:
        compares, success, failure = _list(body, "txn", 3)
        return Txn(
            compare=tuple(
                _decode_compare(c, f"txn.compare[{i}]") for i, c in enumerate(_seq(compares, "txn.compare"))
            ),
            success=_decode_branch(success, "txn.success"),
            failure=_decode_branch(failure, "txn.failure"),
        )
    raise CommandDecodeError(f"unknown op code {op_code!r}")


def _decode_partition_op(op_code: int, body: object) -> PartitionOp:
    if op_code == OP_FREEZE:
        partition, to_shard = _list(body, "partition_freeze", 2)
        return Freeze(_uint(partition, "freeze.partition"), _uint(to_shard, "freeze.to_shard"))
    if op_code == OP_INGEST:
        partition, gen, from_shard, export = _list(body, "partition_ingest", 4)
        return Ingest(
            _uint(partition, "ingest.partition"),
            _uint(gen, "ingest.gen", low=1),
            _uint(from_shard, "ingest.from_shard"),
            _bytes(export, "ingest.export"),
        )
    if op_code == OP_DROP:
        partition, gen = _list(body, "partition_drop", 2)
        return Drop(_uint(partition, "drop.partition"), _uint(gen, "drop.gen", low=1))
    if op_code == OP_MAP_REPLICAS:
        shard, nodes = _list(body, "set_replicas", 2)
        held = tuple(_uint(n, "set_replicas.node", low=1) for n in _seq(nodes, "set_replicas.nodes"))
        return MapReplicas(_uint(shard, "set_replicas.shard"), held)
    if op_code == OP_MAP_ADD_SHARD:
        shard, nodes = _list(body, "add_shard", 2)
        held = tuple(_uint(n, "add_shard.node", low=1) for n in _seq(nodes, "add_shard.nodes"))
        return MapAddShard(_uint(shard, "add_shard.shard", low=1), held)
    partition, from_shard, to_shard, gen = _list(body, "map_move", 4)
    return MapMove(
        _uint(partition, "map_move.partition"),
        _uint(from_shard, "map_move.from_shard"),
        _uint(to_shard, "map_move.to_shard"),
        _uint(gen, "map_move.gen", low=1),
    )


def _seq(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise CommandDecodeError(f"{where}: want an array, got {type(value).__name__}")
    return value


def _decode_compare(raw: object, where: str) -> Compare:
    key, target, operand = _list(raw, where, 3)
    key = validate_key(key, f"{where}.key")
    if target == "version":
        return Compare(key=key, target="version", version=_decode_version(operand, f"{where}.version"))
    if target == "value":
        return Compare(key=key, target="value", value=_bytes(operand, f"{where}.value"))
    if target == "exists":
        if type(operand) is not bool:
            raise CommandDecodeError(f"{where}.exists: want a bool, got {type(operand).__name__}")
        return Compare(key=key, target="exists", exists=operand)
    raise CommandDecodeError(f"{where}.target: want one of {_TARGETS}, got {target!r}")


def _decode_branch(raw: object, where: str) -> tuple[TxnOp, ...]:
    if not isinstance(raw, list):
        raise CommandDecodeError(f"{where}: want an array, got {type(raw).__name__}")
    if len(raw) > MAX_TXN_BRANCH_OPS:
        raise CommandDecodeError(f"{where}: more than {MAX_TXN_BRANCH_OPS} ops")
    ops: list[TxnOp] = []
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        op, key, value = _list(item, at, 3)
        if op == "put":
            ops.append(TxnOp("put", validate_key(key, f"{at}.key"), _bytes(value, f"{at}.value")))
        elif op == "delete":
            if value is not None:
                raise CommandDecodeError(f"{at}.value: a delete carries no value")
            ops.append(TxnOp("delete", validate_key(key, f"{at}.key")))
        else:
            raise CommandDecodeError(f"{at}.op: want one of {_TXN_OPS}, got {op!r}")
    return tuple(ops)
