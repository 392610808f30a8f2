"""Real confmand clusters for integration tests: configs on free ports, processes by PID, raw protocol.

`Cluster` writes one TOML config per node under a test's tmp dir (free
loopback ports, data dirs beside them), starts `python -m confmand run` per
node through `confmand.local_cluster.LocalCluster`, and speaks the client
protocol (docs/protocol.md) over its own DEALER sockets (`Conn`), so a test
controls exactly which node gets which bytes.

Invariants:
- Every process any `Cluster` starts is appended to `STARTED`; the session
  finalizer in conftest.py asserts that each of them has exited, and that
  this process has no confmand child left.
- `Cluster.close()` resumes paused (SIGSTOPped) nodes before stopping them, so
  teardown never waits on a process that cannot handle SIGTERM.
- Nothing waits a fixed time where a condition can be polled: `wait_until`
  polls a predicate against a deadline and fails naming what it waited for.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgpack
import zmq

from confmand.local_cluster import ClusterError, LocalCluster, free_ports
from confmand.protocol.shardmap import ShardMap

T = TypeVar("T")
Reply = dict[str, Any]

STARTED: list[subprocess.Popen[bytes]] = []
POLL_S = 0.02
BIND_FAILURE = "Address already in use"


# ------------------------------------------------------------------ waiting


def wait_until(predicate: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """The first truthy value of `predicate()` within `timeout_s`; AssertionError naming `what` if none."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(POLL_S)


# ------------------------------------------------------------------ configs


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    """The knobs tests turn; each maps to the config field of the same name (config/README.md)."""

    size: int = 3
    cluster_id: str = "itest"
    tick_ms: int = 50
    election_ticks: int = 10
    snapshot_interval_entries: int = 10_000
    log_retain_entries: int = 1_000
    limits: dict[str, int] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    cluster: dict[str, int] = field(default_factory=dict)  # [cluster]: partitions, data_shards, replication
    joins: int = 0  # the last this many nodes are not in the first membership (peers' `joins = true`)
    fsync: bool = True
    http: bool = False  # [http] address on a free loopback port per node (Cluster.http_url)
    ready_max_lag_entries: int = 1_000  # [http]: how far a replica may trail and still be ready


def render_config(
    options: ClusterOptions,
    node_id: int,
    data_dir: Path,
    ports: dict[int, tuple[int, int]],
    http_port: int | None = None,
) -> str:
    """The TOML of node `node_id`; `ports` maps every node id to its (peer, client) port."""
    lines = [
        "[node]",
        f'cluster_id = "{options.cluster_id}"',
        f"node_id = {node_id}",
        f'data_dir = "{data_dir}"',
        "",
    ]
    for peer_id, (peer_port, client_port) in sorted(ports.items()):
        lines += [
            "[[peers]]",
            f"id = {peer_id}",
            f'peer_address = "tcp://127.0.0.1:{peer_port}"',
            f'client_address = "tcp://127.0.0.1:{client_port}"',
            *(["joins = true"] if peer_id > options.size - options.joins else []),
            "",
        ]
    lines += [
        "[raft]",
        f"tick_ms = {options.tick_ms}",
        f"election_ticks = {options.election_ticks}",
        "heartbeat_ticks = 1",
        f"snapshot_interval_entries = {options.snapshot_interval_entries}",
        f"log_retain_entries = {options.log_retain_entries}",
        "",
        "[storage]",
        f"fsync = {'true' if options.fsync else 'false'}",
        "",
    ]
    for section, values in (
        ("limits", options.limits),
        ("requests", options.requests),
        ("cluster", options.cluster),
    ):
        lines.append(f"[{section}]")
        lines += [f"{name} = {value}" for name, value in values.items()]
        lines.append("")
    if http_port is not None:
        lines += [
            "[http]",
            f'address = "127.0.0.1:{http_port}"',
            f"ready_max_lag_entries = {options.ready_max_lag_entries}",
            "",
        ]
    return "\n".join(lines)


# ------------------------------------------------------------------ one client connection


_request_ids = itertools.count(1)


class Conn:
    """One DEALER to one node's client address; replies are matched by `id`, strays dropped."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.socket: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(address)

    def call(self, request: dict[str, Any], timeout_s: float = 3.0) -> Reply | None:
        """Send `{v: 1, id, **request}` and return its reply; None if none came within `timeout_s`."""
        rid = next(_request_ids)
        if not self.send({"v": 1, "id": rid, **request}):
            return None
        deadline = time.monotonic() + timeout_s
        while True:
            reply = self.receive(deadline - time.monotonic())
            if reply is None or reply.get("id") == rid:
                return reply

    def send(self, request: dict[str, Any]) -> bool:
        """Queue one request frame; False when the queue to a dead node is full (never blocks)."""
        try:
            self.socket.send(msgpack.packb(request, use_bin_type=True), zmq.NOBLOCK)
        except zmq.Again:
            return False
        return True

    def send_frames(self, frames: list[bytes]) -> None:
        self.socket.send_multipart(frames)

    def receive(self, timeout_s: float) -> Reply | None:
        """The next reply map within `timeout_s`, or None."""
        if timeout_s <= 0 or not self.socket.poll(int(timeout_s * 1000)):
            return None
        reply = msgpack.unpackb(self.socket.recv(), raw=False)
        assert isinstance(reply, dict), f"a reply must be a map, got {reply!r}"
        return reply

    def close(self) -> None:
        self.socket.close(linger=0)


def ok(reply: Reply | None, what: str = "the request") -> Reply:
    """`reply`, asserting that it came and succeeded."""
    assert reply is not None, f"{what}: no reply"
    assert reply["ok"], f"{what} failed: {reply}"
    return reply


def error_code(reply: Reply | None) -> str | None:
    """The error code of a failed reply (None for a success); 'NO_REPLY' when nothing came back."""
    if reply is None:
        return "NO_REPLY"
    if reply.get("ok"):
        return None
    return str(reply["error"]["code"])


class Writer:
    """A session writer that retries each write (same client_id and seq) across nodes until acknowledged.

    Retryable errors and silence move on to the hinted leader, else the next
    node. `put` returns the acknowledging reply, or None when its deadline
    passed first: then the write's outcome is unknown. A non-retryable error
    is a test failure. Create it in the thread that uses it (zmq sockets are
    per thread).
    """

    def __init__(self, addresses: dict[int, str], attempt_s: float = 0.5) -> None:
        self.conns = {nid: Conn(address) for nid, address in addresses.items()}
        self.client_id = os.urandom(16)
        self.seq = 0
        self.attempt_s = attempt_s
        self.target = next(iter(self.conns))

    def put(self, key: str, value: bytes, timeout_s: float) -> Reply | None:
        self.seq += 1
        request = {"op": "put", "key": key, "value": value, "client_id": self.client_id, "seq": self.seq}
        request["timeout_ms"] = int(self.attempt_s * 1000)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            reply = self.conns[self.target].call(request, self.attempt_s + 0.2)
            code = error_code(reply)
            if code is None:
                return reply
            if reply is not None and not reply["error"]["retryable"]:
                raise AssertionError(f"put {key!r} failed with a non-retryable error: {reply}")
            hint = reply.get("leader") if reply is not None else None
            if hint and hint["id"] in self.conns and hint["id"] != self.target:
                self.target = hint["id"]
            else:
                ids = list(self.conns)
                self.target = ids[(ids.index(self.target) + 1) % len(ids)]
                if code != "NO_REPLY":
                    time.sleep(POLL_S)  # no leader yet: an election takes a few ticks
        return None

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()


# ------------------------------------------------------------------ the cluster


class Cluster:
    """A cluster of real confmand processes under `root`; see the module docstring for invariants."""

    def __init__(self, root: Path, options: ClusterOptions | None = None) -> None:
        self.root = root
        self.options = options or ClusterOptions()
        self.node_ids = list(range(1, self.options.size + 1))
        self.paused: set[int] = set()
        self._conns: dict[int, Conn] = {}
        self.local = self._configure()

    def _configure(self) -> LocalCluster:
        per_node = 3 if self.options.http else 2
        ports_flat = free_ports(per_node * len(self.node_ids))
        ports = {
            nid: (ports_flat[per_node * i], ports_flat[per_node * i + 1])
            for i, nid in enumerate(self.node_ids)
        }
        self.http_ports = (
            {nid: ports_flat[per_node * i + 2] for i, nid in enumerate(self.node_ids)}
            if self.options.http
            else {}
        )
        self.ports = ports
        config_dir = self.root / "config"
        config_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for nid in self.node_ids:
            path = config_dir / f"node{nid}.toml"
            path.write_text(
                render_config(self.options, nid, self.data_dir(nid), ports, self.http_ports.get(nid))
            )
            paths.append(path)
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()
        return LocalCluster(paths, self.root / "logs")

    # ---------------------------------------------------------------- paths

    def data_dir(self, node_id: int) -> Path:
        return self.root / "data" / f"node{node_id}"

    def config_path(self, node_id: int) -> Path:
        return self.local.nodes[node_id].config_path

    def http_url(self, node_id: int, path: str) -> str:
        return f"http://127.0.0.1:{self.http_ports[node_id]}{path}"

    def client_address(self, node_id: int) -> str:
        return self.local.nodes[node_id].config.client_address

    def log_text(self, node_id: int) -> str:
        path = self.local.nodes[node_id].log_path
        return path.read_text(errors="replace") if path.exists() else ""

    def rewrite_config(self, node_id: int, peers: list[int]) -> None:
        """Write `node_id`'s config again listing only `peers` in [[peers]] (for SIGHUP tests)."""
        ports = {nid: self.ports[nid] for nid in peers}
        http_port = self.http_ports.get(node_id)
        text = render_config(self.options, node_id, self.data_dir(node_id), ports, http_port)
        self.config_path(node_id).write_text(text)

    # ---------------------------------------------------------------- processes

    def sighup(self, node_id: int, marker: str) -> None:
        """SIGHUP, and wait until the node logged its answer to it (a line containing `marker`)."""
        seen = self.log_text(node_id).count(marker)
        self.process(node_id).send_signal(signal.SIGHUP)
        wait_until(
            lambda: self.log_text(node_id).count(marker) > seen or None,
            5.0,
            f"node {node_id} to log {marker!r}",
        )

    def boot(self, timeout_s: float = 15.0) -> int:
        """Start every node and return the leader of shard 1 once every shard is led by the map's
        preferred leader (a new cluster hands leadership there in its first seconds: a test starts
        from the settled cluster, not from the hand-overs); on a port taken meanwhile, new ports
        and one retry."""
        try:
            self.start()
            self.wait_for_leader(timeout_s)
        except ClusterError:
            if not any(BIND_FAILURE in self.log_text(n) for n in self.node_ids):
                raise
            self.local.stop()
            shutil.rmtree(self.root / "data", ignore_errors=True)
            shutil.rmtree(self.root / "logs", ignore_errors=True)
            self.local = self._configure()
            self.start()
            self.wait_for_leader(timeout_s)
        self.wait_for_preferred_leaders(timeout_s)
        return self.wait_for_leader(timeout_s)

    def wait_for_preferred_leaders(self, timeout_s: float = 15.0) -> None:
        """Every shard of the map led by its preferred leader (its first replica), as every running
        node that holds the shard sees it."""
        reply = ok(self.call(1, {"op": "shard_map"}), "the shard map")
        preferred = {shard: replicas[0] for shard, replicas in ShardMap.from_wire(reply).replicas.items()}

        def settled() -> bool:
            for node_id in self.node_ids:
                if not self.local.nodes[node_id].alive():
                    continue
                status = self.status(node_id, 0.5)
                if status is None or any(
                    line["leader_id"] != preferred.get(line["shard_id"]) for line in status["shards"]
                ):
                    return False
            return True

        deadline = time.monotonic() + timeout_s
        while not settled():
            if time.monotonic() > deadline:
                raise ClusterError(f"shards not led by their preferred leaders within {timeout_s} s")
            time.sleep(POLL_S)

    def start(self, node_id: int | None = None) -> None:
        self.local.start(node_id)
        for nid in self.node_ids if node_id is None else [node_id]:
            process = self.local.nodes[nid].process
            if process is not None and process not in STARTED:
                STARTED.append(process)

    def process(self, node_id: int) -> subprocess.Popen[bytes]:
        process = self.local.nodes[node_id].process
        assert process is not None, f"node {node_id} is not running"
        return process

    def kill(self, node_id: int) -> None:
        """kill -9, and reap it."""
        self.local.kill(node_id)

    def terminate(self, node_id: int) -> int:
        """SIGTERM, wait for the exit, return the exit code (SIGKILL after LocalCluster's grace)."""
        process = self.process(node_id)
        self.local.stop(node_id)
        code = process.returncode
        assert code is not None
        return code

    def pause(self, node_id: int) -> None:
        self.paused.add(node_id)
        self.process(node_id).send_signal(signal.SIGSTOP)

    def resume(self, node_id: int) -> None:
        process = self.local.nodes[node_id].process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGCONT)
        self.paused.discard(node_id)

    def close(self) -> None:
        """Resume what is paused, stop every node by PID, close sockets; safe to call twice."""
        for nid in list(self.paused):
            self.resume(nid)
        self.local.stop()
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    # ---------------------------------------------------------------- asking nodes

    def conn(self, node_id: int) -> Conn:
        """A DEALER to `node_id`, kept open (for the test's own thread only)."""
        if node_id not in self._conns:
            self._conns[node_id] = Conn(self.client_address(node_id))
        return self._conns[node_id]

    def call(self, node_id: int, request: dict[str, Any], timeout_s: float = 3.0) -> Reply | None:
        return self.conn(node_id).call(request, timeout_s)

    def status(self, node_id: int, timeout_s: float = 1.0, shard: int | None = None) -> Reply | None:
        """The node's status (of `shard`, else of its first data shard); None unless it answers ok."""
        request: dict[str, Any] = {"op": "status"} if shard is None else {"op": "status", "shard": shard}
        reply = self.call(node_id, request, timeout_s)
        return reply if reply is not None and reply.get("ok") else None

    def wait_for_leader(self, timeout_s: float = 15.0, among: list[int] | None = None) -> int:
        """A node that leads shard 1 and that every other answering node among `among` follows there."""
        candidates = among or [n for n in self.node_ids if self.local.nodes[n].alive()]

        def agreed() -> int | None:
            statuses = {n: self.status(n, 0.5, shard=1) for n in candidates}
            leaders = {n for n, s in statuses.items() if s is not None and s["role"] == "leader"}
            if len(leaders) != 1:
                return None
            (leader,) = leaders
            followers_agree = all(s is None or s["leader_id"] == leader for s in statuses.values())
            return leader if followers_agree else None

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for nid in candidates:
                self._check_running(nid)  # a node that died (say, on start) fails fast, with its log
            leader = agreed()
            if leader is not None:
                return leader
            time.sleep(POLL_S)
        raise ClusterError(f"no agreed leader among {candidates} within {timeout_s} s; logs in {self.root}")

    def addresses(self, among: list[int] | None = None) -> dict[int, str]:
        return {nid: self.client_address(nid) for nid in among or self.node_ids}

    def _check_running(self, node_id: int) -> None:
        process = self.local.nodes[node_id].process
        if process is not None and process.poll() is not None:
            tail = self.log_text(node_id)[-2000:]
            raise ClusterError(f"node {node_id} exited with {process.returncode}:\n{tail}")

    def followers(self, leader: int) -> list[int]:
        return [n for n in self.node_ids if n != leader]

    def wait_applied(self, node_id: int, index: int, timeout_s: float = 10.0) -> Reply:
        """The status of `node_id` once its applied index reaches `index`."""

        def reached() -> Reply | None:
            status = self.status(node_id, 0.5)
            return status if status is not None and status["applied_index"] >= index else None

        return wait_until(reached, timeout_s, f"node {node_id} to apply index {index}")

    def put(self, node_id: int, key: str, value: bytes, **extra: Any) -> Reply:
        reply = self.call(node_id, {"op": "put", "key": key, "value": value, **extra})
        return ok(reply, f"put {key!r} on node {node_id}")


def http_get(cluster: Cluster, node_id: int, path: str, timeout_s: float = 2.0) -> tuple[int, Any]:
    """(status, JSON body or text); (0, reason) when nothing answered in time."""
    try:
        with urllib.request.urlopen(cluster.http_url(node_id, path), timeout=timeout_s) as response:
            status, body = response.status, response.read()
            content_type = response.headers.get_content_type()
    except urllib.error.HTTPError as error:
        status, body, content_type = error.code, error.read(), error.headers.get_content_type()
    except (TimeoutError, urllib.error.URLError) as error:
        return 0, str(error)
    return status, json.loads(body) if content_type == "application/json" else body.decode()


@contextmanager
def running(root: Path, options: ClusterOptions | None = None) -> Iterator[Cluster]:
    """A cluster that is stopped on exit, whatever happens inside."""
    cluster = Cluster(root, options)
    try:
        yield cluster
    finally:
        cluster.close()


def confmand_children() -> list[str]:
    """The command lines of this process's live children that run confmand (Linux /proc)."""
    found = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # exited meanwhile
        # Field 4 of /proc/PID/stat is the parent pid; the command name in field 2 may hold spaces.
        fields = stat.rsplit(")", 1)[-1].split()
        if int(fields[1]) == me and "confmand" in cmdline and fields[0] != "Z":
            found.append(f"{entry.name}: {cmdline}")
    return found
