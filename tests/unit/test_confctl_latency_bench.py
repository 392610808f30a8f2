"""bench/confctl_latency.py runs end to end and ends with its JSON line: a check that the benchmark
works, not of how fast confctl is. It is pointed (`--endpoints`) at fake nodes over real sockets
(confctl.testing) rather than made to start confmand, to stay quick; each measure runs once.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from confctl.testing import FakeCluster, FakeNode, nodes

ROOT = Path(__file__).resolve().parents[2]
KEYS = [
    f"{name}_{stat}_ms" for name in ("version", "get", "put", "get_dead_first") for stat in ("p50", "p99")
] + ["get_dead_first_first_call_ms", "import_ms", "python_startup_ms"]


@pytest.fixture
def fake_nodes() -> Iterator[list[FakeNode]]:
    started = list(nodes(FakeCluster(), 2))
    yield started
    for node in started:
        node.stop()


def test_the_benchmark_ends_with_one_json_object_naming_each_measure_with_its_unit(
    fake_nodes: list[FakeNode], tmp_path: Path
) -> None:
    endpoints = ",".join(node.address for node in fake_nodes)
    args = ["--json", "--runs", "1", "--dead-runs", "1", "--import-runs", "1", "--endpoints", endpoints]
    done = subprocess.run(
        [sys.executable, "bench/confctl_latency.py", *args, "--base-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,  # a guard against a hung benchmark, not a measure
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert all(isinstance(result[key], float) and result[key] > 0 for key in KEYS), result
    assert result["nodes_started"] == 0
    assert list(tmp_path.iterdir()) == []  # its endpoint cache dir is gone again
