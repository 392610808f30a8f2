"""A node's data dir across stops: a clean SIGTERM keeps everything; a damaged or foreign dir is refused.

A refused start must exit non-zero at once, say what is wrong, and never
bind its client port (clients must not reach a node that cannot serve).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import plyvel
import pytest

from confmand.cli import EXIT_DATA_DIR
from tests.integration.conftest import MakeCluster
from tests.integration.harness import POLL_S, STARTED, Cluster, ClusterOptions, ok

DATA_SHARD = 1
REFUSAL_BOUND_S = 10.0


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def port_accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def run_refused(config: Path, client_port: int | None) -> tuple[int, str, float]:
    """Run `confmand run` expecting a refusal: (exit code, stderr, seconds); fails if `client_port` opens."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "confmand", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    STARTED.append(process)
    try:
        while process.poll() is None and time.monotonic() - started < REFUSAL_BOUND_S:
            assert client_port is None or not port_accepts(client_port), (
                "a refused node bound its client port"
            )
            time.sleep(POLL_S)
    finally:
        if process.poll() is None:
            process.kill()
        _, stderr = process.communicate()
    return process.returncode, stderr.decode(errors="replace"), time.monotonic() - started


@dataclass(frozen=True)
class Refusals:
    """A cluster whose nodes `corrupt_node` and `foreign_node` applied a write and were stopped cleanly."""

    cluster: Cluster
    corrupt_node: int
    foreign_node: int
    running_node: int


@pytest.fixture(scope="module")
def refusals(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Refusals]:
    """Shared by the refusal tests: each uses its own node of it, and none of them needs a quorum."""
    cluster = Cluster(tmp_path_factory.mktemp("refusals"), ClusterOptions())
    try:
        leader = cluster.boot()
        write = cluster.put(leader, "dir/key", b"value")
        followers = cluster.followers(leader)
        for node in followers:
            cluster.wait_applied(node, int(write["version"].split(":")[1]))
            assert cluster.terminate(node) == 0
        yield Refusals(cluster, followers[0], followers[1], leader)
    finally:
        cluster.close()


def corrupt_last_log_entry(data_dir: Path) -> int:
    """Flip one byte of the newest log record of the data shard; returns its index."""
    prefix = b"l" + DATA_SHARD.to_bytes(4, "big")
    db = plyvel.DB(str(data_dir))
    try:
        key, value = list(db.iterator(prefix=prefix))[-1]
        db.put(key, value[:-1] + bytes([value[-1] ^ 0xFF]), sync=True)
    finally:
        db.close()
    return int.from_bytes(key[5:13], "big")


def test_a_node_with_a_corrupt_log_record_refuses_to_start(refusals: Refusals) -> None:
    cluster, node = refusals.cluster, refusals.corrupt_node
    index = corrupt_last_log_entry(cluster.data_dir(node))

    code, stderr, seconds = run_refused(cluster.config_path(node), port_of(cluster.client_address(node)))

    assert code == EXIT_DATA_DIR, stderr
    assert seconds < REFUSAL_BOUND_S
    assert f"log entry {index}" in stderr, stderr
    assert "corrupt" in stderr, stderr
    assert str(cluster.data_dir(node)) in stderr, stderr


def test_a_node_refuses_a_data_dir_of_another_cluster(refusals: Refusals) -> None:
    cluster, node = refusals.cluster, refusals.foreign_node
    foreign = cluster.root / "foreign.toml"
    text = cluster.config_path(node).read_text()
    foreign.write_text(text.replace('cluster_id = "itest"', 'cluster_id = "another"', 1))

    code, stderr, seconds = run_refused(foreign, port_of(cluster.client_address(node)))

    assert code == EXIT_DATA_DIR, stderr
    assert seconds < REFUSAL_BOUND_S
    assert "cluster id 'itest', not 'another'" in stderr, stderr


def test_a_second_node_on_a_data_dir_in_use_refuses_to_start(refusals: Refusals) -> None:
    cluster, node = refusals.cluster, refusals.running_node

    code, stderr, _ = run_refused(cluster.config_path(node), None)  # the running node holds the port

    assert code == EXIT_DATA_DIR, stderr
    assert "in use" in stderr, stderr


def test_sigterm_stops_every_node_cleanly_and_a_restarted_node_serves_its_own_data(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster()
    leader = cluster.wait_for_leader()
    write = cluster.put(leader, "dir/kept", b"across restarts")
    for node in cluster.node_ids:
        cluster.wait_applied(node, int(write["version"].split(":")[1]))

    codes = {node: cluster.terminate(node) for node in cluster.node_ids}
    cluster.start(leader)  # alone: whatever it serves comes from its own data dir
    alone = ok(cluster.call(leader, {"op": "get", "key": "dir/kept", "consistency": "stale"}, timeout_s=10.0))
    cluster.start()
    new_leader = cluster.wait_for_leader()
    read = ok(cluster.call(new_leader, {"op": "get", "key": "dir/kept"}))

    assert codes == dict.fromkeys(cluster.node_ids, 0)
    assert all(f"node {n} stopped" in cluster.log_text(n) for n in cluster.node_ids)
    assert (alone["value"], alone["version"]) == (b"across restarts", write["version"])
    assert (read["value"], read["version"]) == (b"across restarts", write["version"])
