"""The simulator must notice each known Raft bug in `FaultSwitches` within a fixed seed budget.

For each switch, seeds 0, 1, 2, ... (at most `SEED_BUDGET`) run with the switch
on until one breaks an invariant; the test records that seed and checks the
broken invariant is one the bug can break (not, say, a crash of the
simulator). Every scenario profile is drawn from the seed exactly as in the
plain tiers: nothing here aims a scenario at a switch.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.sim.batch import run_chunk

pytestmark = pytest.mark.sim

SEED_BUDGET = 200

# switch -> the invariants its bug may break first
EXPECTED = {
    "commit_old_term_by_counting": {
        "leader completeness",
        "committed prefix never changes",
        "no committed entry lost",
        "state-machine safety",
    },
    "vote_without_log_check": {
        "leader completeness",
        "committed prefix never changes",
        "no committed entry lost",
        "state-machine safety",
    },
    "vote_before_persist": {"election safety"},
    "apply_uncommitted": {"state-machine safety"},
    "read_index_without_heartbeat": {"linearizable reads"},
}


@pytest.mark.parametrize("switch", sorted(EXPECTED))
def test_the_simulator_catches_the_fault(switch: str, record_property: Callable[[str, object], None]) -> None:
    reports = run_chunk(list(range(SEED_BUDGET)), faults=(switch,), stop_at_first=True)
    caught = reports[-1]
    assert caught.failure is not None, f"{switch}: no violation in seeds 0..{SEED_BUDGET - 1}"
    record_property("caught_by_seed", caught.seed)
    print(f"{switch}: caught by seed {caught.seed} ({caught.profile}): {caught.invariant}")
    assert caught.invariant in EXPECTED[switch], caught.failure
    assert f"--seed {caught.seed} " in caught.failure
    assert f"--faults {switch}" in caught.failure
