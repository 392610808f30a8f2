"""/health, /health/ready and /metrics of an in-process node, over real HTTP (aiohttp's test server)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from confmand.server.http_endpoints import make_app
from tests.server.node_harness import NodeHarness, single_node_config
from tests.server.test_node_storage_faults import FullDisk

ROOT = Path(__file__).resolve().parents[2]


def _get(harness: NodeHarness, path: str) -> tuple[int, Any]:
    """One GET through a real socket; JSON bodies decoded, others returned as text."""

    async def fetch() -> tuple[int, Any]:
        async with TestClient(TestServer(make_app(harness.node))) as client:
            response = await client.get(path)
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()

    return asyncio.run(fetch())


def test_health_answers_ok_while_the_node_runs(harness: NodeHarness) -> None:
    status, body = _get(harness, "/health")

    assert status == 200
    assert body["status"] == "ok"
    assert body["node_id"] == 1


def test_a_node_whose_shards_know_no_leader_is_not_ready_and_says_which(tmp_path: Path) -> None:
    fresh = NodeHarness(single_node_config(tmp_path / "data"))  # not turned yet: nothing elected
    try:
        status, body = _get(fresh, "/health/ready")
    finally:
        fresh.close()

    assert status == 503
    assert body["ready"] is False
    assert body["reasons"] == ["shard 0: no leader known", "shard 1: no leader known"]


def test_a_node_leading_every_shard_it_hosts_is_ready(harness: NodeHarness) -> None:
    status, body = _get(harness, "/health/ready")
    applied = {shard: replica.applied.index for shard, replica in harness.node.replicas.items()}

    assert status == 200
    assert body == {
        "ready": True,
        "node_id": 1,
        "reasons": [],
        "shards": {
            "0": {"role": "leader", "leader_id": 1, "applied_index": applied[0], "apply_lag": 0},
            "1": {"role": "leader", "leader_id": 1, "applied_index": applied[1], "apply_lag": 0},
        },
    }


def test_a_node_whose_disk_refuses_writes_is_not_ready(
    harness: NodeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = FullDisk(harness, monkeypatch)
    harness.send("put", key="app/b", value=b"2")
    harness.turn_until(lambda: disk.failures >= 1)

    status, body = _get(harness, "/health/ready")

    assert status == 503
    assert body["reasons"] == ["storage refuses writes: No space left on device (injected)"]


def _scrape(harness: NodeHarness) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    status, text = _get(harness, "/metrics")
    assert status == 200
    return {
        family.name: [(s.name, s.labels, s.value) for s in family.samples]
        for family in text_string_to_metric_families(text)
    }


def test_metrics_report_each_hosted_shard_its_writes_and_its_error_replies(harness: NodeHarness) -> None:
    for n in range(3):
        assert harness.call("put", key=f"app/k{n}", value=b"v")["ok"]
    harness.client.send(b"\x93not a request")  # malformed: refused with an error reply
    harness.reply()

    families = _scrape(harness)

    def value(name: str, **labels: str) -> float:
        family = name.removesuffix("_total")
        return next(v for n, got, v in families[family] if n == name and got == labels)

    assert value("confman_shard_role", shard="1", role="leader") == 1
    assert [labels for n, labels, _ in families["confman_shard_role"]] == [
        {"shard": "0", "role": "leader"},
        {"shard": "1", "role": "leader"},
    ]
    assert value("confman_shard_leader_id", shard="0") == 1
    assert value("confman_shard_proposals_total", shard="1") == 3
    assert value("confman_shard_applied_index", shard="1") == value("confman_shard_commit_index", shard="1")
    assert value("confman_events_total", event="turns") > 0
    assert sum(v for n, _, v in families["confman_error_replies"] if n.endswith("_total")) == 1
    assert value("process_resident_memory_bytes") > 0


def test_histograms_count_each_request_by_op_and_consistency_and_each_synced_write(
    harness: NodeHarness,
) -> None:
    for n in range(3):
        assert harness.call("put", key=f"app/k{n}", value=b"v")["ok"]
    assert harness.call("get", key="app/k0")["ok"]
    assert harness.call("get", key="app/k0", consistency="stale")["ok"]
    harness.client.send(b"\x93not a request")
    harness.reply()

    families = _scrape(harness)

    def count(family: str, **labels: str) -> float:
        return next(v for n, got, v in families[family] if n == f"{family}_count" and got == labels)

    def infinite_bucket(family: str, **labels: str) -> float:
        want = {**labels, "le": "+Inf"}
        return next(v for n, got, v in families[family] if n == f"{family}_bucket" and got == want)

    assert count("confman_request_seconds", op="put", consistency="none") == 3
    assert count("confman_request_seconds", op="get", consistency="linearizable") == 1
    assert count("confman_request_seconds", op="get", consistency="stale") == 1
    assert count("confman_request_seconds", op="unparsed", consistency="") == 1
    assert infinite_bucket("confman_request_seconds", op="put", consistency="none") == 3
    assert count("confman_fsync_seconds") >= 3, "each acknowledged put waited for a synced write"
    assert count("confman_write_batch_records") >= count("confman_fsync_seconds")


def test_every_confman_metric_a_scrape_returns_is_documented_and_every_documented_one_returned(
    harness: NodeHarness,
) -> None:
    harness.client.send(b"\x93not a request")
    harness.reply()  # so that the error family has a sample
    scraped = {name for name in _scrape(harness) if name.startswith("confman_")}
    documented = set(re.findall(r"^\| `(confman_[a-z_]+)`", (ROOT / "docs/daemon.md").read_text(), re.M))

    assert scraped == {name.removesuffix("_total") for name in documented}


def test_the_grafana_dashboard_parses_and_queries_only_metrics_a_node_exports(harness: NodeHarness) -> None:
    dashboard = json.loads((ROOT / "config/grafana/confman-cluster.json").read_text())
    harness.client.send(b"\x93not a request")
    harness.reply()  # so that the error family has a sample
    exported = {name for samples in _scrape(harness).values() for name, _, _ in samples}
    # A histogram with no observation yet (a lone node's peer round trips) still names its series.
    _, text = _get(harness, "/metrics")
    histograms = [f.name for f in text_string_to_metric_families(text) if f.type == "histogram"]
    exported |= {f"{name}{suffix}" for name in histograms for suffix in ("_bucket", "_sum", "_count")}

    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    named = {name for q in queries for name in re.findall(r"\b((?:confman|process)_[a-z_]+)\b", q)}

    assert dashboard["uid"] == "confman-cluster"
    assert len(queries) >= len(dashboard["panels"]) >= 10
    assert named
    assert named <= exported, f"not exported: {sorted(named - exported)}"
