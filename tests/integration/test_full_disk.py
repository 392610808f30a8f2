"""A node whose disk fills up: writes fail with STORAGE, stale reads go on, nothing acknowledged is
lost, and writes resume once space is freed. Real LevelDB on a real (tiny) tmpfs: needs root."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import MakeCluster
from tests.integration.harness import Cluster, error_code, ok, wait_until

TMPFS_BYTES = 16 << 20
VALUE = b"x" * (64 << 10)

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or os.geteuid() != 0, reason="mounting a tmpfs needs root on Linux"
)


@pytest.fixture
def small_disk_cluster(make_cluster: MakeCluster) -> Iterator[tuple[Cluster, Path]]:
    """One node whose data dir is a 16 MiB tmpfs; unmounted after the node stops."""
    cluster = make_cluster(boot=False, size=1)
    data_dir = cluster.data_dir(1)
    data_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(data_dir)], check=True)
    try:
        cluster.boot()
        yield cluster, data_dir
    finally:
        cluster.close()
        subprocess.run(["umount", "-l", str(data_dir)], check=False)


def fill(data_dir: Path, leave_bytes: int) -> Path:
    """A file that takes all but `leave_bytes` of the file system."""
    stat = os.statvfs(data_dir)
    filler = data_dir / "filler"
    with filler.open("wb") as file:
        file.truncate(0)
        remaining = stat.f_bavail * stat.f_frsize - leave_bytes
        chunk = b"\0" * (1 << 20)
        while remaining > 0:
            remaining -= file.write(chunk[: min(len(chunk), remaining)])
    return filler


def test_a_full_disk_refuses_writes_serves_stale_reads_and_recovers_once_space_is_freed(
    small_disk_cluster: tuple[Cluster, Path],
) -> None:
    cluster, data_dir = small_disk_cluster
    before = ok(cluster.put(1, "disk/before", b"kept"), "a put before the disk fills")
    filler = fill(data_dir, leave_bytes=256 << 10)

    codes = []
    for i in range(200):
        reply = cluster.call(1, {"op": "put", "key": f"disk/{i}", "value": VALUE, "timeout_ms": 1000}, 3.0)
        codes.append(error_code(reply))
        if codes[-1] == "STORAGE":
            break
    refused = cluster.call(1, {"op": "put", "key": "disk/refused", "value": b"v"})
    stale = ok(cluster.call(1, {"op": "get", "key": "disk/before", "consistency": "stale"}))
    status = ok(cluster.status(1))

    assert codes[-1] == "STORAGE", codes
    assert error_code(refused) == "STORAGE"
    assert refused is not None
    assert "full" in refused["error"]["message"].lower()
    assert (stale["value"], stale["version"]) == (b"kept", before["version"])
    assert status["storage_error"]

    filler.unlink()
    after = wait_until(
        lambda: (
            (r := cluster.call(1, {"op": "put", "key": "disk/after", "value": b"v"})) and r.get("ok") and r
        ),
        timeout_s=10.0,
        what="a put to succeed once space is freed",
    )
    read = ok(cluster.call(1, {"op": "get", "key": "disk/before"}))

    assert after["ok"]
    assert (read["value"], read["version"]) == (b"kept", before["version"])
    assert ok(cluster.status(1))["storage_error"] is None
