"""Many seeds at once, on every core: what the test tiers and `run --seeds --jobs` share.

Seeds are independent and each run is deterministic, so running chunks of
seeds in worker processes changes nothing but the wall time. Workers are
spawned (not forked: a forked pytest process drags its whole state along)
and always shut down by `close()` (or the `with` block).

`CONFMAN_SIM_WORKERS` overrides the number of workers (default: one per
core); with one worker, chunks run in this process, lazily, when their
result is asked for.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from types import TracebackType

from tests.sim.engine import run_seed
from tests.sim.scenario import faults_from_names


@dataclass(frozen=True, slots=True)
class SeedReport:
    seed: int
    steps_run: int
    profile: str
    failure: str | None  # the violation, with its replay command; None if every invariant held
    invariant: str | None


def run_chunk(
    seeds: list[int], steps: int | None = None, faults: tuple[str, ...] = (), stop_at_first: bool = False
) -> list[SeedReport]:
    """Run `seeds` in order; `stop_at_first` ends at the first violation (a search, not a sweep)."""
    switches = faults_from_names(faults)
    reports = []
    for seed in seeds:
        result = run_seed(seed, steps, switches)
        violation = result.violation
        reports.append(
            SeedReport(
                seed,
                result.steps_run,
                result.scenario.profile,
                None if violation is None else str(violation),
                None if violation is None else violation.invariant,
            )
        )
        if stop_at_first and violation is not None:
            break
    return reports


def default_workers() -> int:
    configured = os.environ.get("CONFMAN_SIM_WORKERS", "")
    if configured:
        return max(1, int(configured))
    return os.cpu_count() or 1


ChunkRunner = Callable[[list[int], int | None, tuple[str, ...]], list[SeedReport]]


class Batch:
    """Chunks of seeds submitted by key, results fetched by key.

    `runner` runs one chunk (a module-level function, so workers can import it): the core
    simulator's `run_chunk` by default, the whole-daemon simulator's in tests/sim/daemon.
    """

    def __init__(self, workers: int | None = None, runner: ChunkRunner | None = None) -> None:
        self.runner: ChunkRunner = runner or run_chunk
        self.workers = workers or default_workers()
        self._pool: ProcessPoolExecutor | None = None
        if self.workers > 1:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        self._futures: dict[object, Future[list[SeedReport]]] = {}
        self._lazy: dict[object, tuple[list[int], int | None, tuple[str, ...]]] = {}

    def submit(
        self, key: object, seeds: list[int], steps: int | None = None, faults: tuple[str, ...] = ()
    ) -> None:
        if self._pool is None:
            self._lazy[key] = (seeds, steps, faults)
        else:
            self._futures[key] = self._pool.submit(self.runner, seeds, steps, faults)

    def result(self, key: object) -> list[SeedReport]:
        if self._pool is None:
            return self.runner(*self._lazy.pop(key))
        return self._futures.pop(key).result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Batch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
