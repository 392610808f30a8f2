"""The cluster under fault: real confmand processes whose peer links all pass through proxies.

`FaultCluster` is the integration harness's `Cluster` (configs on free
ports, processes by PID, the raw client protocol) with three additions:

- every directed peer link (i, j) is a `proxy.Link`: node i's config lists
  j's peer address as that link's port, so `partition`, `bridge` and
  `cut_one_way` cut exactly the directions they name, without root;
- every node reads a clock offset file (`[clock] test_offset_file`), so
  `step_clock` shifts one node's wall clock while it runs;
- client sockets are per thread, so a nemesis thread and client threads can
  ask nodes for their status while the test thread does too;
- it knows which exits it planned (`kill`, `terminate`, `close`), so
  `check_exits()` finds a node that died by itself (a crash, an assertion, an
  OOM kill, a signal from outside) and keeps its exit code and last log lines.
  A silent death would otherwise pass every check: the checkers see only the
  clients' histories, and `recover()` would start the node again.

Invariants:
- Network calls *set* the whole network: `partition` and `bridge` first heal
  every link, then cut; `cut_one_way` adds one cut; `heal` clears all cuts
  and delays.
- `recover()` undoes every fault (heal, resume, start, clocks back to 0);
  `close()` also stops every process by PID and the proxy thread, and is
  safe to call twice. Every process is recorded in the harness's `STARTED`,
  which `assert_nothing_left_running` checks.
- An exit is planned iff its process was marked before the signal was sent,
  so a poll from another thread never mistakes a planned kill for a crash.
  Every call that stops or starts a process first polls for unplanned exits,
  so a node that died by itself is recorded before a planned stop or a
  restart could hide it; each process is reported at most once.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from confmand.local_cluster import LocalCluster, held_ports
from tests.fault.proxy import Link, ProxyNetwork
from tests.integration.harness import (
    STARTED,
    Cluster,
    ClusterOptions,
    Conn,
    Reply,
    confmand_children,
    render_config,
)

STATUS_TIMEOUT_S = 0.5
EXIT_LOG_LINES = 30  # how much of a dead node's log an unplanned exit keeps


@dataclass(frozen=True, slots=True)
class UnplannedExit:
    """A node process that exited without the cluster asking it to."""

    node_id: int
    exit_code: int  # negative: killed by that signal (Popen's convention)
    noticed_ns: int  # time.monotonic_ns() when the cluster saw it gone (the runner's history clock)
    log_tail: tuple[str, ...]  # its log's last EXIT_LOG_LINES lines when it was noticed
    log_path: Path

    @property
    def how(self) -> str:
        if self.exit_code < 0:
            try:
                return f"killed by {signal.Signals(-self.exit_code).name}"
            except ValueError:
                return f"killed by signal {-self.exit_code}"
        return f"exit code {self.exit_code}"

    def describe(self) -> str:
        """A few lines for a verdict: who, how, and the last lines of its log."""
        head = (
            f"node {self.node_id} exited unplanned ({self.how}, code {self.exit_code}); "
            f"last {len(self.log_tail)} lines of {self.log_path}:"
        )
        return "\n".join([head, *(f"    {line}" for line in self.log_tail)])


# The runs' shape (runner.py): every workload's keys, one namespace each, spread over four shards
# of three replicas each (with more than three nodes, `move-replica` has nodes to move them to).
SHARDED = ClusterOptions(cluster_id="fault", cluster={"partitions": 64, "data_shards": 4, "replication": 3})


class FaultCluster(Cluster):
    """`size` real nodes under `root` behind per-direction proxies; see the module docstring."""

    def __init__(
        self, root: Path, size: int = 3, seed: int = 0, options: ClusterOptions | None = None
    ) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1 (got {size})")
        self.seed = seed
        self.rng = random.Random(seed)  # for choices a fault makes at run time (a live node, say)
        self.network: ProxyNetwork | None = None
        self.links: dict[tuple[int, int], Link] = {}
        self._local_conns = threading.local()
        self._all_conns: list[Conn] = []
        self._conns_lock = threading.Lock()
        self._clock_offsets: dict[int, int] = {}
        self._closed = False
        # Re-entrant: a planned stop polls for unplanned exits before it marks its own.
        self._exits_lock = threading.RLock()
        self._planned_exits: set[subprocess.Popen[bytes]] = set()
        self._reported: set[subprocess.Popen[bytes]] = set()
        self.unplanned_exits: list[UnplannedExit] = []
        base = options or ClusterOptions(cluster_id="fault")
        super().__init__(root, dataclasses.replace(base, size=size))

    # ---------------------------------------------------------------- configs

    def _configure(self) -> LocalCluster:
        """Fresh ports, fresh proxies (on the harness's bind-failure retry too), one config per node."""
        if self.network is not None:
            self.network.close()
        self.network = ProxyNetwork()
        # The nodes' ports stay held while the links bind theirs (to port 0), or the kernel could
        # hand a link a port just picked for a node.
        with held_ports(2 * len(self.node_ids)) as ports_flat:
            ports = {nid: (ports_flat[2 * i], ports_flat[2 * i + 1]) for i, nid in enumerate(self.node_ids)}
            self.links = {
                (i, j): self.network.add_link(ports[j][0], name=f"{i}->{j}")
                for i in self.node_ids
                for j in self.node_ids
                if i != j
            }
        config_dir = self.root / "config"
        config_dir.mkdir(parents=True, exist_ok=True)
        self.clock_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for nid in self.node_ids:
            path = config_dir / f"node{nid}.toml"
            path.write_text(self._render(nid, ports))
            self._write_clock(nid, 0)
            paths.append(path)
        self._close_conns()
        return LocalCluster(paths, self.root / "logs")

    def _render(self, node_id: int, ports: dict[int, tuple[int, int]]) -> str:
        """The harness's config, with every other node's peer address replaced by its proxy link."""
        text = render_config(self.options, node_id, self.data_dir(node_id), ports)
        for other in self.node_ids:
            if other == node_id:
                continue  # its own entry stays the real port: that is where it binds
            real = f'peer_address = "tcp://127.0.0.1:{ports[other][0]}"'
            proxied = f'peer_address = "tcp://127.0.0.1:{self.links[(node_id, other)].port}"'
            assert text.count(real) == 1, f"cannot find {real!r} in the rendered config"
            text = text.replace(real, proxied)
        return text + f'[clock]\ntest_offset_file = "{self.clock_file(node_id)}"\n'

    @property
    def clock_dir(self) -> Path:
        return self.root / "clock"

    def clock_file(self, node_id: int) -> Path:
        return self.clock_dir / f"node{node_id}.offset_ms"

    def _write_clock(self, node_id: int, offset_ms: int) -> None:
        # Write then rename, so the node never reads half a number.
        path = self.clock_file(node_id)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"{offset_ms}\n")
        os.replace(tmp, path)
        self._clock_offsets[node_id] = offset_ms

    # ---------------------------------------------------------------- processes

    def start(self, node_id: int | None = None) -> None:
        self.check_exits()  # before a dead node is replaced by a new process and forgotten
        super().start(node_id)

    def kill(self, node_id: int) -> None:
        """kill -9 (a paused node too), and reap it; its data dir stays for `start`."""
        self._plan_exit(node_id)
        self.local.kill(node_id)
        self.paused.discard(node_id)

    def terminate(self, node_id: int) -> int:
        """SIGTERM (a leader hands over first), wait for the exit, return its code."""
        self._plan_exit(node_id)
        return super().terminate(node_id)

    def check_exits(self) -> list[UnplannedExit]:
        """Record every node process that has exited unplanned since the last call; all recorded so far."""
        with self._exits_lock:
            for node_id in self.node_ids:
                process = self.local.nodes[node_id].process
                if process is None or process in self._planned_exits or process in self._reported:
                    continue
                code = process.poll()
                if code is None:
                    continue
                self._reported.add(process)
                self.unplanned_exits.append(
                    UnplannedExit(
                        node_id, code, time.monotonic_ns(), self._log_tail(node_id), self._log_path(node_id)
                    )
                )
            return list(self.unplanned_exits)

    def _plan_exit(self, node_id: int | None = None) -> None:
        """Mark these processes' coming exits as planned, after recording any that already died alone."""
        with self._exits_lock:
            self.check_exits()
            for nid in self.node_ids if node_id is None else [node_id]:
                process = self.local.nodes[nid].process
                if process is not None:
                    self._planned_exits.add(process)

    def _log_path(self, node_id: int) -> Path:
        return self.local.nodes[node_id].log_path

    def _log_tail(self, node_id: int) -> tuple[str, ...]:
        return tuple(self.log_text(node_id).splitlines()[-EXIT_LOG_LINES:])

    def alive(self, node_id: int) -> bool:
        return self.local.nodes[node_id].alive()

    def running(self) -> list[int]:
        """Nodes whose process is alive and not paused."""
        return [n for n in self.node_ids if self.alive(n) and n not in self.paused]

    # ---------------------------------------------------------------- the network

    def link(self, source: int, target: int) -> Link:
        """The proxy link carrying `source`'s messages to `target`."""
        return self.links[(source, target)]

    def partition(self, groups: Sequence[Collection[int]]) -> None:
        """Exactly these groups: every link between two groups cut, all others healed.

        Nodes named in no group form one more group together.
        """
        named = [set(group) for group in groups]
        rest = set(self.node_ids).difference(*named)
        side = {node: index for index, group in enumerate([*named, rest]) for node in group}
        if sum(len(group) for group in named) != len(set().union(*named)):
            raise ValueError(f"a node is in two groups: {groups}")
        unknown = set(side) - set(self.node_ids)
        if unknown:
            raise ValueError(f"unknown nodes {sorted(unknown)} in {groups}")
        self._set_cuts((i, j) for (i, j) in self.links if side[i] != side[j])

    def bridge(self, a: Collection[int], b: Collection[int], bridge_node: int) -> None:
        """`a` and `b` cannot reach each other; `bridge_node` (in neither) reaches both, and both reach it."""
        if bridge_node in a or bridge_node in b or set(a) & set(b):
            raise ValueError(f"bridge({a}, {b}, {bridge_node}): the three sides must be disjoint")
        self._set_cuts((i, j) for (i, j) in self.links if (i in a and j in b) or (i in b and j in a))

    def cut_one_way(self, source: int, target: int) -> None:
        """`source`'s messages to `target` are lost; `target`'s to `source` still arrive."""
        self.link(source, target).cut()

    def set_delay(self, source: int, target: int, delay_ms: int) -> None:
        self.link(source, target).set_delay(delay_ms)

    def heal(self) -> None:
        """Every link forwards again, undelayed."""
        for link in self.links.values():
            if link.is_cut:
                link.heal()
            if link.delay_ms:
                link.set_delay(0)

    def cuts(self) -> list[tuple[int, int]]:
        """The directed links cut now, sorted."""
        return sorted(pair for pair, link in self.links.items() if link.is_cut)

    def _set_cuts(self, pairs: Iterable[tuple[int, int]]) -> None:
        wanted = set(pairs)
        for pair, link in self.links.items():
            if pair in wanted and not link.is_cut:
                link.cut()
            elif pair not in wanted and link.is_cut:
                link.heal()

    # ---------------------------------------------------------------- clocks

    def step_clock(self, node_id: int, offset_ms: int) -> None:
        """Node `node_id`'s wall clock reads `offset_ms` ahead (negative: behind) within 0.1 s."""
        self._write_clock(node_id, offset_ms)

    def clock_offset(self, node_id: int) -> int:
        return self._clock_offsets.get(node_id, 0)

    # ---------------------------------------------------------------- asking nodes

    def conn(self, node_id: int) -> Conn:
        """A DEALER to `node_id` owned by the calling thread (zmq sockets are not thread-safe)."""
        conns: dict[int, Conn] | None = getattr(self._local_conns, "conns", None)
        if conns is None:
            conns = self._local_conns.conns = {}
        if node_id not in conns:
            conn = Conn(self.client_address(node_id))
            conns[node_id] = conn
            with self._conns_lock:
                self._all_conns.append(conn)
        return conns[node_id]

    def status(
        self, node_id: int, timeout_s: float = STATUS_TIMEOUT_S, shard: int | None = None
    ) -> Reply | None:
        """The node's own status, or None when it does not answer in time (dead, paused)."""
        if not self.alive(node_id) or node_id in self.paused:
            return None
        return super().status(node_id, timeout_s, shard)

    def leader(self) -> int | None:
        """Of the running nodes that say they lead, the one with the highest term; None if none does.

        During a partition an old leader may still believe it leads (until
        CheckQuorum deposes it); the highest term is the one that can commit.
        """
        best: tuple[int, int] | None = None
        for node_id in self.running():
            status = self.status(node_id)
            if (
                status is not None
                and status["role"] == "leader"
                and (best is None or status["term"] > best[0])
            ):
                best = (status["term"], node_id)
        return None if best is None else best[1]

    def client_addresses(self) -> dict[int, str]:
        return self.addresses()

    # ---------------------------------------------------------------- undoing faults

    def recover(self) -> None:
        """Undo every fault: heal the network, clocks back to 0, resume paused nodes, start dead ones."""
        self.check_exits()
        self.heal()
        for node_id in self.node_ids:
            if self.clock_offset(node_id):
                self._write_clock(node_id, 0)
        for node_id in list(self.paused):
            self.resume(node_id)
        for node_id in self.node_ids:
            if not self.alive(node_id):
                self.start(node_id)

    def close(self) -> None:
        """Heal, resume, stop every node by PID, stop the proxies; safe to call twice."""
        if self.network is not None and not self._closed:
            self.heal()  # a graceful stop can hand leadership over
        for node_id in list(self.paused):
            self.resume(node_id)
        self._plan_exit()
        self.local.stop()
        self._close_conns()
        if self.network is not None:
            self.network.close()
        self._closed = True

    def _close_conns(self) -> None:
        with self._conns_lock:
            for conn in self._all_conns:
                conn.close()
            self._all_conns.clear()
        self._local_conns = threading.local()


def assert_nothing_left_running() -> None:
    """Every confmand any harness started has exited and none is our child (kills leftovers first)."""
    alive = [p.pid for p in STARTED if p.poll() is None]
    for process in STARTED:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not alive, f"confmand processes outlived their tests: {alive}"
    children = confmand_children()
    assert not children, f"confmand children left: {children}"
    leftover_threads = [t.name for t in threading.enumerate() if t.name == "fault-proxy"]
    assert not leftover_threads, f"proxy threads left running: {leftover_threads}"
