"""`confmand restore`: a new node's data dir seeded from a backup, so a new cluster starts from it.

Every node of the new cluster restores the same file with its own config, before its first
start. Each shard the node will hold starts from the backup as from a snapshot installed
from a leader: at the version the backup copied it at (so versions stay comparable and the
new log continues after them), with its history, audit records and client sessions as they
were, and with the new cluster's nodes as its members. Every replica of a shard writes the
same snapshot, so they agree from the first election on.

The shard map keeps the backup's partitions and data shards, placed on the new nodes: the
shards of the first map where the new cluster's first map puts them, any added later dealt
round the nodes the same way. The meta shard keeps what it held (the partition move
counters among it) with the map and the node registry rewritten for the new cluster, in
one more entry after its copied version. The [cluster] shape (partitions, data_shards) must
be the old cluster's: a shard's state records its partitions relative to the first map.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from confmand.config import NodeConfig
from confmand.hlc import LOGICAL_BITS
from confmand.hlc import pack as pack_hlc
from confmand.kv.commands import Command
from confmand.kv.harness import MemoryShard
from confmand.kv.queries import MAX_LIMIT, list_keys
from confmand.kv.records import AUDIT, audit_key_hlc
from confmand.kv.snapshot import STATE_KINDS, SnapshotDecodeError, decode_state, export_state, restore_writes
from confmand.kv.store import MemoryKVStore
from confmand.protocol.backup_file import Backup, BackupError, ShardCopy, decode_backup
from confmand.protocol.ops import Txn
from confmand.protocol.shardmap import META_SHARD, ShardMap, initial_map
from confmand.protocol.types import TxnOp, Version
from confmand.raft import HardState, Membership
from confmand.raft.types import SnapshotMeta
from confmand.server.meta import NODE_PREFIX, PRINCIPAL, map_put, registry_puts
from confmand.storage import DataDirError, NodeStorage


@dataclass(frozen=True, slots=True)
class RestoredShard:
    shard: int
    applied: Version
    state_bytes: int  # the size of the state it starts from


def read_backup(path: Path) -> Backup:
    """The backup file at `path`, checked; BackupError saying what is wrong (an unreadable file too)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BackupError(f"cannot read {path}: {exc.strerror or exc}") from None
    return decode_backup(data)


def restored_map(backup: Backup, config: NodeConfig) -> ShardMap:
    """The backup's partitions and shards, placed on `config`'s cluster; BackupError on a shape
    that differs from the backed-up cluster's."""
    first = config.initial_map()
    old = backup.shard_map
    if first.partitions != old.partitions:
        raise BackupError(
            f"the backup's cluster has {old.partitions} partitions; this config's [cluster] has "
            f"{first.partitions}: set partitions = {old.partitions}"
        )
    for copy in backup.data_shards:
        if list(copy.initial) != first.partitions_of(copy.shard):
            first_shards = len(first.data_shards)
            raise BackupError(
                f"the backup's cluster started with other data shards than this config's "
                f"[cluster] ({first_shards}): shard {copy.shard} began with partitions "
                f"{list(copy.initial)}, here it would begin with {first.partitions_of(copy.shard)}; "
                "set data_shards as the backed-up cluster had it"
            )
    voters = config.initial_voters
    # Shards added after the first map go where a first map with that many shards would deal them.
    last = max(old.data_shards)
    replication = config.cluster.replication_for(len(voters))
    dealt = initial_map(voters, last, replication, max(last, first.partitions))
    replicas = dict(first.replicas)
    founders = {}
    for shard in old.data_shards:
        if shard not in replicas:
            replicas[shard] = founders[shard] = dealt.replicas[shard]
    epoch = max(old.epoch, first.epoch) + 1
    return ShardMap(epoch, old.owners, replicas, founders)


def restore(backup: Backup, config: NodeConfig, data_dir: Path | None = None) -> list[RestoredShard]:
    """Seed the (empty or missing) data dir of `config`'s node from `backup`."""
    path = Path(data_dir or config.data_dir)
    if path.exists() and any(path.iterdir()):
        raise DataDirError(f"data dir {path} is not empty: restore seeds a new node only")
    shard_map = restored_map(backup, config)
    copies = {c.shard: c for c in backup.shards}
    states = {shard: _records(copy) for shard, copy in copies.items()}  # all read before any write
    _check_clock(states, config.clock.max_clock_offset_ms)
    storage = NodeStorage.open(path, config.cluster_id, config.node_id)
    try:
        storage.check_cluster_shape(config.cluster.to_record(config.initial_voters))
        restored = []
        for shard in shard_map.shards_on(config.node_id):
            copy, records = copies[shard], states[shard]
            if shard == META_SHARD:
                copy = _rewritten_meta(copy, shard_map, config)
                records = decode_state(copy.state)
            members = Membership(frozenset(shard_map.replicas[shard]))
            _seed_shard(storage, copy, records, members)
            restored.append(RestoredShard(shard, copy.applied, len(copy.state)))
    finally:
        storage.close()
    return restored


def _records(copy: ShardCopy) -> list[tuple[bytes, bytes, bytes]]:
    """The copy's state records, each decoded as its kind; BackupError if this version cannot."""
    try:
        return decode_state(copy.state)
    except SnapshotDecodeError as exc:
        raise BackupError(
            f"shard {copy.shard}: its state is not one this version can install: {exc}"
        ) from None


def _check_clock(states: dict[int, list[tuple[bytes, bytes, bytes]]], max_offset_ms: int) -> None:
    """Refuse a host whose clock is behind the backup's newest change by more than its nodes
    would catch up on (they stamp after it: Node._continue_stamps): new changes would order
    before old ones in the audit log."""
    newest = max(
        (audit_key_hlc(key) for records in states.values() for kind, key, _ in records if kind == AUDIT),
        default=0,
    )
    ahead_ms = (newest >> LOGICAL_BITS) - int(time.time() * 1000)
    if ahead_ms > max_offset_ms:
        raise BackupError(
            f"the backup's newest change is stamped {ahead_ms} ms ahead of this host's clock "
            f"(more than clock.max_clock_offset_ms = {max_offset_ms}): set the clock right (NTP), "
            "then restore"
        )


def _seed_shard(
    storage: NodeStorage, copy: ShardCopy, records: list[tuple[bytes, bytes, bytes]], members: Membership
) -> None:
    """The shard's storage as a follower's after installing the copy as a snapshot from a leader."""
    shard = storage.shard(copy.shard)
    term, index = copy.applied.term, copy.applied.index
    batch = storage.new_batch()
    shard.stage_restored(SnapshotMeta(index, term, members), HardState(term, None, index), batch)
    shard.stage_install_state(records, STATE_KINDS, term, index, batch)
    storage.write(batch, sync=True)


def _rewritten_meta(copy: ShardCopy, shard_map: ShardMap, config: NodeConfig) -> ShardCopy:
    """The meta shard's copy with the map and the node registry of the new cluster, one entry on."""
    store = MemoryKVStore()
    store.apply(restore_writes(store, copy.state))
    meta = MemoryShard(store, term=copy.applied.term)
    meta.next_index = copy.applied.index + 1
    old_registry = list_keys(store, NODE_PREFIX, None, MAX_LIMIT, keys_only=True).items
    ops = [TxnOp("delete", item.key) for item in old_registry]
    ops += [map_put(shard_map), *registry_puts(config.peers)]
    (result,) = meta.apply(Command(Txn((), tuple(ops)), pack_hlc(int(time.time() * 1000), 0), PRINCIPAL))
    if result.error_code is not None:
        raise BackupError(f"the meta shard's copy did not take the new map: {result.error_message}")
    return ShardCopy(META_SHARD, Version(copy.applied.term, copy.applied.index + 1), export_state(store))
