"""Watches: many watchers on one node under a steady write load; what delivery takes and what it costs.

    .venv/bin/python bench/watch.py [--json] [--watchers 10000] [--watch-node follower|leader]
    .venv/bin/python bench/watch.py --smoke          # 200 watchers, 2 s measured: well under a minute

A 3-node cluster on loopback (fsync on unless `--no-fsync`; one data shard), its leader found as
bench/shards.py does. Then two phases on the same cluster, each the same closed-loop put load
(`--clients` clients, 100-byte values, keys `w{i}/k` for a random i below `--watchers`) sent to
the leader for `--warmup` + `--duration` seconds, after `--idle` seconds with no load:

- **baseline**: no watch at all;
- **watched**: `--watchers` watches open on one node (`--watch-node`, a follower by default),
  watch i on the prefix `w{i}/`, so every put is an event for exactly one watch. They are opened
  by `--watcher-processes` raw-protocol processes (pyzmq + msgpack, `--watch-sockets` DEALER
  sockets each) before the idle window; how long opening took is reported.

Per phase: writes/s, put p50/p99/p99.9, the cluster's and the watch node's CPU per write, the
idle cluster's CPU, the watch node's RSS. The watched phase adds: the throughput cost of the
watchers (`write_throughput_ratio`, watched/baseline writes/s), the **event delay** of every put
sent in the measured window (from the writer's send to the watcher's receipt, both on
CLOCK_MONOTONIC: each value carries its send time, so the watcher computes it), the events
missing (puts acknowledged in the window that no watch told within `--drain` s of its end),
duplicated or misrouted, seq gaps, watches ended by an error, and the bookmarks (messages with no
events) per second received in the idle window against the `watchers * 1000 / progress_ms` due.

Goal (the watch issue): event delay p99 under 100 ms with 10,000 watchers on one node. The exit
status is 1 if an event is missing, a watch failed or a put failed; not for the goal.

Every process started here (nodes, writers, watchers) is stopped by PID at the end, always:
errors, Ctrl-C and SIGTERM too. `--json` prints one JSON object as the last line, each key
ending in its unit.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/watch.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._cluster import (
    CLOCK_TICKS_PER_S,
    MIB,
    NODE_IDS,
    BenchCluster,
    BenchError,
    proc_rss_bytes,
    signals_raise,
)
from bench._load import LoadResult
from bench._report import Value, machine, print_json, print_section
from bench._stats import latency_summary_ms
from bench._watchers import (
    VALUE_BYTES,
    Children,
    WatcherResult,
    WatcherSpec,
    WatchSchedule,
    WriterResult,
    read_line,
    read_result,
    send_line,
    watched_key,
)
from bench._worker import WorkerSpec
from bench.shards import preferred_leaders
from confmand.protocol.shardmap import ShardMap

DEFAULTS = {"watchers": 10_000, "duration": 10.0, "warmup": 2.0, "idle": 3.0, "drain": 3.0}
SMOKE = {"watchers": 200, "duration": 2.0, "warmup": 0.5, "idle": 2.0, "drain": 2.0}
START_MARGIN_S = 0.1  # time for the schedule lines to reach every child before the idle window
WRITER_SOCKETS = 4  # DEALER sockets per writer process, as bench/daemon.py's default
GOAL_EVENT_DELAY_P99_MS = 100.0

CpuSample = dict[int, float]  # CPU seconds per node


@dataclass(slots=True)
class Phase:
    """What one phase measured, raw; `phase_report` turns it into figures."""

    load: LoadResult[CpuSample] = field(default_factory=LoadResult)
    acked: set[int] = field(default_factory=set)  # ids of the puts sent in the window and acknowledged
    watchers: list[WatcherResult] = field(default_factory=list)
    cpu: dict[str, CpuSample] = field(default_factory=dict)  # at idle_start, idle_end, measure, end
    times: dict[str, float] = field(default_factory=dict)
    machine_busy_s: dict[str, float] = field(default_factory=dict)  # the whole machine's, at the same marks
    watch_node_rss_mib: float = 0.0
    watch_node_status: dict[str, object] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ run


def shares(total: int, parts: int) -> list[int]:
    """`total` split into at most `parts` shares as even as they go (no empty share)."""
    parts = max(1, min(parts, total))
    return [total // parts + (1 if p < total % parts else 0) for p in range(parts)]


def start_watchers(
    children: Children, address: str, args: argparse.Namespace, watchers: int
) -> list[dict[str, Any]]:
    """Open every watch (split over the watcher processes); each process's ready line."""
    procs, first = [], 0
    for count in shares(watchers, args.watcher_processes):
        spec = WatcherSpec(address, first, count, args.watch_sockets, args.progress_ms, args.open_timeout)
        procs.append(children.start("watch", spec.to_json()))
        first += count
    readies = [json.loads(read_line(p, args.open_timeout + 30, "a watcher process")) for p in procs]
    opened = sum(int(r["opened"]) for r in readies)
    if opened != watchers:
        errors = [r["errors"] for r in readies]
        raise BenchError(f"{opened} of {watchers} watches opened; errors by process: {errors}")
    return readies


def run_phase(
    cluster: BenchCluster, args: argparse.Namespace, leader: int, watch_node: int, watchers: int
) -> tuple[Phase, float]:
    """One phase: `watchers` watches opened (none for the baseline), idle, then the load; the open time."""
    phase = Phase()
    with Children() as children:
        readies = start_watchers(children, cluster.addresses[watch_node], args, watchers) if watchers else []
        watcher_procs = list(children.procs)
        open_s = max((float(r["open_s"]) for r in readies), default=0.0)
        writer_procs = []
        for p, slots in enumerate(shares(args.clients, args.processes)):
            spec = WorkerSpec(
                op="put",
                addresses=[cluster.addresses[leader]] * min(WRITER_SOCKETS, slots),
                slots=slots,
                keys=args.watchers,  # the same keys in both phases: only the watches differ
                seed=args.seed * 1000 + p,
            )
            writer_procs.append(children.start("write", spec.to_json(), str(p)))
        for proc in writer_procs:
            if read_line(proc, 30.0, "a writer process").strip() != b"ready":
                raise BenchError("a writer process said something other than 'ready'")
        t = phase.times
        t["idle_start"] = time.monotonic() + START_MARGIN_S
        t["idle_end"] = t["idle_start"] + args.idle
        t["measure"] = t["idle_end"] + args.warmup
        t["end"] = t["measure"] + args.duration
        schedule = WatchSchedule(
            t["idle_start"], t["idle_end"], t["measure"], t["end"], t["end"] + args.drain
        )
        for proc in writer_procs:  # the load starts when the idle window ends
            send_line(proc, json.dumps({"start": t["idle_end"], "measure": t["measure"], "end": t["end"]}))
        for proc in watcher_procs:
            send_line(proc, schedule.to_json())
        for mark in ("idle_start", "idle_end", "measure", "end"):
            time.sleep(max(0.0, t[mark] - time.monotonic()))
            phase.cpu[mark] = cluster.cpu_s()
            phase.machine_busy_s[mark] = machine_busy_s()
        phase.watch_node_rss_mib = proc_rss_bytes(cluster.pids()[watch_node]) / MIB
        phase.watch_node_status = cluster.request(watch_node, {"op": "status"}, timeout_s=10.0)
        for proc in writer_procs:
            written = WriterResult.from_wire(read_result(proc, 30.0, "a writer process"))
            phase.load.merge(written.worker)
            phase.acked.update(written.acked)
        for proc in watcher_procs:
            wait_s = schedule.drain_until - time.monotonic() + 30.0
            phase.watchers.append(WatcherResult.from_wire(read_result(proc, wait_s, "a watcher process")))
    cluster.check_alive()
    return phase, open_s


def machine_busy_s() -> float:
    """CPU seconds every core of the machine spent busy so far (/proc/stat: all but idle and iowait)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS_PER_S


def data_leader(cluster: BenchCluster, timeout_s: float) -> int:
    """The leader of the data shard of the `w*/` keys, once leadership settled on the preferred node."""
    cluster.wait_for_leader(timeout_s)
    # A new cluster hands each shard to its preferred leader within its first seconds: puts sent
    # before that would be forwarded or refused NOT_LEADER under load.
    shard_map = ShardMap.from_wire(cluster.request(1, {"op": "shard_map"}))
    leaders = preferred_leaders(cluster, shard_map, timeout_s)
    return leaders[shard_map.shard_of(watched_key(0))]


# --------------------------------------------------------------------------------------- report


def _cpu_delta(phase: Phase, start: str, end: str, node: int | None = None) -> float:
    before, after = phase.cpu.get(start, {}), phase.cpu.get(end, {})
    nodes = [node] if node is not None else list(after)
    return sum(after.get(n, 0.0) - before.get(n, 0.0) for n in nodes)


def writes_per_s(phase: Phase, args: argparse.Namespace) -> float:
    return round(len(phase.load.write_latencies_s) / (phase.load.window_s or args.duration), 1)


def phase_report(phase: Phase, args: argparse.Namespace, leader: int, watch_node: int) -> dict[str, Value]:
    """Throughput, put latency and costs of one phase (keys without the phase's prefix)."""
    load = phase.load
    writes = len(load.write_latencies_s)
    window = load.window_s or args.duration
    idle_s = (phase.times["idle_end"] - phase.times["idle_start"]) or 1.0
    report: dict[str, Value] = {"writes_per_s": writes_per_s(phase, args), "writes": writes}
    report.update({f"put_{k}": v for k, v in latency_summary_ms(load.write_latencies_s).items()})
    report["errors"] = load.errors + load.unanswered
    if load.error_codes:
        report["error_codes"] = ",".join(f"{c}={n}" for c, n in sorted(load.error_codes.items()))
    per_write = 1000 / writes if writes else 0.0
    report["cluster_cpu_ms_per_write"] = round(_cpu_delta(phase, "measure", "end") * per_write, 4)
    report["leader_cpu_ms_per_write"] = round(_cpu_delta(phase, "measure", "end", leader) * per_write, 4)
    report["watch_node_cpu_ms_per_write"] = round(
        _cpu_delta(phase, "measure", "end", watch_node) * per_write, 4
    )
    report["cluster_cpu_cores"] = round(_cpu_delta(phase, "measure", "end") / window, 2)
    report["idle_cluster_cpu_cores"] = round(_cpu_delta(phase, "idle_start", "idle_end") / idle_s, 3)
    report["idle_watch_node_cpu_cores"] = round(
        _cpu_delta(phase, "idle_start", "idle_end", watch_node) / idle_s, 3
    )
    report["generator_cpu_cores"] = round(load.generator_cpu_s / window, 2)
    # Busy cores that were neither the nodes nor the writers nor the watchers: another tenant of a
    # shared machine (a test run, say) skews every figure here, and this says when it did.
    busy = phase.machine_busy_s.get("end", 0.0) - phase.machine_busy_s.get("measure", 0.0)
    ours = _cpu_delta(phase, "measure", "end") + load.generator_cpu_s + sum(w.cpu_s for w in phase.watchers)
    report["other_cpu_cores"] = round(max(0.0, busy - ours) / window, 2)
    return report


def watch_report(phase: Phase, args: argparse.Namespace, open_s: float) -> tuple[dict[str, Value], bool]:
    """Delivery: event delay, events missing, bookmarks, and whether every watch did its job."""
    results = phase.watchers
    delays = array("q")
    received: set[int] = set()
    for r in results:
        delays.extend(r.delays_ns)
        received.update(r.received)
    errors: dict[str, int] = {}
    for r in results:
        for code, n in r.errors.items():
            errors[code] = errors.get(code, 0) + n
    idle_s = phase.times["idle_end"] - phase.times["idle_start"]
    missing = len(phase.acked - received)
    report: dict[str, Value] = {"watchers": args.watchers, "watch_open_s": round(open_s, 3)}
    delay = latency_summary_ms([d / 1e9 for d in delays])
    report.update({f"event_delay_{k}": v for k, v in delay.items()})
    report["event_delay_max_ms"] = round(max(delays, default=0) / 1e6, 3)
    report["events_expected"] = len(phase.acked)  # puts sent in the window and acknowledged
    report["events_received"] = len(received & phase.acked)
    report["events_missing"] = missing
    report["events_duplicate"] = sum(r.duplicates for r in results)
    report["events_misrouted"] = sum(r.misrouted for r in results)
    report["watch_seq_gaps"] = sum(r.seq_gaps for r in results)
    report["watches_ended"] = sum(errors.values())
    if errors:
        report["watch_error_codes"] = ",".join(f"{c}={n}" for c, n in sorted(errors.items()))
    report["bookmarks_per_s"] = round(sum(r.bookmarks_idle for r in results) / (idle_s or 1.0), 1)
    report["bookmarks_due_per_s"] = round(args.watchers * 1000 / args.progress_ms, 1)
    report["bookmarks_under_load_per_s"] = round(sum(r.bookmarks_load for r in results) / args.duration, 1)
    report["watcher_cpu_cores"] = round(sum(r.cpu_s for r in results) / args.duration, 2)
    status = phase.watch_node_status
    watches, counters = status.get("watches"), status.get("counters")
    report["watch_node_watches_open"] = watches if isinstance(watches, int) else None  # at the load's end
    if isinstance(counters, dict):
        report["watch_node_watches_dropped_slow"] = int(counters.get("watches_dropped_slow", 0))
    report["goal_event_delay_p99_below_100ms_met"] = delay["p99_ms"] < GOAL_EVENT_DELAY_P99_MS
    ok = (
        missing == 0
        and report["events_duplicate"] == 0
        and report["events_misrouted"] == 0
        and report["watch_seq_gaps"] == 0
        and not errors
    )
    return report, ok


# ------------------------------------------------------------------------------------------ main


def run(args: argparse.Namespace) -> tuple[dict[str, Value], bool]:
    out: dict[str, Value] = {}
    with BenchCluster(fsync=not args.no_fsync, base_dir=args.base_dir, keep=args.keep) as cluster:
        t0 = time.monotonic()
        leader = data_leader(cluster, args.elect_timeout)
        out["leader_settled_s"] = round(time.monotonic() - t0, 3)
        followers = [n for n in NODE_IDS if n != leader]
        watch_node = leader if args.watch_node == "leader" else followers[0]
        out.update(leader_node=leader, watch_node=watch_node, watch_node_role=args.watch_node)
        title = f"{args.clients} clients, {args.duration} s after {args.warmup} s warm-up"

        baseline, _ = run_phase(cluster, args, leader, watch_node, 0)
        base = phase_report(baseline, args, leader, watch_node)
        base["watch_node_rss_mib"] = round(baseline.watch_node_rss_mib, 1)
        print_section(f"baseline (no watch): {title}", base)

        watched, open_s = run_phase(cluster, args, leader, watch_node, args.watchers)
        with_watches = phase_report(watched, args, leader, watch_node)
        print_section(f"watched ({args.watchers:,} watches on node {watch_node}): {title}", with_watches)
        delivery, delivered = watch_report(watched, args, open_s)
        print_section(f"delivery (progress_ms {args.progress_ms}, drain {args.drain} s)", delivery)

    out.update({f"baseline_{k}": v for k, v in base.items()})
    out.update({f"watched_{k}": v for k, v in with_watches.items()})
    out.update(delivery)
    hot = watched.watch_node_status.get("hot_modules")  # compiled or pure Python: numbers differ a lot
    out["hot_modules"] = hot if isinstance(hot, str) else None
    a, b = writes_per_s(baseline, args), writes_per_s(watched, args)
    costs: dict[str, Value] = {
        "write_throughput_ratio": round(b / a, 3) if a else 0.0,  # watched / baseline writes/s
        "watch_node_rss_mib": round(watched.watch_node_rss_mib, 1),  # at the watched load's end
        "watch_node_rss_added_mib": round(watched.watch_node_rss_mib - baseline.watch_node_rss_mib, 1),
    }
    print_section("what the watches cost", costs)
    out.update(costs)
    ok = delivered and base["errors"] == 0 and with_watches["errors"] == 0
    return out, ok


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument(
        "--smoke", action="store_true", help="a quick run: " + ", ".join(f"{k} {v}" for k, v in SMOKE.items())
    )
    p.add_argument(
        "--watchers", type=int, help=f"watches on the watch node (default {DEFAULTS['watchers']:,})"
    )
    p.add_argument(
        "--duration", type=float, help=f"measured seconds per phase (default {DEFAULTS['duration']})"
    )
    p.add_argument(
        "--warmup", type=float, help=f"unmeasured seconds of load before (default {DEFAULTS['warmup']})"
    )
    p.add_argument(
        "--idle",
        type=float,
        help=f"idle seconds before the load (default {DEFAULTS['idle']}; at least two bookmark intervals)",
    )
    p.add_argument(
        "--drain",
        type=float,
        help=f"seconds after the load for the last events (default {DEFAULTS['drain']})",
    )
    p.add_argument("--clients", type=int, default=64, help="closed-loop writers (default 64)")
    p.add_argument("--processes", type=int, default=1, help="writer processes (default 1)")
    p.add_argument(
        "--progress-ms", type=int, default=1000, help="each watch's bookmark interval (default 1000)"
    )
    p.add_argument(
        "--watch-node", choices=("follower", "leader"), default="follower", help="where the watches go"
    )
    p.add_argument(
        "--watcher-processes", type=int, default=1, help="processes holding the watches (default 1)"
    )
    p.add_argument(
        "--watch-sockets", type=int, default=4, help="DEALER sockets per watcher process (default 4)"
    )
    p.add_argument("--open-timeout", type=float, default=120.0, help="seconds for every watch to open")
    p.add_argument("--elect-timeout", type=float, default=60.0, help="seconds for the leader to settle")
    p.add_argument("--no-fsync", action="store_true", help="storage.fsync = false on every node")
    p.add_argument("--base-dir", type=Path, default=None, help="where the temp dir goes (default: $TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (configs, data, logs)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    for key, default in (SMOKE if args.smoke else DEFAULTS).items():
        if getattr(args, key) is None:  # an explicit option wins over --smoke
            # The idle window must hold two bookmark intervals, or it sees no bookmark at all.
            setattr(args, key, max(default, 2 * args.progress_ms / 1000) if key == "idle" else default)
    counts = (args.watchers, args.clients, args.processes, args.watcher_processes, args.watch_sockets)
    if min(counts) < 1:
        p.error("--watchers, --clients, --processes, --watcher-processes and --watch-sockets must be >= 1")
    if args.duration <= 0 or args.warmup < 0 or args.idle <= 0 or args.drain < 0:
        p.error("--duration and --idle must be > 0, --warmup and --drain >= 0")
    if not 10 <= args.progress_ms <= 60_000:
        p.error("--progress-ms must be in [10, 60000] (docs/protocol.md)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    wall0 = time.monotonic()
    settings: dict[str, Value] = {
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),  # others sharing the machine skew numbers
        "clients": args.clients,
        "writer_processes": args.processes,
        "watcher_processes": args.watcher_processes,
        "watch_sockets_per_process": args.watch_sockets,
        "progress_ms": args.progress_ms,
        "value_bytes": VALUE_BYTES,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "idle_s": args.idle,
        "drain_s": args.drain,
        "fsync": not args.no_fsync,
    }
    try:
        with signals_raise():
            out, ok = run(args)
    except KeyboardInterrupt:
        print("interrupted: every node, writer and watcher was stopped", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"watch benchmark failed: {exc}", file=sys.stderr)
        return 1
    result = {**settings, **out, "total_wall_s": round(time.monotonic() - wall0, 3), **machine(), "ok": ok}
    print_section("run", {k: result[k] for k in ("hot_modules", "total_wall_s", "ok")})
    if args.json:
        print_json(result)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
