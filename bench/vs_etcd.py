"""Confman beside etcd on this machine, in one run: the same load, alternating rounds, ratios.

Each round starts a 3-member etcd (Debian's etcd-server, its defaults: fsync on)
on loopback, loads it, stops it; then starts 3 confmand nodes (fsync on, one
data shard) and loads them the same way; then a 64-shard Confman cluster for
the spread puts. The load comes from one Go program for both systems
(bench/loadgen: closed loop, N clients over M connections, one request in
flight each, latency from send to reply), so the generator is not the limit
and its CPU is reported. Each figure is reported per system, and each ratio
Confman/etcd per round; the summary is the median of the per-round ratios.

Scenarios (each with 100-byte and 1 KiB values):
- put: puts to distinct keys, to the leader (etcd's, or the data shard's);
- get: linearizable gets at the leader;
- version_get: Confman's version-token gets on the followers (min_version a
  token of a write made just before); etcd has no such read, so its figure is
  the serializable get on the followers, the closest it offers;
- stale_get: stale gets on the followers (etcd: serializable);
- mix: 90% linearizable gets and 10% puts, at the leader;
- put_64_shards: puts spread over 64 data shards, each to its shard's leader
  (etcd is one Raft group: its figure is its `put`);
- seq_put, seq_get: one client, one request at a time (round-trip latency).
Plus a throughput-vs-latency curve of puts (clients 1, 16, 64, 256, 1024) for
both systems, drawn into a PNG (matplotlib, the `report` extra).

Goals (issue 10 §2; the output says met or not met for each):
- put: writes/s at least 1.5x etcd's, with p99 no worse than etcd's;
- get: linearizable reads/s at least 2x etcd's;
- seq_put and seq_get p50 no slower than etcd's;
- server CPU per put no more than etcd's;
- no spike from snapshots: in Confman's put scenario, p99.9 of the replies
  within 0.5 s of a snapshot no more than 2x the p99 of the others.

Every process it starts is stopped by PID, always (errors, Ctrl-C, SIGTERM).
`--json` prints one JSON object as the last line, every key ending in its unit.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/vs_etcd.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _loadgen
from bench._cluster import NODE_IDS, BenchCluster, BenchError, signals_raise
from bench._etcd import EtcdCluster
from bench._loadgen import Load, LoadRun
from bench._report import Value, machine, print_json, print_section
from bench._stats import percentile
from bench._worker import key_name
from bench.shards import cluster_toml, preferred_leaders
from confmand.protocol.shardmap import ShardMap

SYSTEMS = ("etcd", "confman")
SNAPSHOT_WINDOW_S = 0.5  # a reply this close to a snapshot's log line counts as "during" it
SPREAD_SHARDS = 64


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    op: str  # the generator's op for Confman
    etcd_op: str  # and for etcd
    to_followers: bool = False
    sequential: bool = False  # one client over one connection

    def clients(self, args: argparse.Namespace) -> int:
        return 1 if self.sequential else args.clients

    def conns(self, args: argparse.Namespace) -> int:
        return 1 if self.sequential else args.conns


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("put", "put", "put"),
        Scenario("get", "get", "get"),
        Scenario("version_get", "version", "serializable", to_followers=True),
        Scenario("stale_get", "stale", "serializable", to_followers=True),
        Scenario("mix", "mix", "mix"),
        Scenario("put_64_shards", "put", "put"),
        Scenario("seq_put", "put", "put", sequential=True),
        Scenario("seq_get", "get", "get", sequential=True),
    )
}


def scenario_key(name: str, value_bytes: int) -> str:
    return name if value_bytes == 100 else f"{name}_{value_bytes}b"


# ---------------------------------------------------------------------- one system, one round


@dataclass(slots=True)
class Target:
    """Where the generator sends: endpoints, the leader's key routes and the followers'."""

    endpoints: list[str]
    to_leader: list[tuple[str, int]]
    to_followers: list[tuple[str, int]]
    cpu_s: Callable[[], float]
    min_version: str | None = None


def _keys(args: argparse.Namespace) -> list[str]:
    return [key_name(i, args.namespaces) for i in range(args.keys)]


def etcd_target(cluster: EtcdCluster, args: argparse.Namespace) -> Target:
    leader = cluster.wait_for_leader()
    followers = [i for i in range(len(cluster.endpoints)) if i != leader]
    keys = _keys(args)
    return Target(
        cluster.endpoints,
        [(k, leader) for k in keys],
        [(k, followers[i % len(followers)]) for i, k in enumerate(keys)],
        cluster.cpu_s,
    )


def confman_target(cluster: BenchCluster, args: argparse.Namespace) -> Target:
    cluster.wait_for_leader()
    shard_map = ShardMap.from_wire(cluster.request(1, {"op": "shard_map"}))
    leaders = preferred_leaders(cluster, shard_map, args.elect_timeout)
    keys = _keys(args)
    routes = []
    follower_routes = []
    for i, key in enumerate(keys):
        leader = NODE_IDS.index(leaders[shard_map.shard_of(key)])
        routes.append((key, leader))
        followers = [n for n in range(len(NODE_IDS)) if n != leader]
        follower_routes.append((key, followers[i % len(followers)]))
    return Target(
        [cluster.addresses[n] for n in NODE_IDS],
        routes,
        follower_routes,
        lambda: sum(cluster.cpu_s().values()),
    )


def _version_token(cluster: BenchCluster, target: Target) -> str:
    """The version of a write made now, for version-token reads ("wait until applied here")."""
    key, index = target.to_leader[0]
    reply = cluster.request(NODE_IDS[index], {"op": "put", "key": key, "value": b"token"})
    if not reply.get("ok"):
        raise BenchError(f"the token write failed: {reply}")
    return str(reply["version"])


def measure(
    binary: Path,
    system: str,
    scenario: Scenario,
    target: Target,
    args: argparse.Namespace,
    *,
    value_bytes: int,
    clients: int | None = None,
    samples: bool = False,
) -> tuple[dict[str, Value], LoadRun[float]]:
    load = Load(
        system=system,
        op=scenario.etcd_op if system == "etcd" else scenario.op,
        endpoints=target.endpoints,
        key_routes=target.to_followers if scenario.to_followers else target.to_leader,
        clients=clients or scenario.clients(args),
        conns=scenario.conns(args),
        value_bytes=value_bytes,
        warmup_s=args.warmup,
        duration_s=args.duration,
        min_version=target.min_version if scenario.op == "version" and system == "confman" else None,
        seed=args.seed,
    )
    run = _loadgen.run(binary, load, target.cpu_s, samples=samples)
    result = run.result
    ops = int(result["ops"])
    server_cpu = (run.at_end or 0.0) - (run.at_measure or 0.0)
    figures: dict[str, Value] = {
        "ops_per_s": float(result["ops_per_s"]),
        "p50_ms": float(result["p50_ms"]),
        "p99_ms": float(result["p99_ms"]),
        "p999_ms": float(result["p999_ms"]),
        "errors": int(result["errors"]) + int(result["unanswered"]),
        "server_cpu_ms_per_op": round(1000 * server_cpu / ops, 4) if ops else 0.0,
        "server_cpu_cores": round(server_cpu / float(result["window_s"]), 2),
        "generator_cpu_cores": float(result["generator_cpu_cores"]),
    }
    return figures, run


def preload(binary: Path, system: str, target: Target, args: argparse.Namespace, value_bytes: int) -> None:
    """Every key written once (the read scenarios find them all)."""
    load = Load(
        system=system,
        op="preload",
        endpoints=target.endpoints,
        key_routes=target.to_leader,
        clients=min(args.clients, 64),
        conns=args.conns,
        value_bytes=value_bytes,
        warmup_s=0.0,
        duration_s=120.0,
        seed=args.seed,
    )
    result = _loadgen.run(binary, load, lambda: 0.0).result
    if int(result["writes"]) < len(target.to_leader):
        raise BenchError(f"{system}: preload wrote {result['writes']} of {len(target.to_leader)} keys")


def run_system(
    binary: Path, system: str, args: argparse.Namespace, spread: bool = False
) -> dict[str, dict[str, Value]]:
    """Every scenario of one system in one cluster (for Confman `spread`: the 64-shard cluster)."""
    names = [n for n in args.scenarios if (n == "put_64_shards") == spread]
    if (spread and system == "etcd") or not names:
        return {}
    if system == "etcd":
        with EtcdCluster(args.base_dir) as etcd:
            target = etcd_target(etcd, args)
            out, _ = _scenarios(binary, system, target, names, args, check=etcd.check_alive)
        return out
    shards = SPREAD_SHARDS if spread else 1
    with BenchCluster(base_dir=args.base_dir, extra_toml=cluster_toml(shards)) as cluster:
        target = confman_target(cluster, args)
        if "version_get" in names:
            target.min_version = _version_token(cluster, target)
        started = time.time()
        out, put_samples = _scenarios(binary, system, target, names, args, check=cluster.check_alive)
        if put_samples is not None:
            out["put"].update(_snapshot_spike(put_samples, _snapshot_times(cluster, started)))
    return out


def _scenarios(
    binary: Path,
    system: str,
    target: Target,
    names: Sequence[str],
    args: argparse.Namespace,
    *,
    check: Callable[[], None],
) -> tuple[dict[str, dict[str, Value]], array[int] | None]:
    """Each scenario's figures (and the curve's), and Confman's 100-byte put replies as samples."""
    out: dict[str, dict[str, Value]] = {}
    put_samples = None
    for value_bytes in args.values:
        preload(binary, system, target, args, value_bytes)
        for name in names:
            scenario = SCENARIOS[name]
            want_samples = system == "confman" and name == "put" and value_bytes == 100
            figures, run = measure(
                binary, system, scenario, target, args, value_bytes=value_bytes, samples=want_samples
            )
            check()
            out[scenario_key(name, value_bytes)] = figures
            if want_samples:
                put_samples = run.samples
    if args.curve and "put" in names:
        for clients in args.curve:
            figures, _ = measure(
                binary, system, SCENARIOS["put"], target, args, value_bytes=100, clients=clients
            )
            check()
            out[f"curve_{clients}"] = figures
    return out, put_samples


# ---------------------------------------------------------------------- snapshots and spikes


def _snapshot_times(cluster: BenchCluster, since: float) -> list[float]:
    """Wall-clock times of the data shard's snapshots, from the nodes' logs."""
    times = []
    for node in cluster.local.nodes.values():
        if not node.log_path.exists():
            continue
        for line in node.log_path.read_text(errors="replace").splitlines():
            if ": snapshot at " not in line or "shard 0:" in line:
                continue
            try:
                stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            except ValueError:
                continue
            if stamp >= since:
                times.append(stamp)
    return sorted(times)


def _snapshot_spike(samples: array[int], snapshots: list[float]) -> dict[str, Value]:
    """p99.9 of the replies near a snapshot against the p99 of the rest."""
    near: list[float] = []
    away: list[float] = []
    for i in range(0, len(samples), 2):
        at, latency_ms = samples[i] / 1e9, samples[i + 1] / 1e6
        close = any(abs(at - t) <= SNAPSHOT_WINDOW_S for t in snapshots)
        (near if close else away).append(latency_ms)
    near.sort()
    away.sort()
    in_window = [t for t in snapshots if samples and samples[0] / 1e9 <= t <= samples[-2] / 1e9]
    return {
        "snapshots_in_window": len(in_window),
        "near_snapshot_replies": len(near),
        "near_snapshot_p999_ms": round(percentile(near, 0.999), 3),
        "away_from_snapshot_p99_ms": round(percentile(away, 0.99), 3),
    }


# ---------------------------------------------------------------------- ratios, goals, report


def etcd_counterpart(name: str) -> str:
    """The etcd scenario a Confman one is compared with (etcd is one Raft group: no spread puts)."""
    return name.replace("put_64_shards", "put", 1)


def ratios(rounds: list[dict[str, dict[str, dict[str, Value]]]]) -> dict[str, Value]:
    """Each figure per system (median over rounds) and the median of the per-round ratios."""
    out: dict[str, Value] = {}
    for name in rounds[0]["confman"]:
        etcd_name = etcd_counterpart(name)
        for figure in rounds[0]["confman"][name]:
            for system, key in (("etcd", etcd_name), ("confman", name)):
                series = [_number(r[system].get(key, {}).get(figure)) for r in rounds]
                numbers = [x for x in series if x is not None]
                if numbers:
                    out[f"{name}_{system}_{figure}"] = round(statistics.median(numbers), 3)
            if figure not in RATIO_FIGURES:
                continue
            per_round = []
            for r in rounds:
                mine, theirs = (
                    _number(r["confman"][name].get(figure)),
                    _number(r["etcd"].get(etcd_name, {}).get(figure)),
                )
                if mine is not None and theirs:
                    per_round.append(mine / theirs)
            if per_round:
                unit = RATIO_FIGURES[figure]
                out[f"{name}_ratio_{unit}"] = round(statistics.median(per_round), 3)
                out[f"{name}_ratio_{unit}_rounds"] = " ".join(f"{x:.3f}" for x in per_round)
    return out


def _number(value: Value) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


RATIO_FIGURES = {
    "ops_per_s": "ops",
    "p50_ms": "p50",
    "p99_ms": "p99",
    "p999_ms": "p999",
    "server_cpu_ms_per_op": "cpu_per_op",
}


def goals(summary: dict[str, Value]) -> dict[str, Value]:
    def ratio(key: str) -> float | None:
        return _number(summary.get(key))

    checks: dict[str, tuple[str, Callable[[float], bool]]] = {
        "goal_writes_1_5x_etcd_met": ("put_ratio_ops", lambda r: r >= 1.5),
        "goal_write_p99_no_worse_met": ("put_ratio_p99", lambda r: r <= 1.0),
        "goal_linearizable_reads_2x_etcd_met": ("get_ratio_ops", lambda r: r >= 2.0),
        "goal_one_client_put_p50_met": ("seq_put_ratio_p50", lambda r: r <= 1.0),
        "goal_one_client_get_p50_met": ("seq_get_ratio_p50", lambda r: r <= 1.0),
        "goal_cpu_per_write_met": ("put_ratio_cpu_per_op", lambda r: r <= 1.0),
    }
    out: dict[str, Value] = {}
    for goal, (key, holds) in checks.items():
        value = ratio(key)
        out[goal] = None if value is None else holds(value)
    near, away = ratio("put_confman_near_snapshot_p999_ms"), ratio("put_confman_away_from_snapshot_p99_ms")
    out["goal_no_snapshot_spike_met"] = None if near is None or not away else near <= 2 * away
    return out


def draw_curve(summary: dict[str, Value], clients: Sequence[int], path: Path) -> str:
    """Throughput against p50 and p99 latency of puts, both systems; returns what was done."""
    try:
        import matplotlib  # noqa: PLC0415 (optional: the `report` extra)

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[report]'): no picture"
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for system, color in zip(SYSTEMS, ("tab:blue", "tab:orange"), strict=True):
        for figure_name, style in (("p99_ms", "-"), ("p50_ms", "--")):
            xs = [_number(summary.get(f"curve_{c}_{system}_ops_per_s")) for c in clients]
            ys = [_number(summary.get(f"curve_{c}_{system}_{figure_name}")) for c in clients]
            points = [(x, y, c) for x, y, c in zip(xs, ys, clients, strict=True) if x and y]
            if not points:
                continue
            label = f"{system} {figure_name.removesuffix('_ms')}"
            axes.plot(
                [p[0] for p in points], [p[1] for p in points], style, color=color, marker="o", label=label
            )
            for x, y, c in points:
                axes.annotate(str(c), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    axes.set_xlabel("puts/s (3 nodes, fsync on, 100-byte values)")
    axes.set_ylabel("latency (ms): p99 solid, p50 dashed")
    axes.set_yscale("log")
    axes.set_title("Puts: throughput vs latency (labels: clients)")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return f"wrote {path}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated (default: all)")
    p.add_argument("--values", default="100,1024", help="value sizes in bytes (default 100,1024)")
    p.add_argument("--curve", default="1,16,64,256,1024", help="client counts of the put curve ('' for none)")
    p.add_argument("--curve-png", type=Path, default=Path("docs/vs_etcd_curve.png"))
    p.add_argument("--clients", type=int, default=256)
    p.add_argument("--conns", type=int, default=4, help="connections per endpoint (default 4)")
    p.add_argument("--keys", type=int, default=4096)
    p.add_argument("--namespaces", type=int, default=256)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per scenario (default 5)")
    p.add_argument("--elect-timeout", type=float, default=120.0)
    p.add_argument("--base-dir", type=Path, default=None)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    args.values = [int(v) for v in args.values.split(",") if v.strip()]
    args.curve = [int(c) for c in args.curve.split(",") if c.strip()]
    if min([args.rounds, args.clients, args.conns, args.keys, *args.values, *args.curve]) < 1:
        p.error("counts and sizes must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        binary = _loadgen.build()
        rounds: list[dict[str, dict[str, dict[str, Value]]]] = []
        with signals_raise():
            for number in range(1, args.rounds + 1):
                result: dict[str, dict[str, dict[str, Value]]] = {}
                for system in SYSTEMS:
                    print(f"round {number}/{args.rounds}: {system}", file=sys.stderr, flush=True)
                    result[system] = run_system(binary, system, args)
                    result[system].update(run_system(binary, system, args, spread=True))
                rounds.append(result)
    except BenchError as exc:
        print(f"vs_etcd: {exc}", file=sys.stderr)
        return 1
    summary = ratios(rounds)
    summary.update(goals(summary))
    picture = draw_curve(summary, args.curve, args.curve_png) if args.curve else "no curve asked"
    print_section("Confman / etcd, medians of the per-round ratios", summary)
    print(picture)
    if args.json:
        print_json({**machine(), "rounds": args.rounds, **summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
