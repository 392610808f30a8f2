"""The in-process driver benchmark runs real nodes to acknowledged writes and reports per-write costs.

Tiny runs (a few hundred writes, 1 and 2 shards): this checks that the benchmark works and its
JSON line parses, not how fast anything is.
"""

from __future__ import annotations

import json

import pytest

from bench.turn_cost import main

TINY = ["--shards", "1,2", "--rounds", "1", "--clients", "16", "--keys", "64", "--namespaces", "8"]


def test_every_write_is_acknowledged_and_the_json_line_is_last(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*TINY, "--writes", "300", "--warmup", "50", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.rstrip("\n").splitlines()[-1])
    for shards in (1, 2):
        assert report[f"shards_{shards}_writes"] >= 300
        assert report[f"shards_{shards}_errors"] == 0
        assert report[f"shards_{shards}_cpu_us_per_write"] > 0
        assert report[f"shards_{shards}_leader_entries_per_1000_writes"] > 0
        assert report[f"shards_{shards}_peer_batches_per_1000_writes"] > 0
    assert report["cpu_ratio_2_to_1"] > 0


def test_profile_compares_each_function_per_write(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*TINY, "--writes", "100", "--warmup", "20", "--profile", "5"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("own time per write") :].splitlines()
    assert "1 shards / 2 shards" in table[0]
    assert len(table) == 6  # the title and the 5 functions asked for
