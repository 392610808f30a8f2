"""A node that restarts recovers its log, state and applied index; snapshots keep its log bounded."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from confmand.config import PeerConfig
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
