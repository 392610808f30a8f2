"""A throw-away 3-node confmand cluster for benchmarks, and what its processes cost.

`BenchCluster` writes one TOML config per node into a fresh directory (free
loopback ports, fsync on unless asked otherwise), starts the nodes through
`confmand.local_cluster.LocalCluster` and, being a context manager, always
stops them again by PID: on a normal exit, on an exception and on Ctrl-C or
SIGTERM (see `signals_raise`). Nothing here is measured; the CPU and memory
readers (`/proc/PID/stat`, `/proc/PID/status`) let the caller measure.

Invariants: every process started here is stopped before `__exit__` returns;
ports are chosen by the kernel (bind to port 0), so two runs never collide
with each other or with config/local-3.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from confmand.local_cluster import LocalCluster, free_ports

MIB = 1 << 20
NODE_IDS = (1, 2, 3)
CLUSTER_ID = "bench"
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """The benchmark cannot go on (a node died, no leader, a generator failed); the message says why."""


def node_config_toml(
    node_id: int,
    data_dir: Path,
    peer_ports: list[int],
    client_ports: list[int],
    *,
    fsync: bool,
    extra: str = "",
) -> str:
    """The TOML of one node of the cluster (fields: config/README.md)."""
    peers = "".join(
        f'\n[[peers]]\nid = {pid}\npeer_address = "tcp://127.0.0.1:{pp}"\n'
        f'client_address = "tcp://127.0.0.1:{cp}"\n'
        for pid, pp, cp in zip(NODE_IDS, peer_ports, client_ports, strict=True)
    )
    i = NODE_IDS.index(node_id)
    return (
        f'[node]\ncluster_id = "{CLUSTER_ID}"\nnode_id = {node_id}\ndata_dir = "{data_dir}"\n'
        f'peer_address = "tcp://127.0.0.1:{peer_ports[i]}"\n'
        f'client_address = "tcp://127.0.0.1:{client_ports[i]}"\n'
        f'{peers}\n[storage]\nfsync = {"true" if fsync else "false"}\n\n[log]\nlevel = "info"\n{extra}'
    )


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used so far (0.0 once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rpartition(")")[2].split()  # the command name may hold spaces: skip past it
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S  # utime, stime (fields 14, 15)


def proc_rss_bytes(pid: int) -> int:
    """The process's resident set size now (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class BenchCluster:
    """Three confmand nodes on loopback in a temp dir; a context manager that always stops them."""

    def __init__(
        self, *, fsync: bool = True, base_dir: Path | None = None, keep: bool = False, extra_toml: str = ""
    ) -> None:
        """`extra_toml` is added to every node's config (a `[cluster]` section, say)."""
        self.root = Path(tempfile.mkdtemp(prefix="confman-bench-", dir=base_dir))
        self.keep = keep
        ports = free_ports(2 * len(NODE_IDS))
        peer_ports, client_ports = ports[: len(NODE_IDS)], ports[len(NODE_IDS) :]
        paths = []
        for node_id in NODE_IDS:
            path = self.root / f"node{node_id}.toml"
            data_dir = self.root / f"data{node_id}"
            path.write_text(
                node_config_toml(node_id, data_dir, peer_ports, client_ports, fsync=fsync, extra=extra_toml)
            )
            paths.append(path)
        self.local = LocalCluster(paths, self.root / "logs")
        self.addresses = {
            nid: f"tcp://127.0.0.1:{port}" for nid, port in zip(NODE_IDS, client_ports, strict=True)
        }

    def __enter__(self) -> BenchCluster:
        try:
            self.local.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every node by PID (SIGTERM, then SIGKILL after a grace); remove the temp dir unless kept."""
        try:
            self.local.stop()
        finally:
            if not self.keep:
                shutil.rmtree(self.root, ignore_errors=True)

    def wait_for_leader(self, timeout_s: float = 20.0) -> int:
        try:
            return self.local.wait_for_leader(timeout_s)
        except Exception as exc:  # ClusterError, or a node that exited: one typed error for the caller
            raise BenchError(f"{exc}\n{self.log_tails()}") from exc

    def request(self, node_id: int, request: dict[str, Any], timeout_s: float = 5.0) -> dict[str, Any]:
        reply = self.local.request(node_id, request, timeout_s)
        if reply is None:
            raise BenchError(f"node {node_id} did not answer {request.get('op')} within {timeout_s} s")
        return reply

    def pids(self) -> dict[int, int]:
        """The PID of every running node."""
        return {
            nid: node.process.pid
            for nid, node in self.local.nodes.items()
            if node.process is not None and node.alive()
        }

    def check_alive(self) -> None:
        dead = [nid for nid, node in self.local.nodes.items() if not node.alive()]
        if dead:
            raise BenchError(f"node(s) {dead} exited during the benchmark\n{self.log_tails()}")

    def cpu_s(self) -> dict[int, float]:
        """CPU seconds used so far by each node."""
        return {nid: proc_cpu_s(pid) for nid, pid in self.pids().items()}

    def rss_bytes_per_node(self) -> dict[int, int]:
        return {nid: proc_rss_bytes(pid) for nid, pid in self.pids().items()}

    def rss_mib(self) -> float:
        """The resident memory of all nodes together."""
        return sum(proc_rss_bytes(pid) for pid in self.pids().values()) / MIB

    def log_tails(self, chars: int = 1500) -> str:
        tails = []
        for nid, node in self.local.nodes.items():
            if node.log_path.exists():
                text = node.log_path.read_text(errors="replace")[-chars:]
                tails.append(f"--- node {nid} log ({node.log_path}):\n{text}")
        return "\n".join(tails)


@contextmanager
def signals_raise() -> Iterator[None]:
    """Turn SIGTERM (and SIGINT, as usual) into KeyboardInterrupt, so `with` blocks clean up."""

    def _raise(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
