"""confctl export and import against real processes: a namespace saved, changed, and put back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from confctl.exit_codes import ExitCode
from tests.integration.conftest import MakeCluster


def test_an_export_imported_back_undoes_changes_and_prunes_what_it_did_not_list(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    cluster = make_cluster(cluster={"partitions": 16, "data_shards": 2})
    cluster.wait_for_preferred_leaders()
    endpoints = ",".join(cluster.addresses().values())

    def confctl(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "confctl", "-e", endpoints, *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    for i in range(30):
        assert confctl("put", f"svc/k{i:02d}", f"v{i}").returncode == 0
    assert confctl("put", "svc/bin", "-", "--literal").returncode == 0
    saved = tmp_path / "svc.yaml"
    assert confctl("export", "svc/", "--format", "yaml", "--out", str(saved)).returncode == 0
    assert confctl("put", "svc/k03", "broken").returncode == 0
    assert confctl("del", "svc/k04").returncode == 0
    assert confctl("put", "svc/stray", "x").returncode == 0

    dry = confctl("import", str(saved), "--prune", "--dry-run")
    applied = confctl("import", str(saved), "--prune")
    again = confctl("import", str(saved), "--prune")

    assert dry.returncode == ExitCode.OK, dry.stderr
    assert sorted(line.split()[0] for line in dry.stdout.splitlines()[1:]) == ["add", "change", "remove"]
    assert applied.returncode == ExitCode.OK, applied.stderr
    assert confctl("get", "svc/k03", "--print-value-only").stdout == "v3\n"
    assert confctl("get", "svc/k04", "--print-value-only").stdout == "v4\n"
    assert confctl("get", "svc/stray").returncode == ExitCode.NOT_FOUND
    assert "nothing to change" in again.stderr
