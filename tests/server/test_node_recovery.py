"""A node that restarts recovers its log, state and applied index; snapshots keep its log bounded."""

from __future__ import annotations

from pathlib import Path

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
