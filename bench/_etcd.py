"""A throw-away 3-member etcd cluster on loopback (Debian's etcd-server), for side-by-side benchmarks.

`EtcdCluster` starts three `etcd` processes in a fresh temp dir on free
loopback ports, with etcd's defaults otherwise (fsync on, a snapshot every
100,000 entries, as etcd ships), and, being a context manager, always stops
them again by PID (SIGTERM, then SIGKILL after a grace) and removes the dir.
The leader is found through etcd's JSON gateway (`/v3/maintenance/status`),
so nothing but the `etcd` binary is needed.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from bench._cluster import BenchError, proc_cpu_s, proc_rss_bytes
from confmand.local_cluster import free_ports

MEMBERS = 3
STOP_GRACE_S = 5.0
ETCD = "etcd"


class EtcdCluster:
    """Three etcd members on 127.0.0.1; a context manager that always stops them."""

    def __init__(self, base_dir: Path | None = None, binary: str = ETCD) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="confman-vs-etcd-", dir=base_dir))
        self.binary = binary
        ports = free_ports(2 * MEMBERS)
        self.client_ports, self.peer_ports = ports[:MEMBERS], ports[MEMBERS:]
        self.names = [f"e{i + 1}" for i in range(MEMBERS)]
        self.processes: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []

    @property
    def endpoints(self) -> list[str]:
        """Client endpoints as the Go client takes them (host:port)."""
        return [f"127.0.0.1:{port}" for port in self.client_ports]

    def __enter__(self) -> EtcdCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        initial = ",".join(
            f"{name}=http://127.0.0.1:{port}" for name, port in zip(self.names, self.peer_ports, strict=True)
        )
        for name, client, peer in zip(self.names, self.client_ports, self.peer_ports, strict=True):
            log = (self.root / f"{name}.log").open("wb")
            self._logs.append(log)
            command = [
                self.binary,
                "--name", name,
                "--data-dir", str(self.root / name),
                "--listen-client-urls", f"http://127.0.0.1:{client}",
                "--advertise-client-urls", f"http://127.0.0.1:{client}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", initial,
                "--initial-cluster-state", "new",
                "--initial-cluster-token", self.root.name,
                "--logger", "zap",
                "--log-level", "warn",
            ]  # fmt: skip
            self.processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for process in self.processes:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self._logs:
            log.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def status(self, index: int, timeout_s: float = 2.0) -> dict[str, Any]:
        """One member's `/v3/maintenance/status` (its member id, the leader's, the raft index)."""
        request = urllib.request.Request(
            f"http://{self.endpoints[index]}/v3/maintenance/status",
            data=b"{}",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:
            result: dict[str, Any] = json.load(reply)
        return result

    def wait_for_leader(self, timeout_s: float = 30.0) -> int:
        """The index (0-based) of the member that leads, once all members agree on one."""
        deadline = time.monotonic() + timeout_s
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                statuses = [self.status(i) for i in range(MEMBERS)]
            except (OSError, urllib.error.URLError, ValueError) as exc:
                last_error = str(exc)
            else:
                leaders = {s.get("leader") for s in statuses}
                members = [s.get("header", {}).get("member_id") for s in statuses]
                if len(leaders) == 1 and (leader := leaders.pop()) in members and leader not in (None, "0"):
                    return members.index(leader)
                last_error = f"leaders seen: {sorted(str(x) for x in leaders)}"
            time.sleep(0.1)  # etcd elects on its own clock: polling, nothing to await
        raise BenchError(f"etcd elected no leader within {timeout_s} s ({last_error})\n{self.log_tails()}")

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.poll() is None]

    def check_alive(self) -> None:
        dead = [name for name, p in zip(self.names, self.processes, strict=True) if p.poll() is not None]
        if dead:
            raise BenchError(f"etcd member(s) {dead} exited\n{self.log_tails()}")

    def cpu_s(self) -> float:
        """CPU seconds used so far by all members together."""
        return sum(proc_cpu_s(pid) for pid in self.pids())

    def rss_bytes(self) -> int:
        return sum(proc_rss_bytes(pid) for pid in self.pids())

    def log_tails(self, chars: int = 1500) -> str:
        tails = []
        for name in self.names:
            path = self.root / f"{name}.log"
            if path.exists():
                tails.append(f"--- etcd {name} log:\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(tails)
