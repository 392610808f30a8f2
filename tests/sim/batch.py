"""Many seeds at once, on every core: what the test tiers share.

Seeds are independent and each run is deterministic, so running chunks of
seeds in worker processes changes nothing but the wall time. Workers are
spawned (not forked: a forked pytest process drags its whole state along)
and always shut down by `close()` (or the `with` block).

`CONFMAN_SIM_WORKERS` overrides the number of workers (default: one per
core); with one worker, chunks run in this process, lazily, when their
result is asked for.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from types import TracebackType

from confmand.server.faults import DriverFaults
from tests.sim.engine import run_seed


@dataclass(frozen=True, slots=True)
class SeedReport:
    seed: int
    turns: int
    profile: str
    failure: str | None  # the broken promise, with its replay command; None if every one held
    invariant: str | None


def run_chunk(
    seeds: list[int], duration_s: int | None = None, faults: tuple[str, ...] = (), stop_at_first: bool = False
) -> list[SeedReport]:
    """Run `seeds` in order; `stop_at_first` ends at the first broken promise (a search, not a sweep).

    The nodes' own log lines are silenced: the trace says what happened.
    """
    logging.disable(logging.CRITICAL)
    switches = DriverFaults.parse(",".join(faults))
    reports = []
    for seed in seeds:
        result = run_seed(seed, switches, None if duration_s is None else float(duration_s))
        violation = result.violation
        reports.append(
            SeedReport(
                seed,
                result.stats.get("turns", 0),
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


class Batch:
    """Chunks of seeds (`run_chunk`) submitted by key, results fetched by key."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or default_workers()
        self._pool: ProcessPoolExecutor | None = None
        if self.workers > 1:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        self._futures: dict[object, Future[list[SeedReport]]] = {}
        self._lazy: dict[object, tuple[list[int], int | None, tuple[str, ...], bool]] = {}

    def submit(
        self,
        key: object,
        seeds: list[int],
        duration_s: int | None = None,
        faults: tuple[str, ...] = (),
        stop_at_first: bool = False,
    ) -> None:
        if self._pool is None:
            self._lazy[key] = (seeds, duration_s, faults, stop_at_first)
        else:
            self._futures[key] = self._pool.submit(run_chunk, seeds, duration_s, faults, stop_at_first)

    def result(self, key: object) -> list[SeedReport]:
        if self._pool is None:
            return run_chunk(*self._lazy.pop(key))
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
