"""Daemon benchmark: a real 3-node confmand cluster on loopback, driven through the client protocol.

What it does (results and how to read them: docs/benchmarks.md, "Daemon"):

- starts 3 `confmand run` nodes in a temp dir with free loopback ports and
  fsync ON (`--no-fsync` to compare), waits for a leader, writes the key
  space once (`--keys` keys of 16 bytes, values of 128 bytes);
- runs each scenario of `--scenarios` for `--warmup` + `--duration` seconds
  with `--clients` closed-loop logical clients (each one request in flight,
  or `--pipeline` of them), spread over `--sockets` DEALER sockets in each of
  `--processes` generator processes (default: one per core);
- per scenario reports ops_per_s, p50/p99/p99.9 latency, errors (error
  replies in the window plus requests never answered), the generators' CPU
  seconds in the window (theirs, from getrusage) and the cluster's (the
  sum over the nodes, from /proc/PID/stat), and the nodes' resident memory.

Scenarios: `put` and `get` (linearizable) go to the leader; `version_get`
(consistency `version`, `min_version` the token of a write made just
before) and `stale_get` go to the two followers; `mix` is 90% linearizable
gets and 10% puts to the leader; `seq_put` and `seq_get` are one client with
one request at a time (latency, not throughput); `ping` is the daemon's
request path alone (no Raft, no storage) as a yardstick.

The nodes are stopped by PID at the end, always: on errors, Ctrl-C and
SIGTERM too. `--json` prints one JSON object as the last line, every key
ending in its unit (`put_ops_per_s`, `put_p99_ms`, `put_cluster_cpu_s`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/daemon.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._cluster import MIB, NODE_IDS, BenchCluster, BenchError, signals_raise
from bench._load import LoadResult, preload, run_load
from bench._report import Value, machine, print_json, print_section
from bench._stats import latency_summary_ms
from bench._worker import VALUE_BYTES, WorkerSpec


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    op: str  # the worker's op (bench._worker.SCENARIO_OPS)
    to_followers: bool = False  # else: everything to the leader
    sequential: bool = False  # one client, one request at a time, one process


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("put", "put"),
        Scenario("get", "get"),
        Scenario("version_get", "version", to_followers=True),
        Scenario("stale_get", "stale", to_followers=True),
        Scenario("mix", "mix"),
        Scenario("seq_put", "put", sequential=True),
        Scenario("seq_get", "get", sequential=True),
        Scenario("ping", "ping"),
    )
}

ClusterSample = tuple[float, dict[int, float]]  # (monotonic time, CPU seconds per node)


def worker_specs(
    scenario: Scenario,
    args: argparse.Namespace,
    leader: int,
    addresses: dict[int, str],
    min_version: str | None,
) -> list[WorkerSpec]:
    """One spec per generator process: the clients and sockets split as evenly as they go."""
    targets = (
        [addresses[n] for n in NODE_IDS if n != leader] if scenario.to_followers else [addresses[leader]]
    )
    processes, sockets, clients, pipeline = args.processes, args.sockets, args.clients, args.pipeline
    if scenario.sequential:
        processes, sockets, clients, pipeline = 1, 1, 1, 1
    processes = min(processes, clients)
    specs = []
    for p in range(processes):
        share = clients // processes + (1 if p < clients % processes else 0)
        n_sockets = min(sockets, share)
        # Socket number s of process p is global socket p * n_sockets + s: followers alternate by it.
        socket_addresses = [targets[(p * n_sockets + s) % len(targets)] for s in range(n_sockets)]
        specs.append(
            WorkerSpec(
                op=scenario.op,
                addresses=socket_addresses,
                slots=share * pipeline,
                keys=args.keys,
                write_fraction=args.write_fraction,
                min_version=min_version,
                seed=args.seed * 1000 + p,
                sessions=not args.no_sessions,
            )
        )
    return specs


def scenario_report(
    scenario: Scenario, load: LoadResult[ClusterSample], leader: int, rss_mib: float
) -> dict[str, Value]:
    """The scenario's keys (without the scenario prefix)."""
    window = load.window_s or 1.0
    all_latencies = list(load.read_latencies_s) + list(load.write_latencies_s)
    report: dict[str, Value] = {"ops_per_s": round(load.ops / window, 1), "ops": load.ops}
    report.update(latency_summary_ms(all_latencies))
    if scenario.op == "mix":
        reads, writes = latency_summary_ms(load.read_latencies_s), latency_summary_ms(load.write_latencies_s)
        report.update({f"read_{k}": v for k, v in reads.items() if k in ("p50_ms", "p99_ms")})
        report.update({f"write_{k}": v for k, v in writes.items() if k in ("p50_ms", "p99_ms")})
        report["writes_per_s"] = round(len(load.write_latencies_s) / window, 1)
    report["errors"] = load.errors + load.unanswered
    if load.error_codes:
        report["error_codes"] = ",".join(f"{c}={n}" for c, n in sorted(load.error_codes.items()))
    if load.unanswered:
        report["unanswered"] = load.unanswered
    assert load.sample_at_measure is not None
    assert load.sample_at_end is not None
    (t0, cpu0), (t1, cpu1) = load.sample_at_measure, load.sample_at_end
    per_node = {n: cpu1.get(n, 0.0) - cpu0.get(n, 0.0) for n in cpu1}
    report["window_s"] = round(window, 3)
    report["generator_processes"] = load.generator_processes
    report["generator_cpu_s"] = round(load.generator_cpu_s, 3)
    report["generator_cpu_cores"] = round(load.generator_cpu_s / window, 2)  # 1.0 = one core busy
    report["cluster_cpu_s"] = round(sum(per_node.values()), 3)
    report["cluster_cpu_cores"] = round(sum(per_node.values()) / (t1 - t0 or 1.0), 2)
    report["leader_cpu_s"] = round(per_node.get(leader, 0.0), 3)
    if load.ops:  # what one request costs, whatever the machine's other tenants left the cluster
        report["cluster_cpu_ms_per_op"] = round(sum(per_node.values()) / load.ops * 1000, 4)
        report["leader_cpu_ms_per_op"] = round(per_node.get(leader, 0.0) / load.ops * 1000, 4)
    report["cluster_rss_mib"] = round(rss_mib, 1)
    return report


def run_scenario(cluster: BenchCluster, scenario: Scenario, args: argparse.Namespace) -> dict[str, Value]:
    cluster.check_alive()
    leader = cluster.wait_for_leader()
    min_version = None
    if scenario.op == "version":
        # A client's own write: its token is what a read-your-writes read on a follower carries.
        reply = cluster.request(leader, {"op": "put", "key": "bench/token", "value": bytes(VALUE_BYTES)})
        if not reply.get("ok"):
            raise BenchError(f"the put for a version token failed: {reply.get('error')}")
        min_version = str(reply["version"])
    specs = worker_specs(scenario, args, leader, cluster.addresses, min_version)

    def sample() -> ClusterSample:
        return time.monotonic(), cluster.cpu_s()

    load = run_load(specs, args.warmup, args.duration, sample)
    rss_mib = cluster.rss_mib()
    cluster.check_alive()
    return scenario_report(scenario, load, leader, rss_mib)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("--duration", type=float, default=8.0, help="measured seconds per scenario (default 8)")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each (default 2)")
    p.add_argument("--clients", type=int, default=256, help="closed-loop logical clients (default 256)")
    p.add_argument("--pipeline", type=int, default=1, help="requests in flight per client (default 1)")
    p.add_argument(
        "--processes", type=int, default=os.cpu_count() or 1, help="generator processes (default nproc)"
    )
    p.add_argument("--sockets", type=int, default=4, help="DEALER sockets per generator process (default 4)")
    p.add_argument("--keys", type=int, default=1000, help="key space, written once before (default 1000)")
    p.add_argument(
        "--idle", type=float, default=2.0, help="seconds of idle cluster CPU to measure (default 2)"
    )
    p.add_argument("--write-fraction", type=float, default=0.1, help="puts in the mix (default 0.1)")
    p.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, of: {', '.join(SCENARIOS)}"
    )
    p.add_argument("--no-fsync", action="store_true", help="storage.fsync = false on every node")
    p.add_argument("--no-sessions", action="store_true", help="puts without client_id/seq")
    p.add_argument("--base-dir", type=Path, default=None, help="where the temp dir goes (default: $TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (configs, data, logs)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    args.scenario_list = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in args.scenario_list if s not in SCENARIOS]
    if unknown or not args.scenario_list:
        p.error(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    if min(args.clients, args.pipeline, args.processes, args.sockets, args.keys) < 1:
        p.error("--clients, --pipeline, --processes, --sockets and --keys must be >= 1")
    if args.duration <= 0 or args.warmup < 0 or not 0.0 <= args.write_fraction <= 1.0:
        p.error("--duration must be > 0, --warmup >= 0 and --write-fraction in [0, 1]")
    return args


def run(args: argparse.Namespace) -> tuple[dict[str, Value], bool]:
    out: dict[str, Value] = {}
    ok = True
    with BenchCluster(fsync=not args.no_fsync, base_dir=args.base_dir, keep=args.keep) as cluster:
        t0 = time.monotonic()
        leader = cluster.wait_for_leader()
        out["leader_election_s"] = round(time.monotonic() - t0, 3)
        t0 = time.monotonic()
        preload(cluster.addresses[leader], args.keys)
        out["preload_s"] = round(time.monotonic() - t0, 3)
        out.update(idle_cost(cluster, args.idle))
        for name in args.scenario_list:
            scenario = SCENARIOS[name]
            report = run_scenario(cluster, scenario, args)
            clients = 1 if scenario.sequential else args.clients
            print_section(
                f"{name}: {clients} client(s), {args.duration} s after {args.warmup} s warm-up", report
            )
            ok = ok and report["errors"] == 0 and report["ops"] != 0
            out.update({f"{name}_{key}": value for key, value in report.items()})
        out["data_dir_mib"] = round(_tree_bytes(cluster.root) / MIB, 1)
    return out, ok


def idle_cost(cluster: BenchCluster, seconds: float) -> dict[str, Value]:
    """What the cluster burns with no client at all (ticks, heartbeats): the floor under every scenario."""
    if seconds <= 0:
        return {}
    cpu0, t0 = cluster.cpu_s(), time.monotonic()
    time.sleep(seconds)  # measuring an idle period: there is no event to wait for
    cpu1, t1 = cluster.cpu_s(), time.monotonic()
    used = sum(cpu1[n] - cpu0.get(n, 0.0) for n in cpu1)
    return {
        "idle_cluster_cpu_cores": round(used / (t1 - t0), 3),
        "idle_cluster_rss_mib": round(cluster.rss_mib(), 1),
    }


def _tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    wall0 = time.monotonic()
    settings: dict[str, Value] = {
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),  # others sharing the machine skew numbers
        "scenarios": ",".join(args.scenario_list),
        "clients": args.clients,
        "pipeline": args.pipeline,
        "generator_processes": args.processes,
        "sockets_per_process": args.sockets,
        "keys": args.keys,
        "key_bytes": 16,
        "value_bytes": VALUE_BYTES,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "fsync": not args.no_fsync,
        "sessions": not args.no_sessions,
    }
    try:
        with signals_raise():
            out, ok = run(args)
    except KeyboardInterrupt:
        print("interrupted: every node and generator was stopped", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"daemon benchmark failed: {exc}", file=sys.stderr)
        return 1
    result = {**settings, **out, "total_wall_s": round(time.monotonic() - wall0, 3), **machine(), "ok": ok}
    print_section("run", {k: result[k] for k in ("total_wall_s", "ok")})
    if args.json:
        print_json(result)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
