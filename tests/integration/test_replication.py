"""Replication seen from clients: version reads on followers, forwarding to the leader, exactly-once retries.

These tests share one healthy cluster (they do not disturb it); each uses
its own keys.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
import zmq

from confctl.client import Client
from tests.integration.harness import Cluster, ClusterOptions, error_code, ok


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(Path(tmp_path_factory.mktemp("replication")), ClusterOptions())
    try:
        cluster.boot()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def leader(cluster: Cluster) -> int:
    return cluster.wait_for_leader()


def test_a_write_on_the_leader_is_read_on_every_follower_with_its_version_token(
    cluster: Cluster, leader: int
) -> None:
    version = cluster.put(leader, "rep/color", b"blue")["version"]

    replies = {
        follower: cluster.call(
            follower, {"op": "get", "key": "rep/color", "consistency": "version", "min_version": version}
        )
        for follower in cluster.followers(leader)
    }

    for follower, reply in replies.items():
        read = ok(reply, f"version read on node {follower}")
        assert (read["node"], read["value"], read["version"]) == (follower, b"blue", version)


def test_a_write_sent_to_a_follower_is_forwarded_and_acknowledged_by_the_leader(
    cluster: Cluster, leader: int
) -> None:
    follower = cluster.followers(leader)[0]

    reply = cluster.put(follower, "rep/forwarded", b"via a follower")

    assert reply["node"] == leader
    assert reply["leader"]["id"] == leader
    read = ok(cluster.call(leader, {"op": "get", "key": "rep/forwarded"}))
    assert (read["value"], read["version"]) == (b"via a follower", reply["version"])


def test_a_linearizable_read_sent_to_a_follower_returns_the_latest_write(
    cluster: Cluster, leader: int
) -> None:
    follower = cluster.followers(leader)[0]
    cluster.put(leader, "rep/latest", b"first")
    latest = cluster.put(leader, "rep/latest", b"second")

    read = ok(cluster.call(follower, {"op": "get", "key": "rep/latest"}))
    stale = ok(cluster.call(follower, {"op": "get", "key": "rep/latest", "consistency": "stale"}))

    assert (read["value"], read["version"]) == (b"second", latest["version"])
    assert read["node"] == leader  # forwarded: the leader answered, the follower relayed its reply
    assert stale["node"] == follower  # stale reads are served where they arrive


def test_a_req_socket_client_gets_its_reply(cluster: Cluster, leader: int) -> None:
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(cluster.client_address(leader))
    try:
        sock.send(msgpack.packb({"v": 1, "id": 5, "op": "ping"}))
        answered = sock.poll(3000)
        reply = msgpack.unpackb(sock.recv()) if answered else None
    finally:
        sock.close()

    assert reply is not None, "a REQ client got no reply"
    assert (reply["id"], reply["ok"], reply["node"]) == (5, True, leader)


def test_a_retried_write_is_applied_once_wherever_the_retry_is_sent(cluster: Cluster, leader: int) -> None:
    session = {"client_id": os.urandom(16), "seq": 1}
    write = {"op": "put", "key": "rep/once", "value": b"v1", **session}
    follower = cluster.followers(leader)[0]

    replies = [cluster.call(leader, write), cluster.call(leader, write), cluster.call(follower, write)]

    versions = {r["version"] if r is not None and r["ok"] else error_code(r) for r in replies}
    assert len(versions) == 1, replies
    read = ok(cluster.call(leader, {"op": "get", "key": "rep/once"}))
    history = ok(cluster.call(leader, {"op": "history", "key": "rep/once", "limit": 10}))
    assert read["changes"] == 1
    assert [h["version"] for h in history["versions"]] == list(versions)


def test_copies_of_one_write_in_flight_together_are_applied_once(cluster: Cluster, leader: int) -> None:
    write = {"op": "put", "key": "rep/twice-at-once", "value": b"v", "client_id": os.urandom(16), "seq": 1}
    conn = cluster.conn(leader)
    for rid in (9_000_001, 9_000_002):  # back to back: both reach the leader in one loop turn
        conn.send({"v": 1, "id": rid, **write})

    replies = [conn.receive(3.0), conn.receive(3.0)]

    assert all(r is not None and r["ok"] for r in replies), replies
    assert len({r["version"] for r in replies if r is not None}) == 1
    read = ok(cluster.call(leader, {"op": "get", "key": "rep/twice-at-once"}))
    assert read["changes"] == 1


def test_the_python_client_writes_through_a_follower_and_reads_its_write(
    cluster: Cluster, leader: int
) -> None:
    follower = cluster.followers(leader)[0]
    with Client([cluster.client_address(follower)], timeout_s=5.0) as client:
        written = client.put("rep/client", b"from confctl.client")
        read = client.get("rep/client", consistency="version", min_version=written.version)

    assert written.meta.node_id == leader
    assert (read.value, read.version) == (b"from confctl.client", written.version)


def test_the_confctl_command_puts_and_gets_a_key(cluster: Cluster) -> None:
    endpoints = ",".join(cluster.addresses().values())

    def confctl(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "confctl", "--endpoints", endpoints, "--output", "json", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)

    put = confctl("put", "rep/cli", "from the command line")
    get = confctl("get", "rep/cli")

    assert put.returncode == 0, put.stderr
    assert get.returncode == 0, get.stderr
    assert "from the command line" in get.stdout
    assert json.loads(put.stdout)["version"] in get.stdout
