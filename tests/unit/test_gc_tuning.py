"""The daemon's collector settings (confmand/server/gc_tuning.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from confmand.server.gc_tuning import THRESHOLDS, tune_collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


@pytest.mark.usefixtures("restored_collector")
def test_tuning_runs_the_collector_rarely_and_freezes_what_exists_at_start() -> None:
    kept = [[i] for i in range(1000)]  # long-lived containers, as a recovered node holds

    tune_collector()

    assert gc.get_threshold() == THRESHOLDS
    assert THRESHOLDS[0] > 700, "young collections rarer than Python's default"
    assert gc.get_freeze_count() >= len(kept)
