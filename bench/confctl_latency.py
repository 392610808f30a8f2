"""confctl's wall time per call, as a person at a shell sees it: process start to exit.

What it does:

- starts a throw-away 3-node confmand cluster on free loopback ports
  (`bench._cluster.BenchCluster`, stopped by PID at the end, always) unless
  `--endpoints` names a running one, and waits for a leader;
- runs `confctl version`, `confctl get KEY` and `confctl put KEY V` as
  subprocesses, `--runs` times each, interleaved round by round (so a noisy
  neighbour on a shared machine hits all three alike), after one unmeasured
  round that warms the page cache and writes the .pyc files;
- runs `confctl get KEY` with a dead endpoint at the head of the list
  (`--dead-runs` times): what a node that is down costs every call;
- measures `import confctl.cli` (`python -X importtime`, the cumulative time of
  that module) and a bare `python -c pass`, the floor under every call.

Each command runs with `$XDG_CACHE_HOME` pointing into a temp dir, so the
endpoint cache confctl keeps (docs in README.md) starts empty and the user's
own is left alone, and without `$PYTHONDONTWRITEBYTECODE`, as in a user's
shell: Python then caches the compiled modules (`__pycache__`, ignored by git)
in the warm-up round. A sandbox that sets it, in a checkout with no
`__pycache__` yet, would otherwise add compiling every module to every number
(`--no-bytecode-cache` sets it: that cost shows only where no .pyc exists yet,
as Python still reads those already written). `--json` prints one JSON object
as the last line, every key ending in its unit (`version_p50_ms`, `get_p99_ms`,
`import_ms`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/confctl_latency.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._cluster import BenchCluster, BenchError, signals_raise
from bench._report import Value, machine, print_json, print_section
from bench._stats import latency_summary_ms
from confmand.local_cluster import free_ports

KEY = "bench/confctl-latency"
COMMAND_TIMEOUT_S = 60.0  # a guard against a hung call, not a measurement


def default_confctl() -> str:
    """The console script installed beside this interpreter (what `.venv/bin/confctl` is), else PATH's."""
    beside = Path(sys.executable).with_name("confctl")
    if beside.exists():
        return str(beside)
    found = shutil.which("confctl")
    if found is None:
        raise BenchError("no confctl script beside the interpreter or on PATH: pass --confctl PATH")
    return found


def timed(argv: Sequence[str], env: dict[str, str]) -> float:
    """Wall seconds from spawning `argv` to its exit; a non-zero exit is an error, not a sample."""
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, timeout=COMMAND_TIMEOUT_S, check=False)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise BenchError(
            f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode(errors='replace').strip()}"
        )
    return elapsed


def import_ms(env: dict[str, str]) -> float:
    """`import confctl.cli` in a fresh interpreter: the cumulative µs `-X importtime` gives that module."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import confctl.cli"],
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=True,
    )
    for line in done.stderr.splitlines():
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2] == "confctl.cli":
            return int(parts[1]) / 1000
    raise BenchError(f"no confctl.cli line in -X importtime's output:\n{done.stderr[-2000:]}")


def measure(args: argparse.Namespace, endpoints: str, cache_dir: Path) -> dict[str, Value]:
    confctl = args.confctl or default_confctl()
    env = {**os.environ, "CONFMAN_ENDPOINTS": endpoints, "XDG_CACHE_HOME": str(cache_dir)}
    if args.no_bytecode_cache:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    commands = {
        "version": [confctl, "version"],
        "get": [confctl, "get", KEY],
        "put": [confctl, "put", KEY, "v"],
    }
    timed(commands["put"], env)  # the key must exist before the first get
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for round_ in range(args.runs + 1):
        for name, argv in commands.items():
            elapsed = timed(argv, env)
            if round_ > 0:  # round 0 warms the page cache and the .pyc files
                samples[name].append(elapsed)
    out: dict[str, Value] = {}
    for name, values in samples.items():
        summary = latency_summary_ms(values)
        print_section(f"confctl {name}: {args.runs} runs", summary)
        out.update({f"{name}_p50_ms": summary["p50_ms"], f"{name}_p99_ms": summary["p99_ms"]})
    if args.dead_runs > 0:
        dead = f"tcp://127.0.0.1:{free_ports(1)[0]}"  # nothing listens there
        dead_env = {**env, "CONFMAN_ENDPOINTS": f"{dead},{endpoints}"}
        dead_cache = Path(tempfile.mkdtemp(prefix="cache-", dir=cache_dir))
        dead_env["XDG_CACHE_HOME"] = str(dead_cache)
        first = timed(commands["get"], dead_env)  # the first call finds the dead endpoint
        values = [timed(commands["get"], dead_env) for _ in range(args.dead_runs)]
        summary = latency_summary_ms(values)
        title = f"confctl get, a dead endpoint first: first call {first * 1000:.0f} ms, then"
        print_section(f"{title} {args.dead_runs} runs", summary)
        out.update(
            {
                "get_dead_first_first_call_ms": round(first * 1000, 3),
                "get_dead_first_p50_ms": summary["p50_ms"],
                "get_dead_first_p99_ms": summary["p99_ms"],
            }
        )
    imports = [import_ms(env) for _ in range(args.import_runs)]
    startup = [timed([sys.executable, "-c", "pass"], env) * 1000 for _ in range(args.import_runs)]
    out["import_ms"] = round(statistics.median(imports), 3)
    out["python_startup_ms"] = round(statistics.median(startup), 3)
    print_section(
        f"medians of {args.import_runs} runs",
        {"import_ms": out["import_ms"], "python_startup_ms": out["python_startup_ms"]},
    )
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("--runs", type=int, default=30, help="measured runs of each command (default 30)")
    p.add_argument(
        "--dead-runs", type=int, default=10, help="runs of get, a dead endpoint first (default 10; 0: none)"
    )
    p.add_argument("--import-runs", type=int, default=10, help="runs of the import measure (default 10)")
    p.add_argument("--confctl", default=None, help="the confctl to run (default: the one beside python)")
    p.add_argument(
        "--endpoints", default=None, help="a running cluster's client addresses (default: start one)"
    )
    p.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="run confctl with PYTHONDONTWRITEBYTECODE=1: modules with no .pyc yet compile on every call",
    )
    p.add_argument("--no-fsync", action="store_true", help="storage.fsync = false on every node")
    p.add_argument("--base-dir", type=Path, default=None, help="where the temp dir goes (default: $TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep the cluster's temp dir (configs, data, logs)")
    args = p.parse_args(argv)
    if args.runs < 1 or args.import_runs < 1 or args.dead_runs < 0:
        p.error("--runs and --import-runs must be >= 1, --dead-runs >= 0")
    return args


def run(args: argparse.Namespace, cache_dir: Path) -> dict[str, Value]:
    if args.endpoints:
        return {"nodes_started": 0, **measure(args, args.endpoints, cache_dir)}
    with BenchCluster(fsync=not args.no_fsync, base_dir=args.base_dir, keep=args.keep) as cluster:
        cluster.wait_for_leader()
        endpoints = ",".join(cluster.addresses[n] for n in sorted(cluster.addresses))
        out = measure(args, endpoints, cache_dir)
        cluster.check_alive()
    return {"nodes_started": len(cluster.addresses), **out}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings: dict[str, Value] = {
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),  # others sharing the machine skew numbers
        "runs": args.runs,
        "bytecode_cache": not args.no_bytecode_cache,
        "fsync": not args.no_fsync,
        **machine(),
    }
    print_section("settings", settings)
    cache_dir = Path(tempfile.mkdtemp(prefix="confctl-latency-cache-", dir=args.base_dir))
    try:
        with signals_raise():
            out = run(args, cache_dir)
    except BenchError as exc:
        print(f"confctl_latency: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("confctl_latency: interrupted; every node was stopped", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    if args.json:
        print_json({**settings, **out})
    return 0


if __name__ == "__main__":
    sys.exit(main())
