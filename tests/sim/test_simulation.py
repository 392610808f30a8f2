"""The whole-daemon simulator's tiers: 240 fixed seeds on every `./dev test`, a soak on `./dev soak`.

Each seed runs 3 or 5 real `Node`s (driver, replicas, state machine, real
LevelDB code over the in-memory disk) with clients that use the real client
core, under one profile of faults (tests/sim/scenario.py). Each fast
case runs a chunk of 10 seeds in worker processes; a failure names the seed
and prints the command that replays it.

The soak runs `CONFMAN_SIM_SEEDS` seeds (default 10000) from
`CONFMAN_SIM_SEED_START` (default 1000000), the same variables as the core
simulator's soak, which `./dev soak` runs beside it.
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
from tests.sim.engine import run_seed
from tests.sim.scenario import PROFILES, Scenario

pytestmark = pytest.mark.sim

ROOT = Path(__file__).resolve().parents[2]

CHUNK_SEEDS = 10
FAST_SEEDS = 330
CHUNK_STARTS = list(range(0, FAST_SEEDS, CHUNK_SEEDS))
SOAK_CHUNK_SEEDS = 20


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
def test_every_promise_holds(fast_tier: Batch, first_seed: int) -> None:
    reports = fast_tier.result(first_seed)
    assert [r.seed for r in reports] == list(range(first_seed, first_seed + CHUNK_SEEDS))
    failures = _failures(reports)
    assert not failures, "\n\n".join(failures)


# Soak seeds that once broke a promise, replayed on every run: seed -> the bug it found.
REGRESSION_SEEDS = {
    1002911: "forward ids restarted at 1 with the node: a leader's late answer to a forward of the "
    "previous incarnation went to another client, which took it for its own",
}


@pytest.mark.parametrize("seed", sorted(REGRESSION_SEEDS))
def test_a_seed_that_found_a_bug_keeps_its_promises(seed: int) -> None:
    result = run_seed(seed)
    assert result.ok, f"{REGRESSION_SEEDS[seed]}:\n{result.violation}"


def test_the_fast_tier_covers_every_profile_and_both_cluster_sizes() -> None:
    scenarios = [Scenario.from_seed(seed) for seed in range(FAST_SEEDS)]
    assert {s.profile for s in scenarios} == set(PROFILES)
    assert {s.node_count for s in scenarios} == {3, 5}


def test_one_seed_replays_bit_for_bit() -> None:
    """Same seed, same run: the trace of faults, the stats and the whole client history."""
    seed = next(s for s in range(50) if Scenario.from_seed(s).profile == "mixed")
    first, second = run_seed(seed), run_seed(seed)
    assert first.ok, str(first.violation)
    assert len(first.trace) > 5
    assert first.trace == second.trace
    assert first.fingerprint() == second.fingerprint()
    assert first.history == second.history
    assert first.stats["ops_ok"] > 20
    assert first.stats["turns"] > 500


def test_a_run_exercises_the_driver_paths_it_is_there_for() -> None:
    """Across the first seeds of each profile (one round, more, up to three, only while a path is
    still missing): crashes mid-write and aimed ones, power loss, stalls on a full disk, pauses,
    partitions, membership changes, partition moves, placement, added shards, left replicas
    deleted, retries of unknown writes with the same seq, snapshots taken, and snapshots sent
    past the stored one and installed, a host back without its data volume, refused, a
    retired node taken out of the others' [[peers]] by SIGHUP, and a watch told changes, resumed
    at another node, and ended COMPACTED where no replica kept its changes, and leases granted,
    kept alive and seen to expire."""
    wanted = (
        "crash",
        "crash_in_write",
        "crash_after_log_switch",
        "crash_after_vote",
        "crash_after_first_commit",
        "crash_after_leader_write",
        "operator_add_learner",
        "operator_promote",
        "operator_remove",
        "operator_transfer",
        "operator_move",
        "partition_moved",
        "operator_place",
        "operator_add",
        "shard_added",
        "partition_in_added_shard",
        "added_shards_started",
        "preferred_transfers",
        "replicas_deleted",
        "retired",
        "peer_unlisted",
        "graceful_stop",
        "pause",
        "disk_full",
        "clock_step",
        "redrives",
        "backups",
        "watch_events",
        "watch_resumes",
        "watch_compacted",
        "leases_granted",
        "lease_keepalives",
        "leases_expired_seen",
        "peer_duplicated",
        "peer_dropped",
        "snapshots_taken",
        "snapshots_installed",
        "snapshots_made_past_stored",
        "unmounted",
        "lost_dir_refused",
        "peer_dir_refused",
    )
    stats: Counter[str] = Counter()
    seeds = 0
    for seed in range(3 * len(PROFILES)):
        if seed >= len(PROFILES) and all(stats[what] > 0 for what in wanted):
            break
        result = run_seed(seed)
        assert result.ok, str(result.violation)
        stats.update(result.stats)
        seeds = seed + 1
    for what in wanted:
        assert stats[what] > 0, f"no {what} in seeds 0..{seeds - 1}: {dict(stats)}"
    assert any(k.startswith("partition_") for k in stats)


def test_a_replay_does_not_depend_on_the_hash_seed() -> None:
    """Two processes with different PYTHONHASHSEED print the same trace: no set or dict order leaks in."""
    seed = next(s for s in range(50) if Scenario.from_seed(s).profile == "membership")
    outputs = []
    for hash_seed in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-m", "tests.sim.run", "--seed", str(seed), "--verbose"],
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


def test_a_duration_override_changes_only_the_length() -> None:
    drawn = Scenario.from_seed(7)
    shorter = Scenario.from_seed(7, duration_s=3.0)
    assert (shorter.duration_s, shorter.duration_override) == (3.0, 3.0)
    assert replace(shorter, duration_s=drawn.duration_s, duration_override=None) == drawn


@pytest.mark.slow
def test_soak() -> None:
    count = int(os.environ.get("CONFMAN_SIM_SEEDS", "10000"))
    start = int(os.environ.get("CONFMAN_SIM_SEED_START", "1000000"))
    duration = os.environ.get("CONFMAN_SIM_DURATION", "")
    print(f"soak: seeds {start}..{start + count - 1}" + (f", {duration}s each" if duration else ""))
    failures: list[str] = []
    promises: Counter[str] = Counter()
    with Batch() as batch:
        starts = list(range(start, start + count, SOAK_CHUNK_SEEDS))
        for first in starts:
            seeds = list(range(first, min(first + SOAK_CHUNK_SEEDS, start + count)))
            batch.submit(first, seeds, int(duration) if duration else None)
        for first in starts:
            for report in batch.result(first):
                if report.failure is not None:
                    failures.append(f"seed {report.seed} ({report.profile}): {report.failure}")
                    promises[report.invariant or "?"] += 1
    summary = f"{len(failures)} of {count} seeds broke a promise: {dict(promises)}"
    assert not failures, summary + "\n\n" + "\n\n".join(failures[:20])
