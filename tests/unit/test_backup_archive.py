"""The backup file: what it holds comes back intact, and a damaged or foreign file is refused saying why."""

from __future__ import annotations

from pathlib import Path

import pytest

from confctl.backup_files import write_backup
from confmand.kv.commands import Command
from confmand.kv.harness import MemoryShard
from confmand.kv.snapshot import export_state
from confmand.protocol.backup_file import (
    Backup,
    BackupError,
    ShardCopy,
    decode_backup,
    encode_backup,
)
from confmand.protocol.ops import Put
from confmand.protocol.shardmap import initial_map
from confmand.protocol.types import Version

MAP = initial_map([1, 2, 3], data_shards=2, replication=3, partitions=4)


def shard_state(*keys: str) -> bytes:
    shard = MemoryShard()
    for key in keys:
        shard.apply(Command(Put(key, b"v"), hlc=1 << 16))
    return export_state(shard.store)


def a_backup() -> Backup:
    copies = (
        ShardCopy(0, Version(2, 7), shard_state()),
        ShardCopy(1, Version(3, 40), shard_state("a/x", "a/y"), owns=(0, 2), initial=(0, 2)),
        ShardCopy(2, Version(3, 12), shard_state("b/z"), owns=(1, 3), initial=(1, 3)),
    )
    return Backup(MAP, copies, created_ms=1_765_000_000_000, confman_version="0.1.0")


def test_a_backup_reads_back_exactly_as_written(tmp_path: Path) -> None:
    backup = a_backup()
    path = tmp_path / "cluster.backup"

    size = write_backup(path, backup)

    assert size == path.stat().st_size
    assert decode_backup(path.read_bytes()) == backup
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("cut", [1, 31, 32, 33, 500])
def test_a_truncated_backup_is_refused(cut: int) -> None:
    data = encode_backup(a_backup())

    with pytest.raises(BackupError, match="truncated"):
        decode_backup(data[:-cut])


def test_a_backup_with_one_byte_changed_is_refused_by_its_checksum() -> None:
    data = bytearray(encode_backup(a_backup()))
    data[len(data) // 2] ^= 0x01

    with pytest.raises(BackupError, match=r"checksum .* does not match"):
        decode_backup(bytes(data))


def test_a_file_that_is_not_a_backup_is_refused_as_such() -> None:
    with pytest.raises(BackupError, match="not a Confman backup"):
        decode_backup(b'{"etcd": "snapshot"}')


def test_a_backup_whose_shards_disagree_with_its_map_is_refused() -> None:
    backup = a_backup()
    moved = (backup.shards[0], backup.shards[1], ShardCopy(2, Version(3, 12), shard_state(), owns=(3,)))

    with pytest.raises(BackupError, match="shard 2 owns partitions \\[3\\], the map gives it \\[1, 3\\]"):
        decode_backup(encode_backup(Backup(MAP, moved, 0, "0.1.0")))


def test_a_backup_missing_a_data_shard_is_refused() -> None:
    backup = a_backup()

    with pytest.raises(BackupError, match="it holds shards \\[0, 1\\]; its map has \\[0, 1, 2\\]"):
        decode_backup(encode_backup(Backup(MAP, backup.shards[:2], 0, "0.1.0")))
