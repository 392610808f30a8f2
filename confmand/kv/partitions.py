"""Which partitions a data shard owns, and the four commands that move one to another shard.

A shard starts owning the partitions the first map gives it (`Ownership.initial`); a record of
kind `p` per partition that ever moved overrides that:

| state | meaning | requests for its keys |
|---|---|---|
| `OWNED` | moved here (by an ingest of move `gen`) | served |
| `LEAVING` | frozen for move `gen` to shard `peer` | refused: PARTITION_MOVING (retryable) |
| `GONE` | moved to shard `peer` by move `gen`; its records dropped | refused: WRONG_SHARD naming `peer` |

A move of partition P from shard S to shard T (docs/sharding.md, *Moving a partition*):
1. `Freeze(P, T)` on S: P becomes LEAVING with gen = its last gen + 1. Every write of P's keys
   after it in S's log is refused at apply, so what S holds of P is final from here on.
2. `Ingest(P, gen, S, export)` on T: P's keys, their history, their audit records and S's
   sessions (a retried write must find its cached answer on T) are installed; P is OWNED.
3. `MapMove(P, S, T, gen)` on the meta shard: the stored map names T as P's owner, one epoch on.
4. `Drop(P, gen)` on S: P's records go; P is GONE.
Every step is idempotent by `gen`, so the driver may repeat any of them after a lost reply, a
crash or a change of leader (a stale repeat of an older move's step changes nothing).

Versions are a shard's log positions, so a moved key is restamped: its create and mod versions
become the ingest entry's (a cas against a version read before the move fails with CAS_FAILED
and the new version), and its history records keep their own versions and HLC stamps but are
filed under indexes just below the ingest's, so that T's later writes sort after them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Final

import msgpack

from confmand.kv.changes import KeyChanges
from confmand.kv.leases import ATTACHED, LEASE, attachment_key, lease_key, leases_of
from confmand.kv.overlay import OverlayStore
from confmand.kv.queries import get_key
from confmand.kv.records import (
    AUDIT,
    DATA,
    HISTORY,
    HISTORY_HEADER,
    RESULT,
    SESSION,
    DataRecord,
    SessionHeader,
    audit_key,
    data_key,
    decode_audit,
    decode_result,
    encode_history_header,
    encode_result,
    history_key,
    history_range,
    pack,
    result_bound,
    result_key,
    result_prefix,
    unpack,
)
from confmand.kv.results import (
    INVALID_REQUEST,
    PARTITION_MOVING,
    WRONG_SHARD,
    RecordDecodeError,
    WriteResult,
    expect_array,
    expect_bytes,
    expect_int,
    expect_list,
)
from confmand.kv.store import KVStore
from confmand.protocol.shardmap import ShardMap, partition_of
from confmand.protocol.types import Version, WireError
from confmand.protocol.value import value_class

PARTITION: Final = b"p"
OWNED: Final = 0
LEAVING: Final = 1
GONE: Final = 2
MAP_KEY: Final = "shardmap"  # the meta shard's map (confmand/server/meta.py)
MOVE_GEN_PREFIX: Final = "moves/"  # the meta shard's last move gen per partition


@value_class
class Ownership:
    """What a shard's state machine needs to know of the map: how keys hash, what it began with."""

    partitions: int
    initial: frozenset[int]


@value_class
class PartitionState:
    state: int  # OWNED, LEAVING or GONE
    gen: int  # the move that put it in this state (0: the first map's)
    peer: int | None  # LEAVING, GONE: the shard it goes or went to; OWNED: where it came from


# ---------------------------------------------------------------- the commands


@value_class
class Freeze:
    partition: int
    to_shard: int


@value_class
class Ingest:
    partition: int
    gen: int
    from_shard: int
    export: bytes  # `export_partition`'s msgpack


@value_class
class Drop:
    partition: int
    gen: int


@value_class
class MapMove:
    partition: int
    from_shard: int
    to_shard: int
    gen: int


@value_class
class MapReplicas:
    """The meta shard's map places shard `data_shard` (the meta shard itself too, as 0) on `nodes`;
    the shard's leader then follows (placement.py)."""

    data_shard: int
    nodes: tuple[int, ...]


@value_class
class MapAddShard:
    """The meta shard's map gains data shard `shard` on `nodes` (its founders), owning no partition.

    Repeating it with the same nodes changes nothing, so a retried request adds one shard."""

    shard: int
    nodes: tuple[int, ...]


PartitionOp = Freeze | Ingest | Drop | MapMove | MapReplicas | MapAddShard
OP_NAMES: Final = {
    MapReplicas: "set_replicas",
    MapAddShard: "add_shard",
    Freeze: "partition_freeze",
    Ingest: "partition_ingest",
    Drop: "partition_drop",
    MapMove: "map_move",
}


# ---------------------------------------------------------------- ownership


def partition_key(partition: int) -> bytes:
    return partition.to_bytes(4, "big")


def state_of(store: KVStore, ownership: Ownership, partition: int) -> PartitionState:
    raw = store.get(PARTITION, partition_key(partition))
    if raw is None:
        return PartitionState(OWNED if partition in ownership.initial else GONE, 0, None)
    return decode_partition_state(raw)


def decode_partition_state(raw: bytes) -> PartitionState:
    state, gen, peer = expect_list(unpack(raw, "partition"), "partition", 3)
    if state not in (OWNED, LEAVING, GONE):
        raise RecordDecodeError(f"partition: unknown state {state!r}")
    return PartitionState(
        state, expect_int(gen, "partition.gen"), None if peer is None else expect_int(peer, "partition.peer")
    )


def moves(store: KVStore) -> Iterator[tuple[int, PartitionState]]:
    """Every partition with a record (it moved in or out at least once), in partition order."""
    for key, raw in store.scan(PARTITION):
        yield int.from_bytes(key, "big"), decode_partition_state(raw)


def refusal(
    store: KVStore, ownership: Ownership | None, key: str, op: str, version: Version
) -> WriteResult | None:
    """Why this shard must not serve `key` now (None: it may): PARTITION_MOVING or WRONG_SHARD."""
    if ownership is None:
        return None
    partition = partition_of(key, ownership.partitions)
    st = state_of(store, ownership, partition)
    if st.state == OWNED:
        return None
    if st.state == LEAVING:
        return WriteResult.failure(
            op,
            version,
            PARTITION_MOVING,
            f"partition {partition} of {key!r} is moving to shard {st.peer}: retry",
        )
    where = f"moved to shard {st.peer}" if st.peer is not None else "not in this shard"
    return WriteResult.failure(
        op, version, WRONG_SHARD, f"partition {partition} of {key!r} is {where}", shard=st.peer
    )


def _set(overlay: OverlayStore, partition: int, st: PartitionState) -> None:
    overlay.put(PARTITION, partition_key(partition), pack([st.state, st.gen, st.peer]))


# ---------------------------------------------------------------- applying them


def apply_partition_op(
    overlay: OverlayStore,
    ownership: Ownership | None,
    *,
    op: PartitionOp,
    version: Version,
    hlc: int,
    history_limit: int,
) -> WriteResult:
    name = OP_NAMES[type(op)]
    if isinstance(op, MapMove | MapReplicas | MapAddShard):
        return _apply_map_op(overlay, op, version, hlc, history_limit)
    if ownership is None or not 0 <= op.partition < ownership.partitions:
        return WriteResult.failure(name, version, INVALID_REQUEST, f"no data partition {op.partition} here")
    st = state_of(overlay, ownership, op.partition)
    if isinstance(op, Freeze):
        if st.state == LEAVING and st.peer == op.to_shard:
            return WriteResult(ok=True, version=version, op=name)
        if st.state != OWNED:
            return WriteResult.failure(
                name, version, INVALID_REQUEST, f"partition {op.partition} is not owned here"
            )
        _set(overlay, op.partition, PartitionState(LEAVING, st.gen + 1, op.to_shard))
        return WriteResult(ok=True, version=version, op=name)
    if isinstance(op, Drop):
        if st.state == GONE and st.gen >= op.gen:
            return WriteResult(ok=True, version=version, op=name)
        if st.state != LEAVING or st.gen != op.gen:
            return WriteResult.failure(
                name, version, INVALID_REQUEST, f"partition {op.partition} is not leaving by move {op.gen}"
            )
        _drop(overlay, ownership, op.partition)
        _set(overlay, op.partition, PartitionState(GONE, op.gen, st.peer))
        return WriteResult(ok=True, version=version, op=name)
    if st.gen >= op.gen:  # an ingest repeated, or one of a move overtaken by a later one
        return WriteResult(ok=True, version=version, op=name)
    if st.state != GONE:
        return WriteResult.failure(
            name, version, INVALID_REQUEST, f"partition {op.partition} is already here"
        )
    _ingest(overlay, op, version, history_limit)
    _set(overlay, op.partition, PartitionState(OWNED, op.gen, op.from_shard))
    return WriteResult(ok=True, version=version, op=name)


def _keys_of(store: KVStore, ownership: Ownership, partition: int, kind: bytes) -> list[tuple[str, bytes]]:
    found = []
    for raw_key, value in store.scan(kind):
        key = raw_key.decode("utf-8")
        if partition_of(key, ownership.partitions) == partition:
            found.append((key, value))
    return found


def _audit_of(store: KVStore, ownership: Ownership, partition: int) -> list[tuple[bytes, bytes]]:
    return [
        (at, raw)
        for at, raw in store.scan(AUDIT)
        if partition_of(decode_audit(raw).key, ownership.partitions) == partition
    ]


def _drop(overlay: OverlayStore, ownership: Ownership, partition: int) -> None:
    for kind in (DATA, HISTORY_HEADER):
        for key, _ in _keys_of(overlay, ownership, partition, kind):
            overlay.delete(kind, data_key(key))
            start, stop = history_range(key)
            for hkey, _ in list(overlay.scan(HISTORY, start, stop)):
                overlay.delete(HISTORY, hkey)
    for at, _ in _audit_of(overlay, ownership, partition):
        overlay.delete(AUDIT, at)
    for lease, _, keys in _leases_of(overlay, ownership, partition):
        overlay.delete(LEASE, lease_key(lease))
        for key in keys:
            overlay.delete(ATTACHED, attachment_key(lease, key))


def _leases_of(store: KVStore, ownership: Ownership, partition: int) -> list[tuple[int, bytes, list[str]]]:
    """The leases of P's namespaces (each holds keys of its own namespace only: kv/leases.py)."""
    return leases_of(store, lambda namespace: partition_of(namespace, ownership.partitions) == partition)


# ---------------------------------------------------------------- the export


def export_partition(store: KVStore, ownership: Ownership, partition: int) -> bytes:
    """What an ingest carries: P's keys (live and deleted, with history), audit records, all
    sessions, and the leases of P's namespaces.

    `[keys, audit, sessions, leases]` with keys `[key, data record or nil, [history record, ...]]`,
    audit `[[audit key, record], ...]`, sessions `[[client id, header, [[seq, result], ...]], ...]`
    and leases `[[id, lease record, [attached key, ...]], ...]` (an export from before leases has
    three fields).
    """
    keys: list[list[object]] = []
    for kind in (DATA, HISTORY_HEADER):
        for key, raw in _keys_of(store, ownership, partition, kind):
            start, stop = history_range(key)
            history = [value for _, value in store.scan(HISTORY, start, stop)]
            keys.append([key, raw if kind == DATA else None, history])
    audit = [[at, raw] for at, raw in _audit_of(store, ownership, partition)]
    sessions = []
    for client_id, header in store.scan(SESSION):
        start, stop = result_bound(client_id, 0), result_bound(client_id, 1 << 64)
        width = len(result_prefix(client_id))
        results = [[int.from_bytes(k[width:], "big"), v] for k, v in store.scan(RESULT, start, stop)]
        sessions.append([client_id, header, results])
    leases = [[lease, raw, held] for lease, raw, held in _leases_of(store, ownership, partition)]
    packed: bytes = msgpack.packb([keys, audit, sessions, leases], use_bin_type=True)
    return packed


def _ingest(overlay: OverlayStore, op: Ingest, version: Version, history_limit: int) -> None:
    fields = expect_array(unpack(op.export, "export"), "export")
    if len(fields) not in (3, 4):
        raise RecordDecodeError(f"export: want 3 or 4 fields, got {len(fields)}")
    keys, audit, sessions = fields[:3]
    for raw_lease, record, held in fields[3] if len(fields) == 4 else []:
        lease = expect_int(raw_lease, "export lease")
        overlay.put(LEASE, lease_key(lease), expect_bytes(record, "export lease record"))
        for key in held:
            overlay.put(ATTACHED, attachment_key(lease, str(key)), b"")
    for raw_key, data, history in keys:
        key = str(raw_key)
        kept = list(history)[-min(len(history), version.index, history_limit) :] if history else []
        # Filed just below the ingest's index, in their order: T's later writes sort after them.
        indexes = tuple(range(version.index - len(kept) + 1, version.index + 1))
        for index, raw in zip(indexes, kept, strict=True):
            overlay.put(HISTORY, history_key(key, index), expect_bytes(raw, "export history"))
        if data is None:
            overlay.put(HISTORY_HEADER, data_key(key), encode_history_header(indexes))
            continue
        old = DataRecord.decode(expect_bytes(data, "export data"))
        moved = DataRecord(old.value, version, version, old.changes, indexes, old.lease)
        overlay.put(DATA, data_key(key), moved.encode())
    for raw_at, raw in audit:
        slot = expect_bytes(raw_at, "export audit key")
        record = decode_audit(expect_bytes(raw, "export audit"))
        ordinal = int.from_bytes(slot[16:], "big")
        while overlay.get(AUDIT, slot) is not None:  # another shard's stamp, index and ordinal: rare
            ordinal += 1
            slot = audit_key(record.hlc, record.version.index, ordinal % (1 << 16))
        overlay.put(AUDIT, slot, raw)
    for client_id, header, results in sessions:
        _merge_session(
            overlay, expect_bytes(client_id, "export session"), SessionHeader.decode(header), results, version
        )


def _merge_session(
    overlay: OverlayStore,
    client_id: bytes,
    moved: SessionHeader,
    results: list[list[object]],
    version: Version,
) -> None:
    """One client's session here and the one from the source, as one: the higher floor, all results above it.

    A client numbers its writes with one sequence across shards, so the two caches hold distinct
    seqs. Below the higher floor no seq may apply again, on either shard. A result from the
    source is restamped with the ingest's `version`, as its keys are: answered again here, its
    versions must be this shard's, or the client's token for this shard would name a place in
    another shard's log (simulator seed 18).
    """
    raw = overlay.get(SESSION, client_id)
    here = None if raw is None else SessionHeader.decode(raw)
    floor = moved.floor if here is None else max(here.floor, moved.floor)
    start, stop = result_bound(client_id, 0), result_bound(client_id, 1 << 64)
    width = len(result_prefix(client_id))
    cached = {int.from_bytes(k[width:], "big"): v for k, v in overlay.scan(RESULT, start, stop)}
    for raw_seq, value in results:
        seq = expect_int(raw_seq, "export seq")
        if seq not in cached:
            cached[seq] = encode_result(
                _restamped(decode_result(expect_bytes(value, "export result")), version)
            )
    count = 0
    for seq, value in sorted(cached.items()):
        if seq < floor:
            overlay.delete(RESULT, result_key(client_id, seq))
        else:
            overlay.put(RESULT, result_key(client_id, seq), value)
            count += 1
    last_hlc = moved.last_hlc if here is None else max(here.last_hlc, moved.last_hlc)
    top = moved.top if here is None else max(here.top, moved.top)
    overlay.put(SESSION, client_id, SessionHeader(last_hlc, floor, count, floor, top).encode())


def _restamped(result: WriteResult, version: Version) -> WriteResult:
    def at(v: Version | None) -> Version | None:
        return None if v is None else version

    return dataclasses.replace(
        result,
        moved=True,
        version=version,
        prev_version=at(result.prev_version),
        current_version=at(result.current_version),
        results=tuple(
            dataclasses.replace(r, version=at(r.version), prev_version=at(r.prev_version))
            for r in result.results
        ),
    )


# ---------------------------------------------------------------- the meta shard's map


def _stored_map(overlay: OverlayStore) -> ShardMap | None:
    record = get_key(overlay, MAP_KEY)
    return None if record is None else ShardMap.from_wire(msgpack.unpackb(record.value, raw=False))


# A map op's outcome: the new map and other keys to write with it, a refusal, or None when the
# op (or a later one) is in already and a repeat changes nothing.
_MapChange = tuple[ShardMap, dict[str, bytes]] | str | None


def _apply_map_op(
    overlay: OverlayStore,
    op: MapMove | MapReplicas | MapAddShard,
    version: Version,
    hlc: int,
    history_limit: int,
) -> WriteResult:
    """A change of the meta shard's map: refused, already made, or written one epoch on."""
    name = OP_NAMES[type(op)]
    current = _stored_map(overlay)
    if current is None:
        return WriteResult.failure(name, version, INVALID_REQUEST, "this shard holds no shard map")
    if isinstance(op, MapMove):
        change = _map_move(overlay, current, op)
    elif isinstance(op, MapReplicas):
        change = _map_replicas(current, op)
    else:
        change = _map_add_shard(current, op)
    if isinstance(change, str):
        return WriteResult.failure(name, version, INVALID_REQUEST, change)
    if change is not None:
        changed, others = change
        changes = KeyChanges(
            overlay, history_limit=history_limit, version=version, hlc=hlc, principal="confmand", op=name
        )
        changes.put(MAP_KEY, msgpack.packb(changed.to_wire(), use_bin_type=True))
        for key, value in others.items():
            changes.put(key, value)
    return WriteResult(ok=True, version=version, op=name)


def _map_move(overlay: OverlayStore, current: ShardMap, op: MapMove) -> _MapChange:
    gen_key = f"{MOVE_GEN_PREFIX}{op.partition}"
    gen_record = get_key(overlay, gen_key)
    done = 0 if gen_record is None else int(msgpack.unpackb(gen_record.value))
    if done >= op.gen:
        return None  # this move, or a later one, is in
    if not 0 <= op.partition < current.partitions or current.owners[op.partition] != op.from_shard:
        return f"partition {op.partition} is not shard {op.from_shard}'s"
    if op.to_shard not in current.data_shards:
        return f"there is no data shard {op.to_shard}"
    return current.moved(op.partition, op.to_shard), {gen_key: msgpack.packb(op.gen)}


def _map_replicas(current: ShardMap, op: MapReplicas) -> _MapChange:
    if op.data_shard not in current.replicas:
        return f"there is no shard {op.data_shard}"
    try:  # a new epoch even if the replicas are the same: the shard's leader goes to nodes[0] again
        return current.with_replicas(op.data_shard, op.nodes), {}
    except WireError as exc:
        return str(exc)


def _map_add_shard(current: ShardMap, op: MapAddShard) -> _MapChange:
    if op.shard in current.replicas:
        return None if current.founders.get(op.shard) == op.nodes else f"shard {op.shard} exists already"
    try:
        return current.with_shard(op.shard, op.nodes), {}
    except WireError as exc:
        return str(exc)
