"""A node that restarts recovers its log, state and applied index; snapshots keep its log bounded."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import pytest

from confmand.backup.restore import restore
from confmand.config import ClockSettings, NodeConfig, PeerConfig
from confmand.kv.commands import Command
from confmand.kv.harness import MemoryShard
from confmand.kv.snapshot import export_state
from confmand.protocol.backup_file import Backup, ShardCopy
from confmand.protocol.ops import Put
from confmand.protocol.types import Version
from confmand.server.meta import seed_command
from tests.server.node_harness import NodeHarness, single_node_config


def test_a_restarted_node_serves_every_acknowledged_write(tmp_path: Path) -> None:
    config = single_node_config(tmp_path / "data")
    first = NodeHarness(config)
    first.until_leader()
    versions = {
        f"app/{i}": first.call("put", key=f"app/{i}", value=str(i).encode())["version"] for i in range(20)
    }
    first.close()

    second = NodeHarness(config)
    second.until_leader()
    reads = {key: second.call("get", key=key) for key in versions}
    second.close()

    assert {k: r["version"] for k, r in reads.items()} == versions
    assert all(r["value"] == k.split("/")[1].encode() for k, r in reads.items())


def test_snapshots_compact_the_log_and_survive_a_restart(tmp_path: Path) -> None:
    config = single_node_config(tmp_path / "data", snapshot_interval_entries=20, log_retain_entries=5)
    first = NodeHarness(config)
    first.until_leader()
    for i in range(100):
        assert first.call("put", key="app/counter", value=str(i).encode())["ok"]
    first_index, last_index = first.node.storage.shard(1).log_bounds()
    first.close()

    second = NodeHarness(config)
    second.until_leader()
    read = second.call("get", key="app/counter")
    history = second.call("history", key="app/counter", limit=3)
    second.close()

    assert last_index - first_index < 20 + 5 + 5  # bounded, not 100 entries
    assert first_index > 50
    assert read["value"] == b"99"
    assert read["changes"] == 100
    assert [v["value"] for v in history["versions"]] == [b"99", b"98", b"97"]


def test_a_node_started_with_a_config_that_took_out_a_member_warns_which_shards_cannot_reach_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Node 2 is of the first membership, marked removed = true while it still holds replicas.
    single = single_node_config(tmp_path / "data")
    config = dataclasses.replace(single, peers=(*single.peers, PeerConfig(2, "", "", removed=True)))

    with caplog.at_level(logging.WARNING):
        node = NodeHarness(config)
    node.close()

    assert "shard 1 counts node 2 a member, but the config lists no such node" in caplog.text
    assert "shard 0 counts node 2" not in caplog.text, "the meta shard is on node 1 alone"


def test_a_node_stamps_after_the_newest_change_it_holds_even_when_its_clock_is_behind(tmp_path: Path) -> None:
    # A data dir restored from a backup made where clocks ran 30 minutes ahead of this host's.
    config = dataclasses.replace(
        single_node_config(tmp_path / "data"), clock=ClockSettings(max_clock_offset_ms=3_600_000)
    )
    ahead = (int(time.time() * 1000) + 1_800_000) << 16
    restore(_backup_stamped(config, ahead), config)

    node = NodeHarness(config)
    node.until_leader()
    written = node.call("put", key="app/now", value=b"1")
    audit = node.call("audit", limit=10)["records"]
    node.close()

    assert written["ok"]
    assert [r["key"] for r in audit] == ["app/then", "app/now"]
    assert audit[1]["hlc"] > audit[0]["hlc"] == ahead


def _backup_stamped(config: NodeConfig, hlc: int) -> Backup:
    """A backup of `config`'s cluster shape whose one change, app/then, is stamped `hlc`."""
    first = config.initial_map()
    meta, data = MemoryShard(term=2), MemoryShard(term=2)
    meta.apply(seed_command(first, config.peers, hlc))
    data.apply(Command(Put("app/then", b"0"), hlc=hlc))
    owned = tuple(first.partitions_of(1))
    copies = (
        ShardCopy(0, Version(2, 1), export_state(meta.store)),
        ShardCopy(1, Version(2, 1), export_state(data.store), owns=owned, initial=owned),
    )
    return Backup(first, copies, 0, "test")
