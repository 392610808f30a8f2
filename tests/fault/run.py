"""The long fault run: `python -m tests.fault.run --time 600 --nemesis all` (or `./dev jepsen`).

Runs one seeded schedule of faults against real nodes while the four workloads record a
history, then writes a report folder (default `data/jepsen/<UTC time>-seed<N>/`):

- `report.md`: the verdicts, and per fault window the writes attempted and acknowledged,
  availability, and the time from the heal to the first acknowledged write;
- `history.jsonl`: every op (re-check it with `tests.fault.linearizability.check`);
- `timeline.png`: ops over time per client, fault windows shaded (needs matplotlib:
  `pip install -e '.[report]'`; without it the picture is skipped with a note).

Exit code 0 when every check passed, 1 on a violation or a node that exited by itself
(report.md shows its exit code and last log lines), 2 on bad arguments, 3 when the
linearizability checker hit its time limit on some key (no violation found, none ruled out).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tests.fault.lazymount import unavailable
from tests.fault.nemesis import NEMESES, POWER_NEMESES, NemesisError
from tests.fault.report import write_report
from tests.fault.runner import RunSettings, run

DEFAULT_OUT = Path("data/jepsen")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--time", type=float, default=60.0, help="seconds of faults and load (default 60)")
    p.add_argument(
        "--nemesis",
        default="all",
        help=(
            "comma-separated faults, 'power' (every power-loss fault) or 'all' "
            f"(known: {', '.join([*NEMESES, *POWER_NEMESES])})"
        ),
    )
    p.add_argument("--seed", type=int, default=None, help="the schedule's seed (default: from the clock)")
    p.add_argument("--nodes", type=int, default=3, choices=(3, 5), help="cluster size (default 3)")
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="where report folders go (default data/jepsen)"
    )
    return p.parse_args(argv)


def _nemeses(arg: str) -> tuple[str, ...]:
    if arg == "power":
        return tuple(POWER_NEMESES)
    if arg != "all":
        return tuple(n for n in arg.split(",") if n)
    reason = unavailable()
    if reason is not None:  # 'all' still runs every other fault; naming a power fault fails instead
        print(f"fault run: no power-loss faults: {reason}", file=sys.stderr)
        return tuple(NEMESES)
    return (*NEMESES, *POWER_NEMESES)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    nemeses = _nemeses(args.nemesis)
    unknown = [n for n in nemeses if n not in NEMESES and n not in POWER_NEMESES]
    if unknown or not nemeses or args.time <= 0:
        print(f"bad arguments: unknown nemeses {unknown} or --time <= 0", file=sys.stderr)
        return 2
    if any(n in POWER_NEMESES for n in nemeses) and unavailable() is not None:
        print(f"fault run: cannot run power-loss faults: {unavailable()}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else time.time_ns() % 1_000_000
    settings = RunSettings(seed=seed, duration_s=args.time, nemeses=nemeses, size=args.nodes)
    print(f"fault run: {settings.replay}", flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="confman-fault-") as work:
            result = run(settings, Path(work))
    except NemesisError as exc:
        print(f"fault run failed: {exc}", file=sys.stderr)
        return 2
    folder = args.out / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-seed{seed}"
    paths = write_report(result, folder)
    print(result.summary().splitlines()[0])
    for path in paths:
        print(f"  {path}")
    if not result.ok:
        print(result.summary(), file=sys.stderr)
        return 1
    return 3 if result.linearizability.verdict == "unknown" else 0


if __name__ == "__main__":
    sys.exit(main())
