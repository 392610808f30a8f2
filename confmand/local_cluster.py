"""A local cluster of confmand processes on loopback: for the README's demo and for tests.

`LocalCluster` starts one `confmand run` process per config file, waits
until a leader serves, and stops every process it started by PID (SIGTERM,
then SIGKILL after a grace period), so nothing is left running. It speaks the
client protocol directly (one DEALER, msgpack) to stay independent of the
client library it is used to demonstrate.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import zmq

from confmand.config import NodeConfig, load_config

STOP_GRACE_S = 10.0


class ClusterError(RuntimeError):
    pass


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports the kernel reports free (held open together, so distinct).

    Free a moment ago, not reserved: a caller that fails to bind one picks again.
    """
    with held_ports(count) as ports:
        return ports


@contextmanager
def held_ports(count: int) -> Iterator[list[int]]:
    """`count` distinct free loopback ports, kept bound until the block ends.

    While they are held the kernel gives none of them to another bind to port 0: a caller that
    opens listeners of its own on port 0 meanwhile (proxies, say) cannot be handed one of them.
    """
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        yield [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class NodeProcess:
    config: NodeConfig
    config_path: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def node_id(self) -> int:
        return self.config.node_id

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class LocalCluster:
    config_paths: list[Path]
    log_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    nodes: dict[int, NodeProcess] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for path in self.config_paths:
            config = load_config(path)
            self.nodes[config.node_id] = NodeProcess(config, path, self.log_dir / f"node{config.node_id}.log")

    # ------------------------------------------------------------------ processes

    def start(self, node_id: int | None = None) -> None:
        for node in self._select(node_id):
            if node.alive():
                continue
            log = node.log_path.open("ab")
            env = {**os.environ, **self.extra_env}
            node.process = subprocess.Popen(
                [sys.executable, "-m", "confmand", "run", "--config", str(node.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
            log.close()

    def stop(self, node_id: int | None = None, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop nodes by PID and wait for them; SIGKILL whatever outlives the grace period."""
        selected = [n for n in self._select(node_id) if n.process is not None]
        for node in selected:
            assert node.process is not None
            if node.process.poll() is None:
                node.process.send_signal(sig)
        deadline = time.monotonic() + STOP_GRACE_S
        for node in selected:
            assert node.process is not None
            try:
                node.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()
            node.process = None

    def kill(self, node_id: int) -> None:
        self.stop(node_id, signal.SIGKILL)

    def _select(self, node_id: int | None) -> list[NodeProcess]:
        return list(self.nodes.values()) if node_id is None else [self.nodes[node_id]]

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ asking nodes

    def request(self, node_id: int, request: dict[str, Any], timeout_s: float = 1.0) -> dict[str, Any] | None:
        """One request to one node; None if it does not answer in time."""
        address = self.nodes[node_id].config.client_address
        sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        with sock:
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(address)
            rid = next(_ids)
            sock.send(msgpack.packb({"v": 1, "id": rid, **request}, use_bin_type=True))
            if not sock.poll(int(timeout_s * 1000)):
                return None
            reply: dict[str, Any] = msgpack.unpackb(sock.recv(), raw=False)
            return reply

    def status(self, node_id: int, timeout_s: float = 1.0) -> dict[str, Any] | None:
        return self.request(node_id, {"op": "status"}, timeout_s)

    def wait_for_leader(self, timeout_s: float = 15.0, among: list[int] | None = None) -> int:
        """The id of a leader that every answering node among `among` agrees on."""
        deadline = time.monotonic() + timeout_s
        candidates = among or list(self.nodes)
        while time.monotonic() < deadline:
            for node_id in candidates:
                if not self.nodes[node_id].alive():
                    self._check_exited(node_id)
                    continue
                status = self.status(node_id, timeout_s=0.5)
                if status and status.get("ok") and status.get("role") == "leader":
                    return node_id
            time.sleep(0.05)
        raise ClusterError(f"no leader among nodes {candidates} within {timeout_s} s; logs in {self.log_dir}")

    def _check_exited(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.process is not None and node.process.poll() is not None:
            tail = node.log_path.read_text(errors="replace")[-2000:]
            raise ClusterError(f"node {node_id} exited with {node.process.returncode}:\n{tail}")


_ids = itertools.count(1)


def run_demo(config_dir: Path, log_dir: Path) -> int:
    """Start the cluster of `config_dir`, show `confctl status` and a put/get, then serve until Ctrl-C."""
    paths = sorted(config_dir.glob("*.toml"))
    if not paths:
        raise ClusterError(f"no *.toml node configs in {config_dir}")
    cluster = LocalCluster(paths, log_dir)
    stop = False

    def _on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    with cluster:
        cluster.start()
        print(f"started {len(paths)} nodes from {config_dir} (logs in {log_dir})", flush=True)
        leader = cluster.wait_for_leader()
        print(f"node {leader} leads; a few confctl commands:\n", flush=True)
        endpoints = ",".join(n.config.client_address for n in cluster.nodes.values())
        for args in (
            ["status"],
            ["shards"],
            ["put", "demo/greeting", "hello from confman"],
            ["get", "demo/greeting"],
            ["get", "demo/greeting", "--consistency", "stale"],
        ):
            print(f"$ confctl --endpoints {endpoints} {' '.join(args)}", flush=True)
            subprocess.run([sys.executable, "-m", "confctl", "--endpoints", endpoints, *args], check=False)
            print(flush=True)
        print(
            "The cluster is serving; try, in another shell:\n"
            f"  .venv/bin/confctl --endpoints {endpoints} put app/db/url postgres://db:5432\n"
            f"  .venv/bin/confctl --endpoints {endpoints} ls app/\n"
            "Press Ctrl-C to stop every node.",
            flush=True,
        )
        while not stop:
            for node in cluster.nodes.values():
                if not node.alive():
                    print(f"node {node.node_id} exited; see {node.log_path}", flush=True)
                    stop = True
            time.sleep(0.2)
        print("stopping every node ...", flush=True)
    print("stopped.", flush=True)
    return 0
