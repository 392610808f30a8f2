"""Config state machine benchmark: `ConfigStateMachine.apply_batch` of session puts, in one process.

The workload is what a replica of a busy shard applies: batches of `--batch` puts of
`--key-bytes` keys (over `--keys` distinct keys) and `--value-bytes` values, every put from one
of `--sessions` client sessions, round robin. Two session behaviours:

- `ack`: each client acknowledges every reply before its next write (`ack = seq - 1`), so a
  session's cache holds one result;
- `noack`: clients never acknowledge (the worst case): every session's cache fills up to
  `--max-session-results` and then drops its oldest result on every write. The run first
  applies `sessions x max_session_results` entries (untimed) so the caches are full when the
  measured window starts.

Each behaviour runs against two stores:

- `memory`: a `MemoryKVStore`; each batch's WriteSet is applied to it;
- `leveldb`: a real node storage (confmand/storage, LevelDB in a temporary dir); each batch's
  WriteSet is staged with `stage_applied` and written with `NodeStorage.write(sync=False)` (no
  fsync: this measures the CPU of applying, not the disk).

The measured time per batch covers `apply_batch` plus persisting its writes; building the
entries (the leader's encoding) is outside it. `<store>_<behaviour>_entries_per_s` is entries
over that time; `entries_per_s` is the headline, `leveldb_ack`. Every put must answer ok.

`--json` prints one JSON object as the last line, every key ending in its unit.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/kv_apply.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import Value, machine, peak_rss_bytes, print_json, print_section
from confmand.kv.codec import encode_command
from confmand.kv.commands import Command, Put, Session
from confmand.kv.state_machine import ConfigStateMachine
from confmand.kv.store import KVStore, MemoryKVStore, WriteSet
from confmand.protocol.types import Version
from confmand.storage.node_storage import NodeStorage

MIB = 1 << 20
SHARD_ID = 1
TERM = 1
STORES = ("memory", "leveldb")
BEHAVIOURS = ("ack", "noack")

Entries = list[tuple[Version, bytes]]


@dataclass(frozen=True, slots=True)
class Workload:
    sessions: int = 256
    keys: int = 1000
    key_bytes: int = 16
    value_bytes: int = 128
    batch: int = 256
    ack: bool = True
    history_limit: int = 10
    max_session_results: int = 1024


class Feed:
    """The entries of the workload, numbered from index 1, one HLC millisecond per batch."""

    def __init__(self, w: Workload) -> None:
        self._w = w
        self._keys = [f"k{i:0{w.key_bytes - 1}d}"[-w.key_bytes :] for i in range(w.keys)]
        self._clients = [f"client-{i:06d}".encode() for i in range(w.sessions)]
        self._seqs = [0] * w.sessions
        self._value = bytes(range(256))[: w.value_bytes].ljust(w.value_bytes, b"v")
        self._count = 0
        self.index = 0

    def batch(self) -> Entries:
        w = self._w
        hlc = (1_000_000 + self.index // w.batch) << 16
        out: Entries = []
        for _ in range(w.batch):
            n = self._count
            client = n % w.sessions
            self._seqs[client] += 1
            seq = self._seqs[client]
            session = Session(self._clients[client], seq, seq - 1 if w.ack else 0)
            cmd = Command(Put(self._keys[n % w.keys], self._value), hlc, "bench", session)
            self._count += 1
            self.index += 1
            out.append((Version(TERM, self.index), encode_command(cmd)))
        return out


class Target:
    """A store, and how a batch's writes reach it (what the driver does)."""

    def __init__(self, kind: str, tmp: Path) -> None:
        self.kind = kind
        self._node: NodeStorage | None = None
        if kind == "memory":
            self._memory = MemoryKVStore()
            self.store: KVStore = self._memory
        else:
            self._node = NodeStorage.open(tmp / "data", "bench", 1)
            self.store = self._node.shard(SHARD_ID)

    def persist(self, writes: WriteSet, last: Version) -> None:
        if self._node is None:
            self._memory.apply(writes)
            return
        batch = self._node.new_batch()
        self._node.shard(SHARD_ID).stage_applied(writes, last.term, last.index, batch)
        self._node.write(batch, sync=False)

    def close(self) -> None:
        if self._node is not None:
            self._node.close()


@dataclass(slots=True)
class RunResult:
    entries: int
    apply_s: float
    persist_s: float
    cpu_s: float
    all_ok: bool
    profile_text: str = ""

    @property
    def entries_per_s(self) -> float:
        total = self.apply_s + self.persist_s
        return self.entries / total if total else 0.0


def run(
    store_kind: str,
    w: Workload,
    batches: int,
    *,
    warmup_batches: int = 2,
    profile: bool = False,
) -> RunResult:
    """Warm up (and, without acks, fill every session cache), then time `batches` batches."""
    with tempfile.TemporaryDirectory(prefix="kv-apply-") as tmp:
        target = Target(store_kind, Path(tmp))
        try:
            machine_ = ConfigStateMachine(
                target.store, history_limit=w.history_limit, max_session_results=w.max_session_results
            )
            feed = Feed(w)
            fill = 0 if w.ack else -(-w.sessions * w.max_session_results // w.batch)
            ok = _drive(machine_, target, (feed.batch() for _ in range(warmup_batches + fill)), None)
            profiler = cProfile.Profile() if profile else None
            timing = [0.0, 0.0]
            cpu0 = time.process_time()
            ok = _drive(machine_, target, (feed.batch() for _ in range(batches)), timing, profiler) and ok
            cpu_s = time.process_time() - cpu0
        finally:
            target.close()
    result = RunResult(batches * w.batch, timing[0], timing[1], cpu_s, ok)
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
        result.profile_text = out.getvalue()
    return result


def _drive(
    machine_: ConfigStateMachine,
    target: Target,
    batches: Iterator[Entries],
    timing: list[float] | None,
    profiler: cProfile.Profile | None = None,
) -> bool:
    """Apply and persist each batch; add the apply and persist seconds to `timing`; all ok?"""
    perf = time.perf_counter
    ok = True
    for entries in batches:
        if profiler is not None:
            profiler.enable()
        t0 = perf()
        writes, results = machine_.apply_batch(entries)
        t1 = perf()
        target.persist(writes, entries[-1][0])
        t2 = perf()
        if profiler is not None:
            profiler.disable()
        if timing is not None:
            timing[0] += t1 - t0
            timing[1] += t2 - t1
        ok = ok and all(r.ok for r in results)
    return ok


# ---------------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("--batches", type=int, default=40, help="measured batches per run (default 40)")
    p.add_argument("--warmup-batches", type=int, default=4, help="untimed batches first (default 4)")
    p.add_argument("--batch", type=int, default=256, help="entries per batch (default 256)")
    p.add_argument("--sessions", type=int, default=256)
    p.add_argument("--keys", type=int, default=1000)
    p.add_argument("--key-bytes", type=int, default=16)
    p.add_argument("--value-bytes", type=int, default=128)
    p.add_argument("--history-limit", type=int, default=10)
    p.add_argument(
        "--max-session-results",
        type=int,
        default=1024,
        help="the session cache cap; the noack runs first fill every cache to it (default 1024)",
    )
    p.add_argument("--stores", default=",".join(STORES), help="comma-separated: memory,leveldb")
    p.add_argument("--behaviours", default=",".join(BEHAVIOURS), help="comma-separated: ack,noack")
    p.add_argument("--profile", action="store_true", help="cProfile each measured window; print the top 25")
    args = p.parse_args(argv)
    args.stores = args.stores.split(",")
    args.behaviours = args.behaviours.split(",")
    if not set(args.stores) <= set(STORES) or not set(args.behaviours) <= set(BEHAVIOURS):
        p.error(f"--stores from {STORES}, --behaviours from {BEHAVIOURS}")
    if min(args.batches, args.batch, args.sessions, args.keys, args.max_session_results) < 1:
        p.error("--batches, --batch, --sessions, --keys and --max-session-results must be >= 1")
    if args.key_bytes < 2 or args.value_bytes < 0:
        p.error("--key-bytes must be >= 2 and --value-bytes >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    wall0 = time.perf_counter()
    out: dict[str, Value] = {}
    ok = True
    for behaviour in args.behaviours:
        w = Workload(
            sessions=args.sessions,
            keys=args.keys,
            key_bytes=args.key_bytes,
            value_bytes=args.value_bytes,
            batch=args.batch,
            ack=behaviour == "ack",
            history_limit=args.history_limit,
            max_session_results=args.max_session_results,
        )
        for store_kind in args.stores:
            r = run(store_kind, w, args.batches, warmup_batches=args.warmup_batches, profile=args.profile)
            ok = ok and r.all_ok and r.entries > 0
            name = f"{store_kind}_{behaviour}"
            section: dict[str, Value] = {
                f"{name}_entries_per_s": round(r.entries_per_s),
                f"{name}_apply_us_per_entry": round(r.apply_s / r.entries * 1e6, 2),
                f"{name}_persist_us_per_entry": round(r.persist_s / r.entries * 1e6, 2),
                f"{name}_cpu_s": round(r.cpu_s, 3),
                f"{name}_entries": r.entries,
            }
            print_section(f"{store_kind}, clients {behaviour}: batches of {args.batch} puts", section)
            if args.profile:
                print(r.profile_text.rstrip())
            out.update(section)
    headline = "leveldb_ack_entries_per_s"
    out["entries_per_s"] = out.get(headline, next((v for k, v in out.items() if k.endswith("_s")), 0))
    out.update(
        batch_entries=args.batch,
        sessions=args.sessions,
        keys=args.keys,
        key_bytes=args.key_bytes,
        value_bytes=args.value_bytes,
        max_session_results=args.max_session_results,
        history_limit=args.history_limit,
        peak_rss_mib=round(peak_rss_bytes() / MIB, 1),
        total_wall_s=round(time.perf_counter() - wall0, 3),
    )
    out.update(machine())
    out["ok"] = ok
    print_section("run", {k: out[k] for k in ("entries_per_s", "peak_rss_mib", "total_wall_s", "ok")})
    if args.json:
        print_json(out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
