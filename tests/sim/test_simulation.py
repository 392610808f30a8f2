"""The seeded simulation tiers: 400 fixed seeds on every `./dev test`, a long soak on `./dev soak`.

Each fast case runs a fixed chunk of 10 seeds (mixed 3- and 5-replica
scenarios of 1500-3000 steps each, every profile), so a failure names its
seeds and prints the command that replays each one. The chunks run in worker
processes (one per core, see batch.py) as soon as the module starts; each
case then waits for its own chunk.

The soak runs `CONFMAN_SIM_SEEDS` seeds (default 10000) from
`CONFMAN_SIM_SEED_START` (default 1000000: never the fast tier's seeds),
with `CONFMAN_SIM_STEPS` overriding every scenario's step count.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.sim.batch import Batch, SeedReport
from tests.sim.engine import Scenario, run_seed
from tests.sim.scenario import PROFILES

pytestmark = pytest.mark.sim

ROOT = Path(__file__).resolve().parents[2]

CHUNK_SEEDS = 10
FAST_SEEDS = 400
CHUNK_STARTS = list(range(0, FAST_SEEDS, CHUNK_SEEDS))
SOAK_CHUNK_SEEDS = 50


def _failures(reports: list[SeedReport]) -> list[str]:
    return [f"seed {r.seed} ({r.profile}): {r.failure}" for r in reports if r.failure is not None]


@pytest.fixture(scope="module")
def fast_tier(request: pytest.FixtureRequest) -> Iterator[Batch]:
    """Submit every selected chunk at once, so that all cores work while the cases wait in turn."""
    selected = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and getattr(item, "module", None) is request.module:
            first = callspec.params.get("first_seed")
            if first is not None:
                selected.append(first)
    with Batch() as batch:
        for first in selected:
            batch.submit(first, list(range(first, first + CHUNK_SEEDS)))
        yield batch


@pytest.mark.parametrize("first_seed", CHUNK_STARTS, ids=lambda s: f"seeds{s}-{s + CHUNK_SEEDS - 1}")
def test_every_invariant_holds(fast_tier: Batch, first_seed: int) -> None:
    reports = fast_tier.result(first_seed)
    assert [r.seed for r in reports] == list(range(first_seed, first_seed + CHUNK_SEEDS))
    failures = _failures(reports)
    assert not failures, "\n\n".join(failures)


def test_the_fast_tier_covers_every_profile_and_both_cluster_sizes() -> None:
    scenarios = [Scenario.from_seed(seed) for seed in range(FAST_SEEDS)]
    assert {s.profile for s in scenarios} == {name for name, _ in PROFILES}
    assert {s.node_count for s in scenarios} == {3, 5}
    assert min(s.steps for s in scenarios) >= 1000


def test_one_seed_replays_bit_for_bit() -> None:
    """Same seed, same history: the traces, the stats and the outcome are identical."""
    seed = next(s for s in range(100) if Scenario.from_seed(s).profile == "membership")
    first, second = run_seed(seed, trace=True), run_seed(seed, trace=True)
    assert first.trace is not None
    assert len(first.trace) > 20
    assert first.trace == second.trace
    assert first.fingerprint() == second.fingerprint()
    assert first.stats["msg_sent"] > 1000


def test_a_replay_does_not_depend_on_the_hash_seed() -> None:
    """Two processes with different PYTHONHASHSEED print the same trace: no set or dict order leaks in."""
    outputs = []
    for hash_seed in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-m", "tests.sim.run", "--seed", "11", "--verbose"],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        # The last line carries the wall time; everything before it is the history.
        outputs.append(done.stdout.splitlines()[:-1])
    assert len(outputs[0]) > 20
    assert outputs[0] == outputs[1]


def test_a_steps_override_changes_only_the_length() -> None:
    drawn = Scenario.from_seed(7)
    shorter = Scenario.from_seed(7, steps=300)
    assert shorter.steps == 300
    assert shorter.steps_override == 300
    starts = [p.start_step for p in drawn.partitions if p.start_step < 300]
    assert [p.start_step for p in shorter.partitions] == starts
    same = replace(shorter, steps=drawn.steps, partitions=drawn.partitions, steps_override=None)
    assert same == drawn


@pytest.mark.slow
def test_soak() -> None:
    count = int(os.environ.get("CONFMAN_SIM_SEEDS", "10000"))
    start = int(os.environ.get("CONFMAN_SIM_SEED_START", "1000000"))
    steps_env = os.environ.get("CONFMAN_SIM_STEPS", "")
    steps = int(steps_env) if steps_env else None
    print(f"soak: seeds {start}..{start + count - 1}" + (f", {steps} steps each" if steps else ""))
    failures: list[str] = []
    invariants: Counter[str] = Counter()
    with Batch() as batch:
        starts = list(range(start, start + count, SOAK_CHUNK_SEEDS))
        for first in starts:
            batch.submit(first, list(range(first, min(first + SOAK_CHUNK_SEEDS, start + count))), steps)
        for first in starts:
            for report in batch.result(first):
                if report.failure is not None:
                    failures.append(f"seed {report.seed} ({report.profile}): {report.failure}")
                    invariants[report.invariant or "?"] += 1
    summary = f"{len(failures)} of {count} seeds broke an invariant: {dict(invariants)}"
    assert not failures, summary + "\n\n" + "\n\n".join(failures[:20])
