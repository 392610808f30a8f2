"""Run or replay simulation seeds: `python -m tests.sim.run --seed 123 [-v]`.

`--seed N` runs one seed (the command every failure prints); `--seeds N`
runs seeds `--start .. --start+N-1` (on `--jobs` processes). `--faults a,b`
turns on fault switches, the driver's (confmand/server/faults.py) or the Raft
core's (confmand/raft/config.py). `--verbose`
prints the scenario, the trace of faults and the stats. Exit code 1 if any
seed broke a promise.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from confmand.server.faults import DriverFaults
from tests.sim.engine import RunResult, run_seed


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.sim.run", description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--seed", type=int, help="run (replay) this one seed")
    which.add_argument("--seeds", type=int, metavar="N", help="run N seeds from --start")
    parser.add_argument("--start", type=int, default=0, help="first seed for --seeds (default 0)")
    parser.add_argument("--duration", type=float, default=None, help="override the faulty part's seconds")
    parser.add_argument(
        "--faults",
        default="",
        help=f"fault switches: {', '.join(DriverFaults.names() + DriverFaults.raft_names())}",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="print the scenario, trace and stats")
    parser.add_argument("--node-log", action="store_true", help="show the nodes' own log lines")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes for --seeds")
    return parser.parse_args(argv)


def _one(seed: int, faults: str, duration: float | None) -> tuple[int, str | None, float]:
    logging.disable(logging.CRITICAL)
    began = time.perf_counter()
    result = run_seed(seed, DriverFaults.parse(faults), duration)
    return seed, None if result.ok else str(result.violation), time.perf_counter() - began


def _report(result: RunResult, verbose: bool, seconds: float) -> None:
    if verbose:
        print("\n".join(result.trace))
        print("stats: " + " ".join(f"{k}={v}" for k, v in sorted(result.stats.items())))
    status = "ok" if result.ok else "VIOLATION"
    print(f"seed {result.scenario.seed}: {status} ({result.sim_s:.1f}s simulated, {seconds:.2f}s)")
    if result.violation is not None:
        print(str(result.violation))


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    # The nodes log what a daemon would (full disks, refused clock stamps): shown only when asked.
    logging.basicConfig(level=logging.WARNING if args.node_log else logging.CRITICAL)
    faults = DriverFaults.parse(args.faults)
    if args.seed is not None:
        began = time.perf_counter()
        result = run_seed(args.seed, faults, args.duration)
        _report(result, args.verbose, time.perf_counter() - began)
        return 0 if result.ok else 1
    seeds = range(args.start, args.start + args.seeds)
    failed = []
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for seed, failure, seconds in pool.map(
            _one, seeds, [args.faults] * len(seeds), [args.duration] * len(seeds)
        ):
            print(f"seed {seed}: {'ok' if failure is None else 'VIOLATION'} ({seconds:.2f}s)", flush=True)
            if failure is not None:
                print(failure, flush=True)
                failed.append(seed)
    print(f"{len(seeds) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
