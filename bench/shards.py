"""Many shards per node: throughput with 1, 16 and 64 data shards; idle CPU and RSS with many more.

    .venv/bin/python bench/shards.py [--json] [--shards 1,16,64] [--rounds 3] [--idle-shards 64,1000]

In each of `--rounds` alternating rounds, for each count in `--shards`, a fresh 3-node cluster
(fsync on) with that many data shards, each on all three nodes, takes the same closed-loop put
load: `--clients` clients over the same key space spread over `--namespaces` namespaces, each put
sent to the leader of its key's shard (as a routing client would). Reported per count, each the
median over the rounds: writes/s, p50/p99/p99.9 latency, errors, and the cluster's CPU per write;
and the ratio of 64 shards' writes/s to 1 shard's in each round, with its median. For each count
in `--idle-shards`, a fresh cluster with no client at all: CPU per node over `--idle` seconds once
every shard has a leader (% of one core), RSS per node, and how long until every shard had a leader.

Goals (issue 9): throughput with 64 shards at least that with 1 (the median of the per-round
ratios); idle CPU per node below 3% of a core with 1,000 shards; RSS below 1 GiB per node with
1,000 shards. The output says met or not met for each it measured.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._cluster import MIB, NODE_IDS, BenchCluster, BenchError, signals_raise
from bench._load import preload, run_load
from bench._report import Value, print_json, print_section
from bench._stats import latency_summary_ms
from bench._worker import WorkerSpec, key_name
from confmand.protocol.shardmap import ShardMap

PARTITIONS = 1024


def cluster_toml(data_shards: int) -> str:
    return f"\n[cluster]\npartitions = {max(PARTITIONS, data_shards)}\ndata_shards = {data_shards}\n"


def shard_leaders(cluster: BenchCluster, timeout_s: float) -> dict[int, int]:
    """Each shard's leader as node 1 sees it, once every shard has one (BenchError if not in time)."""
    deadline = time.monotonic() + timeout_s
    while True:
        reply = cluster.request(1, {"op": "status"}, timeout_s=10.0)
        leaders = {line["shard_id"]: line["leader_id"] for line in reply.get("shards", [])}
        if leaders and None not in leaders.values():
            return leaders
        if time.monotonic() > deadline:
            missing = sorted(s for s, leader in leaders.items() if leader is None)
            raise BenchError(
                f"{len(missing)} shards without a leader after {timeout_s} s: {missing[:10]} ..."
            )
        time.sleep(0.2)  # polling a cluster that elects on its own clock: no event to wait on


def preferred_leaders(cluster: BenchCluster, shard_map: ShardMap, timeout_s: float) -> dict[int, int]:
    """Each shard's leader once every shard is led by its preferred leader (the map's first
    replica): a new cluster hands leadership there within its first seconds (docs/sharding.md)."""
    preferred = {shard: replicas[0] for shard, replicas in shard_map.replicas.items()}
    deadline = time.monotonic() + timeout_s
    while (leaders := shard_leaders(cluster, timeout_s)) != preferred:
        if time.monotonic() > deadline:
            moved = sorted(s for s in preferred if leaders.get(s) != preferred[s])
            raise BenchError(f"{len(moved)} shards not led by their preferred leader: {moved[:10]} ...")
        time.sleep(0.2)  # the hand-overs run on the cluster's clock: polling, nothing to await
    return leaders


def throughput(data_shards: int, args: argparse.Namespace) -> dict[str, Value]:
    with BenchCluster(base_dir=args.base_dir, extra_toml=cluster_toml(data_shards)) as cluster:
        # A new cluster hands each shard to its preferred leader within its first seconds: routes
        # taken before that would meet NOT_LEADER under load.
        shard_map = ShardMap.from_wire(cluster.request(1, {"op": "shard_map"}))
        leaders = preferred_leaders(cluster, shard_map, args.elect_timeout)
        preload(cluster.addresses[1], args.keys, namespaces=args.namespaces, timeout_s=120.0)
        addresses = [cluster.addresses[n] for n in NODE_IDS]
        routes = [
            NODE_IDS.index(leaders[shard_map.shard_of(key_name(i, args.namespaces))])
            for i in range(args.keys)
        ]
        per_process = args.clients // args.processes
        specs = [
            WorkerSpec(
                op="put",
                addresses=addresses,
                slots=per_process + (1 if p < args.clients % args.processes else 0),
                keys=args.keys,
                seed=args.seed * 1000 + p,
                namespaces=args.namespaces,
                key_socket=routes,
            )
            for p in range(args.processes)
        ]
        load = run_load(specs, args.warmup, args.duration, cluster.cpu_s)
        cluster.check_alive()
        before, after = load.sample_at_measure or {}, load.sample_at_end or {}
        cluster_cpu_s = sum(after.get(n, 0.0) - before.get(n, 0.0) for n in after)
    writes = len(load.write_latencies_s)
    report: dict[str, Value] = {
        "writes_per_s": round(writes / load.window_s, 1) if load.window_s else 0.0,
        "errors": load.errors,
        "unanswered": load.unanswered,
        "cluster_cpu_ms_per_write": round(cluster_cpu_s / writes * 1000, 4) if writes else 0.0,
        "generator_cpu_cores": round(load.generator_cpu_s / load.window_s, 2) if load.window_s else 0.0,
    }
    report.update({f"put_{k}": v for k, v in latency_summary_ms(sorted(load.write_latencies_s)).items()})
    return report


def idle(data_shards: int, args: argparse.Namespace) -> dict[str, Value]:
    with BenchCluster(base_dir=args.base_dir, extra_toml=cluster_toml(data_shards)) as cluster:
        t0 = time.monotonic()
        shard_leaders(cluster, args.elect_timeout)
        elected_s = time.monotonic() - t0
        cpu0, w0 = cluster.cpu_s(), time.monotonic()
        time.sleep(args.idle)  # measuring an idle period: there is no event to wait for
        cpu1, w1 = cluster.cpu_s(), time.monotonic()
        rss = cluster.rss_bytes_per_node()
        cluster.check_alive()
    per_node = {n: (cpu1[n] - cpu0.get(n, 0.0)) / (w1 - w0) * 100 for n in cpu1}
    return {
        "all_led_s": round(elected_s, 1),
        "idle_cpu_pct_per_node_max": round(max(per_node.values()), 2),
        "idle_cpu_pct_per_node_mean": round(sum(per_node.values()) / len(per_node), 2),
        "rss_mib_per_node_max": round(max(rss.values()) / MIB, 1),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("--shards", default="1,16,64", help="data shard counts for the load (default 1,16,64)")
    p.add_argument(
        "--idle-shards", default="64,1000", help="data shard counts for idle cost (default 64,1000)"
    )
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of the shard counts (default 3)")
    p.add_argument("--duration", type=float, default=8.0, help="measured seconds of load (default 8)")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before (default 2)")
    p.add_argument("--idle", type=float, default=10.0, help="idle seconds measured (default 10)")
    p.add_argument("--clients", type=int, default=256, help="closed-loop clients (default 256)")
    p.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="generator processes")
    p.add_argument("--keys", type=int, default=4096, help="key space (default 4096)")
    p.add_argument(
        "--namespaces", type=int, default=256, help="namespaces the keys spread over (default 256)"
    )
    p.add_argument("--elect-timeout", type=float, default=180.0, help="seconds for every shard to elect")
    p.add_argument("--base-dir", type=Path, default=None, help="where the temp dirs go (default: $TMPDIR)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    args.shard_counts = [int(s) for s in args.shards.split(",") if s.strip()]
    args.idle_counts = [int(s) for s in args.idle_shards.split(",") if s.strip()]
    if (
        min(
            [
                args.clients,
                args.processes,
                args.keys,
                args.namespaces,
                args.rounds,
                *args.shard_counts,
                *args.idle_counts,
            ]
        )
        < 1
    ):
        p.error("counts must be >= 1")
    return args


def median_report(rounds: list[dict[str, Value]]) -> dict[str, Value]:
    """Each figure's median over the rounds (numbers only; the rest from the first round)."""
    merged: dict[str, Value] = {}
    for key, first in rounds[0].items():
        numbers = [v for r in rounds if isinstance(v := r[key], int | float) and not isinstance(v, bool)]
        merged[key] = statistics.median(numbers) if len(numbers) == len(rounds) else first
    return merged


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out: dict[str, Value] = {}
    per_count: dict[int, list[dict[str, Value]]] = {count: [] for count in args.shard_counts}
    ratios: list[float] = []
    with signals_raise():
        # Alternating rounds: the machine's speed drifts within minutes, so the 64/1 ratio is taken
        # per round (counts measured back to back) and its median is what the goal reads.
        for round_no in range(1, args.rounds + 1):
            for count in args.shard_counts:
                report = throughput(count, args)
                print_section(
                    f"round {round_no}/{args.rounds}, {count} data shards: {args.clients} clients, "
                    f"puts over {args.namespaces} namespaces",
                    report,
                )
                per_count[count].append(report)
            one, sixty_four = per_count.get(1), per_count.get(64)
            if one and sixty_four:
                a, b = one[-1]["writes_per_s"], sixty_four[-1]["writes_per_s"]
                if isinstance(a, float) and isinstance(b, float) and a > 0:
                    ratios.append(b / a)
        for count, rounds in per_count.items():
            out.update({f"shards_{count}_{k}": v for k, v in median_report(rounds).items()})
        if ratios:
            out["ratio_64_to_1_writes_median"] = round(statistics.median(ratios), 3)
            out["ratio_64_to_1_writes_rounds"] = " ".join(f"{r:.3f}" for r in ratios)
        for count in args.idle_counts:
            report = idle(count, args)
            print_section(f"{count} data shards, idle for {args.idle} s", report)
            out.update({f"idle_{count}_{k}": v for k, v in report.items()})
    goals: dict[str, Value] = {}
    ratio = out.get("ratio_64_to_1_writes_median")
    if isinstance(ratio, float):
        goals["goal_64_shards_at_least_1_shard_met"] = ratio >= 1.0
    cpu, rss = out.get("idle_1000_idle_cpu_pct_per_node_max"), out.get("idle_1000_rss_mib_per_node_max")
    if isinstance(cpu, float) and isinstance(rss, float):
        goals["goal_idle_cpu_below_3pct_with_1000_met"] = cpu < 3.0
        goals["goal_rss_below_1gib_with_1000_met"] = rss < 1024
    if goals:
        print_section("goals", goals)
    out.update(goals)
    if args.json:
        print_json(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
