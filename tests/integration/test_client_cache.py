"""A service boots and reads its config while the whole cluster is down: confctl over the client's
file of last good values (CONFMAN_CACHE), which says it served from there and never claims more."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from confctl.exit_codes import ExitCode
from tests.integration.conftest import MakeCluster


def test_with_every_node_down_get_allow_cached_prints_the_last_value_read_marked_from_cache(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    cluster = make_cluster()
    leader = cluster.wait_for_leader()
    cluster.put(leader, "svc/db/url", b"postgres://db1")
    endpoints = ",".join(cluster.addresses().values())
    env = {**os.environ, "CONFMAN_CACHE": str(tmp_path / "values")}

    def confctl(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "confctl", "-e", endpoints, "--timeout", "1", "-o", "json", *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=30, check=False)

    assert confctl("get", "svc/db/url").returncode == 0  # read while the cluster is up: remembered
    for node_id in cluster.addresses():
        cluster.kill(node_id)

    refused = confctl("get", "svc/db/url")
    served = confctl("get", "svc/db/url", "--allow-cached")

    assert refused.returncode == ExitCode.UNAVAILABLE, refused.stderr
    assert served.returncode == 0, served.stderr
    row = json.loads(served.stdout)
    assert (row["value"], row["from_cache"]) == ("postgres://db1", True)
    assert row["applied"] is None
    assert "not a read of the cluster" in served.stderr
