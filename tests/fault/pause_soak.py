"""Pause and resume nodes under load, many times, and see each one come back (issue 8).

`python -m tests.fault.pause_soak --pauses N [--seed S] [--netns TAG] --root DIR`
starts three real confmand nodes, ten closed-loop clients (`bench._worker`,
a 50/50 mix of puts and linearizable gets) and then, N times: picks a node
at random, SIGSTOPs it for a random 0.5-7 s, SIGCONTs it and waits until it
answers again and has applied everything the others had committed when it
woke. Any node that exits ends the run. It prints one JSON object (`SoakResult`)
as its last line and exits 0 if every pause was survived, 1 if not.

With `--netns TAG` the driver must itself run in the hub namespace of the
`tests.fault.netns.NetnsLab` of that tag: each node runs in its own
namespace and the peer links go straight through the kernel's bridge (no
proxy). Without it every node is on loopback, also with direct links.

Invariants: every process started here is stopped by PID before exit (on
SIGTERM too); nothing sleeps where an event can be awaited except the pause
itself, which is the fault.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench._cluster import signals_raise
from bench._load import preload
from bench._worker import WorkerSpec
from confmand.local_cluster import ClusterError, LocalCluster, free_ports
from tests.fault.netns import NetnsLab

NODE_IDS = (1, 2, 3)
CLIENTS = 10
WORKERS = 2
KEYS = 200
PEER_PORT, CLIENT_PORT = 7100, 7200  # in netns every node has its own address, so fixed ports are fine
BOOT_TIMEOUT_S = 30.0
RECOVERY_TIMEOUT_S = 30.0
STATUS_TIMEOUT_S = 0.5
POLL_S = 0.05
WORKER_READY_TIMEOUT_S = 30.0
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(slots=True)
class SoakResult:
    pauses_planned: int
    pauses_survived: int = 0
    pause_s: list[float] = field(default_factory=list)
    recovery_s: list[float] = field(default_factory=list)  # from SIGCONT to caught up
    died: dict[str, Any] | None = None  # the node that exited: id, exit status, log tail
    not_recovered: dict[str, Any] | None = None  # a resumed node that did not catch up in time
    applied_at_start: int = 0
    applied_at_end: int = 0  # the leader's applied index: how much the load wrote meanwhile
    netns: bool = False
    isolations_planned: int = 0
    isolations_survived: int = 0
    failover_s: list[float] = field(default_factory=list)  # from the cut to a new leader among the others
    heal_recovery_s: list[float] = field(default_factory=list)  # from the heal to the old leader caught up
    pids: list[int] = field(default_factory=list)  # every process started here, for the caller's leak check

    @property
    def ok(self) -> bool:
        return (
            self.died is None and self.not_recovered is None and self.pauses_survived == self.pauses_planned
        )


class NodeDied(Exception):
    def __init__(self, node_id: int, returncode: int) -> None:
        super().__init__(f"node {node_id} exited with status {returncode}")
        self.node_id = node_id
        self.returncode = returncode


class PrefixedCluster(LocalCluster):
    """A `LocalCluster` that starts each node behind a command prefix (its namespace's `ip netns exec`)."""

    prefixes: dict[int, list[str]]

    def start(self, node_id: int | None = None) -> None:
        for node in self._select(node_id):
            if node.alive():
                continue
            with node.log_path.open("ab") as log:
                node.process = subprocess.Popen(
                    [
                        *self.prefixes.get(node.node_id, []),
                        *[sys.executable, "-m", "confmand", "run", "--config", str(node.config_path)],
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **self.extra_env},
                )


def _config(node_id: int, data_dir: Path, peers: dict[int, tuple[str, str]]) -> str:
    entries = "".join(
        f'\n[[peers]]\nid = {pid}\npeer_address = "{peer}"\nclient_address = "{client}"\n'
        for pid, (peer, client) in sorted(peers.items())
    )
    peer, client = peers[node_id]
    return (
        f'[node]\ncluster_id = "pause"\nnode_id = {node_id}\ndata_dir = "{data_dir}"\n'
        f'peer_address = "{peer}"\nclient_address = "{client}"\n{entries}\n'
        '[storage]\nfsync = true\n\n[log]\nlevel = "info"\n'
    )


def _addresses(netns: bool) -> dict[int, tuple[str, str]]:
    if netns:
        return {
            n: (f"tcp://{NetnsLab.address(n)}:{PEER_PORT}", f"tcp://{NetnsLab.address(n)}:{CLIENT_PORT}")
            for n in NODE_IDS
        }
    ports = free_ports(2 * len(NODE_IDS))
    return {
        n: (f"tcp://127.0.0.1:{ports[2 * i]}", f"tcp://127.0.0.1:{ports[2 * i + 1]}")
        for i, n in enumerate(NODE_IDS)
    }


class Soak:
    def __init__(self, root: Path, netns_tag: str | None) -> None:
        self.root = root
        self.lab = None if netns_tag is None else NetnsLab(NODE_IDS, netns_tag)  # for its cuts only
        self.addresses = _addresses(netns_tag is not None)
        paths = []
        for node_id in NODE_IDS:
            path = root / f"node{node_id}.toml"
            path.write_text(_config(node_id, root / f"data{node_id}", self.addresses))
            paths.append(path)
        self.cluster = PrefixedCluster(paths, root / "logs")
        self.cluster.prefixes = (
            {}
            if netns_tag is None
            else {n: NetnsLab.exec_prefix(NetnsLab(NODE_IDS, netns_tag).namespace(n)) for n in NODE_IDS}
        )
        self.workers: list[subprocess.Popen[bytes]] = []

    # ---------------------------------------------------------------- processes

    def pid(self, node_id: int) -> int:
        process = self.cluster.nodes[node_id].process
        assert process is not None
        return process.pid

    def check_alive(self) -> None:
        for node_id, node in self.cluster.nodes.items():
            if node.process is not None and node.process.poll() is not None:
                raise NodeDied(node_id, node.process.returncode)

    def start_load(self, seconds: float) -> None:
        client_addresses = [client for _, client in self.addresses.values()]
        for i in range(WORKERS):
            spec = WorkerSpec(
                op="mix",
                addresses=client_addresses,
                slots=CLIENTS // WORKERS,
                keys=KEYS,
                write_fraction=0.5,
                seed=i + 1,
                drain_s=0.1,
            )
            self.workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bench._worker", spec.to_json()],
                    cwd=REPO_ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                )
            )
        for worker in self.workers:
            assert worker.stdout is not None
            if worker.stdout.readline().strip() != b"ready":
                raise RuntimeError(f"a load generator did not start (exit status {worker.poll()})")
        start = time.monotonic() + 0.05
        schedule = json.dumps({"start": start, "measure": start, "end": start + seconds}).encode() + b"\n"
        for worker in self.workers:
            assert worker.stdin is not None
            worker.stdin.write(schedule)
            worker.stdin.close()

    def stop(self) -> None:
        """Resume anything paused, stop the load and the nodes, all by PID."""
        for node in self.cluster.nodes.values():
            if node.alive():
                assert node.process is not None
                os.kill(node.process.pid, signal.SIGCONT)
        for worker in self.workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait()
            if worker.stdout is not None:
                worker.stdout.close()
        self.cluster.stop()

    # ---------------------------------------------------------------- asking nodes

    def status(self, node_id: int) -> dict[str, Any] | None:
        reply = self.cluster.status(node_id, STATUS_TIMEOUT_S)
        return reply if reply is not None and reply.get("ok") else None

    def leader_applied(self) -> int:
        statuses = [self.status(n) for n in NODE_IDS]
        return max((s["applied_index"] for s in statuses if s and s["role"] == "leader"), default=0)

    def await_caught_up(self, node_id: int, index: int) -> bool:
        """True once `node_id` answers with a known leader and applied >= `index`; False on timeout."""
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        while time.monotonic() < deadline:
            self.check_alive()
            status = self.status(node_id)
            if status is not None and status["leader_id"] is not None and status["applied_index"] >= index:
                return True
            time.sleep(POLL_S)
        return False

    # ---------------------------------------------------------------- the run

    def run(self, pauses: int, seed: int, shortest_s: float, longest_s: float, result: SoakResult) -> None:
        rng = random.Random(seed)
        self.cluster.start()
        result.pids.extend(self.pid(n) for n in NODE_IDS)
        leader = self.cluster.wait_for_leader(BOOT_TIMEOUT_S)
        preload(self.addresses[leader][1], KEYS)
        self.start_load(pauses * (longest_s + RECOVERY_TIMEOUT_S) + 60)
        result.pids.extend(worker.pid for worker in self.workers)
        result.applied_at_start = self.leader_applied()
        for _ in range(pauses):
            self.check_alive()
            victim = rng.choice(NODE_IDS)
            pause_s = round(rng.uniform(shortest_s, longest_s), 2)
            result.pause_s.append(pause_s)
            os.kill(self.pid(victim), signal.SIGSTOP)
            time.sleep(pause_s)  # the fault itself
            os.kill(self.pid(victim), signal.SIGCONT)
            woke = time.monotonic()
            others = [s for s in (self.status(n) for n in NODE_IDS if n != victim) if s is not None]
            target = max((s["commit_index"] for s in others), default=0)
            if not self.await_caught_up(victim, target):
                result.not_recovered = {"node": victim, "target_index": target, "status": self.status(victim)}
                return
            result.recovery_s.append(round(time.monotonic() - woke, 3))
            result.pauses_survived += 1
        self.check_alive()

    def isolate_leaders(self, rounds: int, isolation_s: float, result: SoakResult) -> None:
        """`rounds` times: cut the leader off (nftables), await a new leader, heal, await the old one."""
        if rounds and self.lab is None:
            raise ValueError("isolations need --netns (the cuts are nftables rules in the namespaces)")
        for _ in range(rounds):
            assert self.lab is not None
            self.check_alive()
            old = self.cluster.wait_for_leader(RECOVERY_TIMEOUT_S)
            others = [n for n in NODE_IDS if n != old]
            self.lab.cut([(old, n) for n in others] + [(n, old) for n in others])
            cut_at = time.monotonic()
            new = self.cluster.wait_for_leader(RECOVERY_TIMEOUT_S, among=others)
            result.failover_s.append(round(time.monotonic() - cut_at, 3))
            time.sleep(max(0.0, cut_at + isolation_s - time.monotonic()))  # the fault itself
            self.lab.heal()
            healed_at = time.monotonic()
            new_status = self.status(new)
            target = new_status["commit_index"] if new_status else 0
            if not self.await_caught_up(old, target):
                result.not_recovered = {"node": old, "target_index": target, "status": self.status(old)}
                return
            result.heal_recovery_s.append(round(time.monotonic() - healed_at, 3))
            result.isolations_survived += 1
        self.check_alive()


def _log_tail(soak: Soak, node_id: int, chars: int = 1500) -> str:
    path = soak.cluster.nodes[node_id].log_path
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pauses", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--shortest", type=float, default=0.5, help="shortest pause, seconds")
    parser.add_argument("--longest", type=float, default=7.0, help="longest pause, seconds")
    parser.add_argument("--isolations", type=int, default=0, help="then cut the leader off this many times")
    parser.add_argument("--isolation-s", type=float, default=8.0, help="how long each cut lasts, seconds")
    parser.add_argument("--netns", metavar="TAG", help="run in the NetnsLab of this tag (from its hub)")
    parser.add_argument("--root", type=Path, required=True, help="a fresh directory for configs, data, logs")
    args = parser.parse_args(argv)
    args.root.mkdir(parents=True, exist_ok=True)
    result = SoakResult(
        pauses_planned=args.pauses, netns=args.netns is not None, isolations_planned=args.isolations
    )
    soak = Soak(args.root, args.netns)
    try:
        with signals_raise():
            soak.run(args.pauses, args.seed, args.shortest, args.longest, result)
            soak.isolate_leaders(args.isolations, args.isolation_s, result)
            result.applied_at_end = soak.leader_applied()
    except NodeDied as died:
        result.died = {
            "node": died.node_id,
            "returncode": died.returncode,
            "log_tail": _log_tail(soak, died.node_id),
        }
    except ClusterError as exc:
        result.died = {"error": str(exc)}
    finally:
        soak.stop()
    print(json.dumps({**asdict(result), "ok": result.ok}), flush=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
