"""The state machine apply benchmark still runs, every put answers ok, and its JSON line parses.

Tiny runs (a few batches, small caches): this checks that the benchmark works, not its speed.
"""

from __future__ import annotations

import json

import pytest

from bench.kv_apply import Workload, main, run


@pytest.mark.parametrize("store", ["memory", "leveldb"])
@pytest.mark.parametrize("ack", [True, False])
def test_a_short_run_applies_every_entry_ok(store: str, ack: bool) -> None:
    w = Workload(sessions=8, keys=20, batch=16, ack=ack, max_session_results=4)
    result = run(store, w, batches=3, warmup_batches=1)
    assert result.all_ok
    assert result.entries == 48
    assert result.entries_per_s > 0


def test_json_line_is_last_and_parses(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--json", "--batches", "2", "--batch", "16", "--sessions", "8", "--max-session-results", "4"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out.rstrip("\n").splitlines()[-1])
    assert report["ok"] is True
    assert report["entries_per_s"] == report["leveldb_ack_entries_per_s"] > 0
    for key in ("memory_ack", "memory_noack", "leveldb_noack"):
        assert report[f"{key}_entries_per_s"] > 0, key
