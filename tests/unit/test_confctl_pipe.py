"""confctl whose reader goes away (`confctl ls --all | head`) stops quietly, as SIGPIPE would stop it."""

from __future__ import annotations

import os
import subprocess
import sys

from confctl.commands.common import PIPE_CLOSED
from confctl.testing import FakeCluster, FakeNode


def test_a_listing_piped_into_a_reader_that_closes_early_exits_141_without_a_traceback() -> None:
    cluster = FakeCluster()
    for i in range(3000):
        cluster.write({"op": "put", "key": f"app/{i:05d}", "value": b"v" * 200})
    node = FakeNode(cluster, 1, leader=True)
    env = {**os.environ, "XDG_CACHE_HOME": os.devnull}  # no endpoint cache written by a test
    try:
        command = [sys.executable, "-m", "confctl", "--endpoints", node.address, "ls", "app/", "--all"]
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as listing:
            assert listing.stdout is not None
            assert listing.stderr is not None
            first = listing.stdout.read(100)
            listing.stdout.close()  # the reader goes away, as `head` does
            stderr = listing.stderr.read().decode()
            code = listing.wait(timeout=30)
    finally:
        node.stop()

    assert first
    assert code == PIPE_CLOSED
    assert stderr == ""
