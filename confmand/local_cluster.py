"""A local cluster of confmand processes on loopback: for the README's demo and for tests.

`LocalCluster` starts one `confmand run` process per config file, waits
until a leader serves, and stops every process it started by PID (SIGTERM,
then SIGKILL after a grace period), so nothing is left running. It speaks the
client protocol directly (one DEALER, msgpack) to stay independent of the
client library it is used to demonstrate.

`confmand local-cluster` (`run_demo`) runs the `local-3` example that ships inside the package
(confmand/examples/local-3/, found with importlib.resources, so an installed confmand needs no
checkout; config/local-3/ in the checkout links to the same files): it writes copies whose data
dirs are under its `--dir` and runs those. While it serves, a node that exits is reported (id,
exit code, log) and left down while the others go on, so a person can try a failover;
SIGUSR1 restarts the nodes that are down (`Supervisor`); Ctrl-C, SIGTERM or a hangup stops all.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import msgpack
import zmq

from confmand.config import NodeConfig, load_config

STOP_GRACE_S = 10.0
EXAMPLE = "local-3"
RESTART_SIGNAL = signal.SIGUSR1


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


def confmand_run(node: NodeProcess) -> list[str]:
    """The command that runs a node: this interpreter's confmand, on the node's config."""
    return [sys.executable, "-m", "confmand", "run", "--config", str(node.config_path)]


@dataclass
class LocalCluster:
    config_paths: list[Path]
    log_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    nodes: dict[int, NodeProcess] = field(default_factory=dict)
    argv: Callable[[NodeProcess], list[str]] = confmand_run  # tests run stand-ins

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
                self.argv(node),
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


# ---------------------------------------------------------------- the packaged example


def example_configs(name: str = EXAMPLE) -> dict[str, str]:
    """The node configs of an example shipped in the package (confmand/examples/NAME/): file -> TOML."""
    folder = resources.files("confmand").joinpath("examples").joinpath(name)
    try:
        texts = {
            entry.name: entry.read_text(encoding="utf-8")
            for entry in folder.iterdir()
            if entry.name.endswith(".toml")
        }
    except OSError as exc:
        raise ClusterError(f"no example {name!r} in the confmand package: {exc}") from exc
    if not texts:
        raise ClusterError(f"no node configs in the confmand package's example {name!r}")
    return dict(sorted(texts.items()))


_DATA_DIR = re.compile(r"^data_dir\s*=.*$", re.MULTILINE)


def write_example(target: Path, name: str = EXAMPLE) -> list[Path]:
    """Copies of an example's node configs in `target/config/`, each node's data dir `target/<its
    file's stem>` (absolute, as the example's own relative ones name a place in a checkout).

    Rewritten on every start, so they follow the package; to change one, copy it elsewhere and
    pass `--config-dir`.
    """
    config_dir = target / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for file_name, text in example_configs(name).items():
        data_dir = (target / Path(file_name).stem).resolve()
        # A JSON string is a valid TOML basic string: any path, quoted and escaped. Its backslashes
        # are doubled for re, which reads a replacement's backslashes as its own escapes.
        line = f"data_dir = {json.dumps(str(data_dir))}"
        body, found = _DATA_DIR.subn(line.replace("\\", "\\\\"), text, count=1)
        if found != 1:
            raise ClusterError(f"the example {name}/{file_name} has no data_dir line to point at {target}")
        header = (
            f"# Written by confmand local-cluster from the package's examples/{name}/{file_name}, its\n"
            f"# data_dir under {target}. Rewritten on every start: edit a copy, run it with --config-dir.\n"
        )
        path = config_dir / file_name
        path.write_text(header + body, encoding="utf-8")
        paths.append(path)
    return paths


# ---------------------------------------------------------------- serving


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


@dataclass
class Supervisor:
    """Watches a serving cluster: a node that exits is reported once and left down, the others go
    on serving; `restart()` (what SIGUSR1 asks for) starts the nodes that are down again."""

    cluster: LocalCluster
    restart_hint: str
    out: Callable[[str], None] = field(default=lambda line: print(line, flush=True))
    reported: set[int] = field(default_factory=set)

    def check(self) -> list[int]:
        """Report the nodes that exited since the last check; returns their ids."""
        exited = []
        for node in self.cluster.nodes.values():
            process = node.process
            if process is None or process.poll() is None or node.node_id in self.reported:
                continue
            self.reported.add(node.node_id)
            exited.append(node.node_id)
            self.out(
                f"node {node.node_id} (pid {process.pid}) {describe_exit(process.returncode)}; "
                f"its log: {node.log_path}. The other nodes keep serving; {self.restart_hint}."
            )
        return exited

    def restart(self) -> list[int]:
        """Start every node that is down; returns their ids."""
        down = [node.node_id for node in self.cluster.nodes.values() if not node.alive()]
        for node_id in down:
            self.cluster.start(node_id)
            self.reported.discard(node_id)
            node = self.cluster.nodes[node_id]
            assert node.process is not None
            self.out(f"node {node_id} restarted (pid {node.process.pid}; log {node.log_path})")
        if not down:
            self.out("every node is running: nothing to restart")
        return down


def _confctl() -> str:
    """How to run confctl from here: the script beside this interpreter (relative when below the
    working directory, as .venv/bin/confctl in a checkout), else `confctl` from PATH."""
    script = Path(sys.executable).with_name("confctl")
    if not script.exists():
        return "confctl"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def run_demo(target: Path, config_dir: Path | None = None, log_dir: Path | None = None) -> int:
    """Start a local cluster, show `confctl status` and a put/get, then serve until Ctrl-C.

    The nodes are the packaged local-3 example's, with configs and data dirs under `target`, or
    `config_dir`'s own (as they are). Logs go to `log_dir`, else `target/logs`.
    """
    paths = sorted(config_dir.glob("*.toml")) if config_dir is not None else write_example(target)
    if not paths:
        raise ClusterError(f"no *.toml node configs in {config_dir}")
    log_dir = log_dir if log_dir is not None else target / "logs"
    cluster = LocalCluster(paths, log_dir)
    stop = restart = False

    def _on_stop(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    def _on_restart(signum: int, frame: object) -> None:
        nonlocal restart
        restart = True

    for stopping in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGHUP: the terminal closed
        signal.signal(stopping, _on_stop)
    signal.signal(RESTART_SIGNAL, _on_restart)
    restart_hint = (
        f"`kill -{RESTART_SIGNAL.name.removeprefix('SIG')} {os.getpid()}` restarts the nodes that are down"
    )
    with cluster:
        cluster.start()
        print(f"started {len(paths)} nodes from {paths[0].parent} (logs in {log_dir}):", flush=True)
        for node in cluster.nodes.values():
            assert node.process is not None
            print(f"  node {node.node_id}: pid {node.process.pid}, {node.config.client_address}", flush=True)
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
        confctl = _confctl()
        print(
            "The cluster is serving; try, in another shell:\n"
            f"  export CONFMAN_ENDPOINTS={endpoints}\n"
            f"  {confctl} put app/db/url postgres://db:5432\n"
            f"  {confctl} ls app/\n"
            "Stop a node (kill its pid) to try a failover: the others keep serving, and\n"
            f"{restart_hint}. Ctrl-C stops every node.",
            flush=True,
        )
        supervisor = Supervisor(cluster, restart_hint)
        while not stop:
            supervisor.check()
            if restart:
                restart = False
                supervisor.restart()
            time.sleep(0.2)  # a poll: a child's exit is not an event this loop can wait on with signals
        print("stopping every node ...", flush=True)
    print("stopped.", flush=True)
    return 0
