"""Raft core benchmark: the pure core driven in memory, in one process, on one core.

Two measurements (results and how to read them: docs/benchmarks.md):

- Throughput: one 3-replica shard; the leader proposes batches of `--batch`
  100-byte commands; after each proposal every replica with a Ready is
  pumped once (ready -> MemoryStorage.persist -> step() the messages into
  their receivers -> advance). `committed_entries_per_s` counts the
  committed entries the leader's Readies hand out in the measured window
  (after `--warmup-seconds`). At the end all replicas must have applied the
  same entries.
- Idle cost: `--shards` shards of 3 replicas each (every shard its own
  cluster, leaders elected), then every replica ticks once and each shard is
  pumped to quiescence (the heartbeats and their answers), many times over.
  Also the resident memory per idle replica.

`--json` prints one JSON object as the last line, every key ending in its unit.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/raft_core.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import Value, machine, peak_rss_bytes, print_json, print_section, rss_bytes
from confmand.raft import Entry, Membership, MemoryStorage, NodeId, RaftConfig, RaftNode, Role, Snapshot

MIB = 1 << 20
REPLICA_IDS: tuple[NodeId, ...] = (1, 2, 3)
DEFAULT_MAX_APPEND_ENTRIES = 4096
DEFAULT_MAX_INFLIGHT_MSGS = 256


@dataclass(frozen=True, slots=True)
class Settings:
    """The RaftConfig limits the throughput run uses (large enough that batches stay whole)."""

    max_append_entries: int = DEFAULT_MAX_APPEND_ENTRIES
    max_append_bytes: int = 8 * MIB
    max_inflight_msgs: int = DEFAULT_MAX_INFLIGHT_MSGS
    max_inflight_bytes: int = 256 * MIB

    def config(self, node_id: NodeId, shard: int) -> RaftConfig:
        return RaftConfig(
            node_id,
            shard,
            max_append_entries=self.max_append_entries,
            max_append_bytes=self.max_append_bytes,
            max_inflight_msgs=self.max_inflight_msgs,
            max_inflight_bytes=self.max_inflight_bytes,
        )


@dataclass(slots=True)
class Cluster:
    """One shard's replicas, their storages, and what each has applied."""

    nodes: list[RaftNode]
    storages: list[MemoryStorage]
    by_id: dict[NodeId, RaftNode]
    applied_entries: list[int]
    last_applied: list[Entry | None]
    readies: int = 0

    @classmethod
    def build(cls, shard: int, seed: int, settings: Settings | None = None) -> Cluster:
        settings = settings or Settings()
        membership = Membership(frozenset(REPLICA_IDS))
        storages = [MemoryStorage.bootstrap(membership) for _ in REPLICA_IDS]
        nodes = [
            RaftNode(
                settings.config(node_id, shard),
                storage,
                random.Random(seed * 1_000_003 + shard * 8 + node_id),
            )
            for node_id, storage in zip(REPLICA_IDS, storages, strict=True)
        ]
        n = len(nodes)
        return cls(nodes, storages, {node.id: node for node in nodes}, [0] * n, [None] * n)

    def pump_pass(self) -> int:
        """Give every replica that has a Ready one turn of the Ready protocol; returns how many had one."""
        by_id = self.by_id
        handled = 0
        for i, node in enumerate(self.nodes):
            if not node.has_ready():
                continue
            rd = node.ready()
            self.storages[i].persist(rd)  # 1. persist (MemoryStorage: durable at once)
            for msg in rd.messages:  # 2. send: delivered straight into the receiver
                by_id[msg.dst].step(msg)
            committed = rd.committed_entries  # 3. apply (the benchmark only counts)
            if committed:
                self.applied_entries[i] += len(committed)
                self.last_applied[i] = committed[-1]
            node.advance(rd)  # 5. advance
            handled += 1
        self.readies += handled
        return handled

    def pump(self, max_passes: int = 10_000) -> None:
        """Pump until no replica has a Ready."""
        for _ in range(max_passes):
            if not self.pump_pass():
                return
        raise RuntimeError("the cluster did not quiesce")

    def leader(self) -> RaftNode | None:
        for node in self.nodes:
            if node.role is Role.LEADER:
                return node
        return None

    def elect(self, max_ticks: int = 1000) -> RaftNode:
        """Tick every replica (pumping after each tick) until one is leader and all follow it."""
        for _ in range(max_ticks):
            leader = self.leader()
            if leader is not None and all(node.leader_id == leader.id for node in self.nodes):
                self.pump()
                return leader
            for node in self.nodes:
                node.tick()
            self.pump()
        raise RuntimeError(f"no leader after {max_ticks} ticks")

    def agree(self) -> bool:
        """Every replica applied the same number of entries, ending at the same (term, index)."""
        return len(set(self.applied_entries)) == 1 and len(set(self.last_applied)) == 1

    def compact(self, keep_entries: int) -> None:
        """Snapshot and compact every replica through what all have applied, as a driver would."""
        upto = min(node.applied_index for node in self.nodes)
        for node, storage in zip(self.nodes, self.storages, strict=True):
            if upto - node.log.snapshot_index < keep_entries:
                continue
            storage.save_snapshot(Snapshot(node.snapshot_meta(upto), b""))
            storage.compact(upto)
            node.compact(upto)


# ---------------------------------------------------------------------- throughput


@dataclass(slots=True)
class ThroughputResult:
    committed_entries: int
    wall_s: float
    cpu_s: float
    readies: int
    proposals: int
    applied_entries: list[int]
    replicas_agree: bool
    profile_text: str = ""
    raft_share: float = 0.0

    @property
    def committed_entries_per_s(self) -> float:
        return self.committed_entries / self.wall_s if self.wall_s else 0.0


def run_throughput(
    seconds: float,
    warmup_seconds: float,
    batch: int,
    *,
    entry_bytes: int = 100,
    settings: Settings | None = None,
    compact_entries: int = 100_000,
    seed: int = 1,
    profile: bool = False,
) -> ThroughputResult:
    """Propose `batch` entries, pump every replica once, repeat; measure after the warm-up."""
    cluster = Cluster.build(0, seed, settings)
    leader = cluster.elect()
    lead = cluster.nodes.index(leader)
    payload = [bytes(entry_bytes)] * batch
    propose = leader.propose_batch
    pump_pass = cluster.pump_pass
    applied = cluster.applied_entries
    perf = time.perf_counter

    def loop(until: float) -> int:
        rounds = 0
        while True:
            propose(payload)
            pump_pass()
            rounds += 1
            if compact_entries and rounds % 64 == 0:
                cluster.compact(compact_entries)
            if perf() >= until:
                return rounds

    loop(perf() + warmup_seconds)
    profiler = cProfile.Profile() if profile else None
    committed_before, readies_before = applied[lead], cluster.readies
    cpu0, wall0 = time.process_time(), perf()
    if profiler is not None:
        profiler.enable()
    rounds = loop(wall0 + seconds)
    if profiler is not None:
        profiler.disable()
    wall_s, cpu_s = perf() - wall0, time.process_time() - cpu0
    committed = applied[lead] - committed_before
    readies = cluster.readies - readies_before

    cluster.pump()  # drain: every proposal commits and every replica applies it
    agree = cluster.agree() and leader.role is Role.LEADER and applied[lead] == leader.last_index
    result = ThroughputResult(committed, wall_s, cpu_s, readies, rounds, list(applied), agree)
    if profiler is not None:
        result.profile_text, result.raft_share = _profile_report(profiler)
    return result


def _profile_report(profiler: cProfile.Profile, top: int = 25) -> tuple[str, float]:
    """The top functions by own time, then the core's share per module (with the C builtins it calls)."""
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    raft_dir = str(Path(__file__).resolve().parents[1] / "confmand" / "raft") + "/"
    total = 0.0
    per_module: dict[str, float] = {}
    for entry in profiler.getstats():
        total += entry.inlinetime
        code = entry.code
        if isinstance(code, str) or not code.co_filename.startswith(raft_dir):
            continue
        builtins = sum(sub.inlinetime for sub in entry.calls or () if isinstance(sub.code, str))
        module = code.co_filename.removeprefix(raft_dir)
        per_module[module] = per_module.get(module, 0.0) + entry.inlinetime + builtins
    core = sum(per_module.values())
    out.write("  own time in confmand/raft per module (including the C builtins each calls):\n")
    for module, seconds in sorted(per_module.items(), key=lambda item: -item[1]):
        out.write(f"    {module:<16} {seconds:8.3f} s  {seconds / total:6.1%}\n")
    share = core / total if total else 0.0
    out.write(f"  share of the measured window spent in confmand/raft: {share:.1%}\n")
    return out.getvalue(), share


# ---------------------------------------------------------------------- idle shards


@dataclass(slots=True)
class IdleResult:
    shards: int
    replicas: int
    ticks: int
    idle_us_per_shard_tick: float
    tick_only_us_per_replica: float
    pump_us_per_shard_tick: float
    readies_per_shard_tick: float
    leader_changes: int
    rss_mib: float
    bytes_per_idle_replica: float
    build_s: float


def run_idle(shards: int, ticks: int, seed: int = 1) -> IdleResult:
    """Build and elect `shards` 3-replica shards, then time idle ticks (tick, then pump each shard)."""
    gc.collect()
    rss_before = rss_bytes()
    start = time.perf_counter()
    clusters = [Cluster.build(shard, seed) for shard in range(1, shards + 1)]
    leaders = [cluster.elect() for cluster in clusters]
    build_s = time.perf_counter() - start
    gc.collect()
    rss_after = rss_bytes()
    replicas = [node for cluster in clusters for node in cluster.nodes]

    readies_before = sum(cluster.readies for cluster in clusters)
    tick_s = pump_s = 0.0
    perf = time.perf_counter
    for _ in range(ticks):
        t0 = perf()
        for node in replicas:
            node.tick()
        t1 = perf()
        for cluster in clusters:
            cluster.pump()
        t2 = perf()
        tick_s += t1 - t0
        pump_s += t2 - t1
    readies = sum(cluster.readies for cluster in clusters) - readies_before
    changes = sum(cluster.leader() is not leader for cluster, leader in zip(clusters, leaders, strict=True))
    shard_ticks = shards * ticks
    return IdleResult(
        shards=shards,
        replicas=len(replicas),
        ticks=ticks,
        idle_us_per_shard_tick=(tick_s + pump_s) / shard_ticks * 1e6,
        tick_only_us_per_replica=tick_s / (len(replicas) * ticks) * 1e6,
        pump_us_per_shard_tick=pump_s / shard_ticks * 1e6,
        # Each Ready of an idle shard carries the leader's heartbeats or one follower's answer.
        readies_per_shard_tick=readies / shard_ticks,
        leader_changes=changes,
        rss_mib=rss_after / MIB,
        bytes_per_idle_replica=(rss_after - rss_before) / len(replicas),
        build_s=build_s,
    )


# ---------------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("--seconds", type=float, default=5.0, help="measured throughput window (default 5)")
    p.add_argument("--warmup-seconds", type=float, default=1.0, help="throughput warm-up (default 1)")
    p.add_argument("--batch", type=int, default=1000, help="entries per propose_batch (default 1000)")
    p.add_argument("--entry-bytes", type=int, default=100, help="payload bytes per entry (default 100)")
    p.add_argument("--max-append-entries", type=int, default=DEFAULT_MAX_APPEND_ENTRIES)
    p.add_argument("--max-inflight-msgs", type=int, default=DEFAULT_MAX_INFLIGHT_MSGS)
    p.add_argument(
        "--compact-entries",
        type=int,
        default=100_000,
        help="snapshot+compact the log once this many applied entries pile up (0: never; default 100000)",
    )
    p.add_argument("--no-gc", action="store_true", help="disable the cyclic GC during the throughput run")
    p.add_argument("--profile", action="store_true", help="cProfile the measured window; print the top 25")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--skip-idle", action="store_true")
    p.add_argument("--shards", type=int, default=1000, help="idle shards of 3 replicas (default 1000)")
    p.add_argument("--idle-ticks", type=int, default=100, help="idle ticks to average over (default 100)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    if args.batch < 1 or args.shards < 1 or args.idle_ticks < 1 or args.seconds <= 0:
        p.error("--batch, --shards and --idle-ticks must be >= 1 and --seconds > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    out: dict[str, Value] = {}
    ok = True

    if not args.skip_idle:
        # First, while the heap is fresh, so that the RSS growth is the shards' own.
        idle = run_idle(args.shards, args.idle_ticks, args.seed)
        ok = ok and idle.leader_changes == 0
        section: dict[str, Value] = {
            "idle_shards": idle.shards,
            "idle_replicas": idle.replicas,
            "idle_ticks": idle.ticks,
            "idle_build_s": round(idle.build_s, 3),
            "idle_us_per_shard_tick": round(idle.idle_us_per_shard_tick, 2),
            "tick_only_us_per_replica": round(idle.tick_only_us_per_replica, 3),
            "pump_us_per_shard_tick": round(idle.pump_us_per_shard_tick, 2),
            "idle_readies_per_shard_tick": round(idle.readies_per_shard_tick, 2),
            "idle_leader_changes": idle.leader_changes,
            "rss_mib": round(idle.rss_mib, 1),
            "bytes_per_idle_replica": round(idle.bytes_per_idle_replica),
        }
        print_section(f"idle: {idle.shards} shards x 3 replicas, {idle.ticks} ticks", section)
        out.update(section)
        gc.collect()

    if not args.skip_throughput:
        settings = Settings(
            max_append_entries=args.max_append_entries, max_inflight_msgs=args.max_inflight_msgs
        )
        if args.no_gc:
            gc.disable()
        try:
            tp = run_throughput(
                args.seconds,
                args.warmup_seconds,
                args.batch,
                entry_bytes=args.entry_bytes,
                settings=settings,
                compact_entries=args.compact_entries,
                seed=args.seed,
                profile=args.profile,
            )
        finally:
            gc.enable()
        ok = ok and tp.replicas_agree and tp.committed_entries > 0
        section = {
            "committed_entries_per_s": round(tp.committed_entries_per_s),
            "committed_entries_per_cpu_s": round(tp.committed_entries / tp.cpu_s) if tp.cpu_s else 0,
            "committed_entries": tp.committed_entries,
            "batch_entries": args.batch,
            "entry_bytes": args.entry_bytes,
            "wall_s": round(tp.wall_s, 3),
            "cpu_s": round(tp.cpu_s, 3),
            "warmup_s": args.warmup_seconds,
            "proposal_batches": tp.proposals,
            "readies": tp.readies,
            "applied_entries": tp.applied_entries[0],
            "replicas_agree": tp.replicas_agree,
            "max_append_entries": settings.max_append_entries,
            "max_append_bytes": settings.max_append_bytes,
            "max_inflight_msgs": settings.max_inflight_msgs,
            "max_inflight_bytes": settings.max_inflight_bytes,
            "compact_entries": args.compact_entries,
            "gc_enabled": not args.no_gc,
            "profiled": args.profile,
        }
        print_section(f"throughput: 3 replicas, batches of {args.batch} x {args.entry_bytes} B", section)
        if args.profile:
            print("== cProfile of the measured window (profiling slows it down); top 25 by tottime")
            print(tp.profile_text.rstrip())
            section["profile_raft_share"] = round(tp.raft_share, 3)
        out.update(section)

    out["peak_rss_mib"] = round(peak_rss_bytes() / MIB, 1)
    out["total_wall_s"] = round(time.perf_counter() - wall0, 3)
    out["total_cpu_s"] = round(time.process_time() - cpu0, 3)
    out.update(machine())
    out["ok"] = ok
    print_section("run", {k: out[k] for k in ("peak_rss_mib", "total_wall_s", "total_cpu_s", "ok")})
    if args.json:
        print_json(out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
