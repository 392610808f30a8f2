"""One fault run: a cluster, a seeded fault schedule, the workloads' clients, then the verdicts.

`run(settings)` boots a `FaultCluster`, starts the clients of every workload in threads and the
nemesis schedule in another, stops the clients when the schedule is over, heals, reads the
final state, and judges the history:

- the `regN/*` keys with the linearizability checker (register model);
- the `setN/*` keys: every acknowledged element present, nothing never attempted, no duplicate;
- the `rywN/*` keys: no read with a client's own version token is older than its write;
- the `eoN/*` keys: each key's `changes` lies between its acknowledged and attempted writes.

Any node that exits by itself (the cluster did not kill or stop it) fails the run too:
`RunResult.exits` holds its id, exit code and last log lines, and the summary shows them.
A silent death would otherwise pass every check above, since they see only the clients'
histories.

Per fault window it also measures what an operator would ask: ops attempted and succeeded
during the fault, availability, and the time from the heal to the first successful write.
Everything needed to replay the run is in `RunResult.replay` (one command line).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fault.checks import check_change_counts, check_read_your_writes, check_sets
from tests.fault.cluster import SHARDED, FaultCluster, UnplannedExit
from tests.fault.history import History, Op
from tests.fault.linearizability import CheckResult, check, explain
from tests.fault.nemesis import FaultWindow, describe, needs_power, run_schedule, schedule
from tests.fault.power import PowerCluster
from tests.fault.watcher import WatchRecorder, acknowledged_tops
from tests.fault.workloads import (
    ClientContext,
    ExactlyOnce,
    ReadYourWrites,
    Recorder,
    Registers,
    Sets,
)
from tests.integration.harness import Reply, wait_until

SETTLE_S = 15.0  # after the schedule: the cluster must elect and serve within this
FINAL_READ_ATTEMPTS = 40
WRITES = frozenset({"put", "cas", "add"})


@dataclass(frozen=True)
class RunSettings:
    seed: int
    duration_s: float
    nemeses: tuple[str, ...]
    size: int = 3
    register_clients: int = 10
    set_clients: int = 2
    ryw_clients: int = 1
    exactly_once_clients: int = 1
    checker_deadline_s: float = 60.0  # per key; a key past it is reported unknown, never hangs

    @property
    def replay(self) -> str:
        return (
            f"python -m tests.fault.run --seed {self.seed} --time {self.duration_s:g} "
            f"--nemesis {','.join(self.nemeses)} --nodes {self.size}"
        )


@dataclass
class WindowStats:
    name: str
    start_ns: int
    end_ns: int
    attempted: int
    succeeded: int
    heal_to_first_write_s: float | None

    @property
    def availability(self) -> float:
        return self.succeeded / self.attempted if self.attempted else 1.0


@dataclass
class RunResult:
    settings: RunSettings
    schedule_line: str
    history: History
    windows: list[FaultWindow]
    started_ns: int
    ended_ns: int
    linearizability: CheckResult
    problems: list[str] = field(default_factory=list)
    stats: list[WindowStats] = field(default_factory=list)
    exits: list[UnplannedExit] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No check found a violation and no node exited unplanned (the checker may still have given up)."""
        return not self.problems and not self.exits and self.linearizability.verdict != "violation"

    @property
    def verdict(self) -> str:
        failures = []
        if self.problems or self.linearizability.verdict == "violation":
            failures.append("VIOLATION")
        if self.exits:
            nodes = ", ".join(str(e.node_id) for e in self.exits)
            failures.append(f"UNPLANNED EXIT (node {nodes})")
        if failures:
            return ", ".join(failures)
        return "UNDECIDED (checker time limit)" if self.linearizability.verdict == "unknown" else "OK"

    def summary(self) -> str:
        ops = list(self.history)
        lines = [
            f"fault run seed={self.settings.seed}: {self.verdict} - "
            f"{len(ops)} ops ({sum(op.outcome == 'ok' for op in ops)} ok, "
            f"{sum(op.outcome == 'fail' for op in ops)} fail, "
            f"{sum(op.outcome == 'unknown' for op in ops)} unknown), "
            f"{len(self.windows)} fault windows",
            explain(self.linearizability),
            *[f"problem: {p}" for p in self.problems],
            *[unplanned.describe() for unplanned in self.exits],
            f"schedule: {self.schedule_line}",
            f"replay: {self.settings.replay}",
        ]
        return "\n".join(lines)


Meddle = Callable[[FaultCluster], None]


def run(settings: RunSettings, root: Path, behind_the_back: Meddle | None = None) -> RunResult:
    """One run; `behind_the_back(cluster)`, if given, is called once clients and schedule are going.

    It is for tests that do what no nemesis does (kill a node with `os.kill`, say) to show
    that the run notices.
    """
    events = schedule(settings.seed, settings.duration_s, settings.nemeses, size=settings.size)
    line = describe(settings.seed, settings.duration_s, settings.nemeses, events)
    cluster_type = PowerCluster if needs_power(settings.nemeses) else FaultCluster
    cluster = cluster_type(root, size=settings.size, seed=settings.seed, options=SHARDED)
    watcher: WatchRecorder | None = None
    try:
        cluster.boot()
        recorder = Recorder()
        workloads = _workloads(settings)
        stop = threading.Event()
        threads = _start_clients(cluster, workloads, settings, recorder, stop)
        watcher = WatchRecorder(list(cluster.client_addresses().values())).start()
        started = time.monotonic_ns()
        nemesis = run_schedule(cluster, events)
        if behind_the_back is not None:
            behind_the_back(cluster)
        time.sleep(settings.duration_s)  # the schedule runs in its own thread for this long
        nemesis.stop()
        windows = nemesis.join(timeout_s=60.0)
        cluster.wait_for_leader(timeout_s=SETTLE_S)
        # Keep the clients going until a write called after the heal is acknowledged, so the
        # last window's heal-to-first-write is measured.
        healed_ns, seen = time.monotonic_ns(), len(recorder.history)
        wait_until(
            lambda: _written_since(recorder.history, seen, healed_ns), SETTLE_S, "a write after the heal"
        )
        stop.set()
        for thread in threads:
            thread.join(timeout=30.0)
        ended = time.monotonic_ns()
        for workload in workloads:
            if isinstance(workload, ExactlyOnce):
                workload.close()
        linearizability, problems = _judge(cluster, settings, recorder.history)
        problems += _judge_watch(watcher, recorder.history)
        if isinstance(cluster, PowerCluster):
            problems += cluster.refusals()
        result = RunResult(
            settings, line, recorder.history, windows, started, ended, linearizability, problems
        )
        result.stats = window_stats(list(recorder.history), windows)
        result.exits = cluster.check_exits()  # the last look, before close() stops them all
        return result
    except Exception as exc:
        # A run that broke off (no leader after a node died, say) still says who died and how.
        for unplanned in cluster.check_exits():
            exc.add_note(unplanned.describe())
        raise
    finally:
        if watcher is not None:
            watcher.stop()
        cluster.close()


def _written_since(history: History, first: int, call_ns: int) -> bool:
    """Whether an op recorded at `first` or later is an acknowledged write called at `call_ns` or later."""
    return any(
        op.call_ns >= call_ns and op.outcome == "ok" and op.kind in WRITES
        for op in (history[i] for i in range(first, len(history)))
    )


def _workloads(settings: RunSettings) -> list[Any]:
    return [Registers(), Sets(), ReadYourWrites(), ExactlyOnce()]


def _start_clients(
    cluster: FaultCluster,
    workloads: list[Any],
    settings: RunSettings,
    recorder: Recorder,
    stop: threading.Event,
) -> list[threading.Thread]:
    counts = (
        settings.register_clients,
        settings.set_clients,
        settings.ryw_clients,
        settings.exactly_once_clients,
    )
    threads = []
    process = 0
    addresses = cluster.client_addresses()
    for workload, count in zip(workloads, counts, strict=True):
        for _ in range(count):
            process += 1
            ctx = ClientContext(process, addresses, random.Random(settings.seed * 1000 + process), recorder)
            thread = threading.Thread(target=_client_loop, args=(workload, ctx, stop), daemon=True)
            thread.start()
            threads.append(thread)
    return threads


def _client_loop(workload: Any, ctx: ClientContext, stop: threading.Event) -> None:
    try:
        while not stop.is_set():
            workload.step(ctx)
    finally:
        ctx.close()


def _judge(cluster: FaultCluster, settings: RunSettings, history: History) -> tuple[CheckResult, list[str]]:
    """The linearizability verdict of the registers, and the problems the other checks found."""
    ops = list(history)
    registers = History(op for op in ops if op.key.startswith("reg"))
    linearizability = check(registers, deadline_s=settings.checker_deadline_s)
    problems: list[str] = []
    set_keys = sorted({op.key for op in ops if op.key.startswith("set")})
    finals = {key: _as_list(_final_reply(cluster, key)) for key in set_keys}
    problems += check_sets(finals, [op for op in ops if op.kind == "add"])
    problems += check_read_your_writes([op for op in ops if op.key.startswith("ryw")], write_kinds=("put",))
    eo_keys = sorted({op.key for op in ops if op.key.startswith("eo")})
    changes = {key: _changes(cluster, key) for key in eo_keys}
    problems += check_change_counts(changes, [op for op in ops if op.key.startswith("eo")])
    return linearizability, problems


def _judge_watch(watcher: WatchRecorder, history: History) -> list[str]:
    """Healed: the watcher must be told past every acknowledged write, and told them right."""
    tops = acknowledged_tops(history)
    try:
        wait_until(
            lambda: watcher.told_past(tops) or None, SETTLE_S, "the watcher told every acknowledged write"
        )
    except AssertionError as exc:
        return [f"watch liveness: {exc}; coverage {dict(watcher.coverage.items())}"]
    finally:
        watcher.stop()
    return watcher.problems(history)


def _final_reply(cluster: FaultCluster, key: str) -> Reply:
    """A linearizable read once the cluster is healed, from whichever node answers."""
    for attempt in range(FINAL_READ_ATTEMPTS):
        node = cluster.node_ids[attempt % len(cluster.node_ids)]
        reply = cluster.call(node, {"op": "get", "key": key}, timeout_s=2.0)
        if reply is not None and (reply.get("ok") or reply["error"]["code"] == "NOT_FOUND"):
            return reply
        time.sleep(0.25)
    raise RuntimeError(f"no node answered a final read of {key!r}")


def _as_list(reply: Reply) -> list[str]:
    if not reply.get("ok"):
        return []
    value: list[str] = json.loads(reply["value"])
    return value


def _changes(cluster: FaultCluster, key: str) -> int:
    reply = _final_reply(cluster, key)
    return int(reply["changes"]) if reply.get("ok") else 0


def window_stats(ops: Sequence[Op], windows: Sequence[FaultWindow]) -> list[WindowStats]:
    """Per fault window: writes attempted and acknowledged in it, and heal to the next good write."""
    writes = sorted((op for op in ops if op.kind in WRITES), key=lambda op: op.call_ns)
    stats = []
    for window in windows:
        inside = [op for op in writes if window.start_ns <= op.call_ns < window.end_ns]
        after = [
            op.return_ns
            for op in writes
            if op.outcome == "ok" and op.return_ns is not None and op.call_ns >= window.end_ns
        ]
        first = min(after, default=None)
        stats.append(
            WindowStats(
                window.name,
                window.start_ns,
                window.end_ns,
                len(inside),
                sum(op.outcome == "ok" for op in inside),
                None if first is None else (first - window.end_ns) / 1e9,
            )
        )
    return stats
