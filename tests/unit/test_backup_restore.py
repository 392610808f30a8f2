"""`confmand restore`'s seeding of a data dir: each shard this node holds starts as from a leader's
snapshot at the backed-up version, the map and registry are the new cluster's, bad fits are refused."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from confmand.backup.restore import restore, restored_map
from confmand.config import ClusterShape, NodeConfig, PeerConfig
from confmand.kv.commands import Command
from confmand.kv.harness import MemoryShard
from confmand.kv.snapshot import STATE_KINDS, decode_state, export_state
from confmand.protocol.backup_file import Backup, BackupError, ShardCopy
from confmand.protocol.ops import Put
from confmand.protocol.shardmap import initial_map
from confmand.protocol.types import Version
from confmand.server.meta import seed_command, stored_map
from confmand.storage import DataDirError, NodeStorage

OLD_NODES = (PeerConfig(1, "tcp://old1:1", "tcp://old1:2"), PeerConfig(2, "tcp://old2:1", "tcp://old2:2"))
OLD_MAP = initial_map([1, 2], data_shards=2, replication=2, partitions=4).with_shard(3, (1, 2)).moved(3, 3)


def config_of(node_id: int, data_dir: Path, nodes: int = 3, data_shards: int = 2) -> NodeConfig:
    peers = tuple(PeerConfig(i, f"tcp://new{i}:1", f"tcp://new{i}:2") for i in range(1, nodes + 1))
    return NodeConfig(
        source=data_dir / "node.toml",
        cluster_id="restored",
        node_id=node_id,
        data_dir=data_dir,
        peer_address=peers[node_id - 1].peer_address,
        client_address=peers[node_id - 1].client_address,
        peers=peers,
        cluster=ClusterShape(partitions=4, data_shards=data_shards, replication=3),
    )


def state_with(*keys: str, term: int = 1) -> bytes:
    shard = MemoryShard(term=term)
    for key in keys:
        shard.apply(Command(Put(key, key.encode()), hlc=1 << 16))
    return export_state(shard.store)


def old_backup() -> Backup:
    meta = MemoryShard(term=2)
    meta.apply(seed_command(OLD_MAP, OLD_NODES, 1 << 16))
    copies = (
        ShardCopy(0, Version(2, 9), export_state(meta.store)),
        ShardCopy(1, Version(4, 120), state_with("a/1", "a/2"), owns=(0, 2), initial=(0, 2)),
        ShardCopy(2, Version(4, 80), state_with("b/1"), owns=(1,), initial=(1, 3)),
        ShardCopy(3, Version(5, 30), state_with("d/1"), owns=(3,), initial=()),
    )
    return Backup(OLD_MAP, copies, 0, "0.1.0")


def test_every_shard_a_node_holds_starts_from_its_copy_at_the_backed_up_version(tmp_path: Path) -> None:
    backup = old_backup()
    config = config_of(2, tmp_path / "node2")

    restore(backup, config)

    storage = NodeStorage.open(config.data_dir, "restored", 2)
    try:
        new_map = restored_map(backup, config)
        for copy in backup.data_shards:
            shard = storage.shard(copy.shard)
            records = [(k, key, v) for k in STATE_KINDS for key, v in shard.scan(k)]
            assert shard.applied() == (copy.applied.term, copy.applied.index)
            assert shard.initial_state().hard_state.term == copy.applied.term
            snapshot = shard.snapshot_meta()
            assert snapshot is not None
            assert snapshot.membership.voters == frozenset(new_map.replicas[copy.shard])
            assert records == decode_state(copy.state)
        meta_map = stored_map(storage.shard(0))
        assert meta_map == new_map
        assert storage.shard(0).applied() == (2, 10), "the new map is one entry after the copy"
    finally:
        storage.close()


def test_the_restored_map_keeps_the_partitions_and_places_every_shard_on_new_nodes(tmp_path: Path) -> None:
    new_map = restored_map(old_backup(), config_of(1, tmp_path))

    assert new_map.owners == OLD_MAP.owners
    assert set(new_map.replicas) == {0, 1, 2, 3}
    assert all(set(nodes) <= {1, 2, 3} and len(nodes) == 3 for nodes in new_map.replicas.values())
    assert new_map.epoch > OLD_MAP.epoch


def test_a_data_dir_that_holds_anything_is_not_restored_into(tmp_path: Path) -> None:
    (tmp_path / "node1").mkdir()
    (tmp_path / "node1" / "LOG").write_text("")

    with pytest.raises(DataDirError, match="is not empty"):
        restore(old_backup(), config_of(1, tmp_path / "node1"))


def test_a_config_of_another_cluster_shape_is_refused_naming_the_setting(tmp_path: Path) -> None:
    config = config_of(1, tmp_path / "node1", data_shards=1)

    with pytest.raises(BackupError, match="set data_shards as the backed-up cluster had it"):
        restore(old_backup(), config)
    assert not (tmp_path / "node1").exists()


def test_a_config_with_other_partitions_is_refused(tmp_path: Path) -> None:
    config = dataclasses.replace(config_of(1, tmp_path / "n"), cluster=ClusterShape(8, 2, 3))

    with pytest.raises(BackupError, match="set partitions = 4"):
        restore(old_backup(), config)


def test_a_host_whose_clock_is_far_behind_the_backups_newest_change_is_refused(tmp_path: Path) -> None:
    backup = old_backup()
    hour_ahead = (int(time.time() * 1000) + 3_600_000) << 16
    shard = MemoryShard(term=4)
    shard.apply(Command(Put("a/late", b"x"), hlc=hour_ahead))
    future = dataclasses.replace(backup.shards[1], state=export_state(shard.store))

    with pytest.raises(BackupError, match=r"stamped \d+ ms ahead of this host's clock"):
        restore(
            dataclasses.replace(backup, shards=(backup.shards[0], future, *backup.shards[2:])),
            config_of(1, tmp_path / "n"),
        )
    assert not (tmp_path / "n").exists()
