"""Run or replay simulation seeds: `python -m tests.sim.run --seed 123 [--faults a,b] [--verbose]`.

`--seed N` runs one seed (the command every failure prints); `--seeds N` runs
seeds `--start .. --start+N-1`. `--verbose` prints the scenario's one-line
summary first, then the trace of events, then the stats. Exit code 1 if any
seed broke an invariant.
"""

from __future__ import annotations

import argparse
import sys
import time

from tests.sim.batch import Batch
from tests.sim.engine import RunResult, run_seed
from tests.sim.scenario import FAULT_NAMES, faults_from_names


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.sim.run", description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--seed", type=int, help="run (replay) this one seed")
    which.add_argument("--seeds", type=int, metavar="N", help="run N seeds from --start")
    parser.add_argument("--start", type=int, default=0, help="first seed for --seeds (default 0)")
    parser.add_argument("--steps", type=int, default=None, help="override the scenario's step count")
    parser.add_argument(
        "--faults", default="", help=f"comma-separated fault switches to turn on: {', '.join(FAULT_NAMES)}"
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="print the scenario, trace and stats")
    parser.add_argument(
        "--jobs", type=int, default=1, help="worker processes for --seeds (no trace); default 1"
    )
    return parser.parse_args(argv)


def _report(result: RunResult, verbose: bool, seconds: float) -> None:
    scenario = result.scenario
    if verbose:
        for line in result.trace or [scenario.summary()]:
            print(line)
        print("stats: " + " ".join(f"{k}={v}" for k, v in result.stats.items()))
    status = "ok" if result.ok else "VIOLATION"
    print(f"seed {scenario.seed}: {status} ({result.steps_run} steps, {seconds:.2f}s)")
    if result.violation is not None:
        print(str(result.violation))


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    names = tuple(name for name in args.faults.split(",") if name)
    faults = faults_from_names(names)
    seeds = [args.seed] if args.seed is not None else list(range(args.start, args.start + args.seeds))
    if args.jobs > 1 and len(seeds) > 1:
        return _run_parallel(seeds, args.steps, names, args.jobs)
    failed = []
    for seed in seeds:
        began = time.perf_counter()
        result = run_seed(seed, args.steps, faults, trace=args.verbose)
        _report(result, args.verbose, time.perf_counter() - began)
        if not result.ok:
            failed.append(seed)
    return _summary(len(seeds), failed)


def _run_parallel(seeds: list[int], steps: int | None, faults: tuple[str, ...], jobs: int) -> int:
    chunk = 20
    failed = []
    with Batch(jobs) as batch:
        starts = range(0, len(seeds), chunk)
        for start in starts:
            batch.submit(start, seeds[start : start + chunk], steps, faults)
        for start in starts:
            for report in batch.result(start):
                print(f"seed {report.seed}: {'ok' if report.failure is None else 'VIOLATION'}", flush=True)
                if report.failure is not None:
                    print(report.failure, flush=True)
                    failed.append(report.seed)
    return _summary(len(seeds), failed)


def _summary(count: int, failed: list[int]) -> int:
    if count > 1:
        print(f"{count - len(failed)}/{count} seeds ok" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
