"""The Raft core benchmark still runs, commits, and ends with every replica agreeing.

Very short runs (fractions of a second, a few shards): this checks that the
benchmark works and its JSON line stays parseable, not how fast anything is.
"""

from __future__ import annotations

import json

import pytest

from bench.raft_core import Cluster, main, run_idle, run_throughput


def test_throughput_commits_and_the_replicas_agree() -> None:
    result = run_throughput(seconds=0.2, warmup_seconds=0.05, batch=100, compact_entries=500)
    assert result.committed_entries > 0
    assert result.committed_entries_per_s > 0
    assert result.replicas_agree
    assert len(set(result.applied_entries)) == 1
    assert result.applied_entries[0] >= result.committed_entries


def test_idle_shards_keep_their_leaders() -> None:
    result = run_idle(shards=10, ticks=20)
    assert result.replicas == 30
    assert result.leader_changes == 0
    assert result.idle_us_per_shard_tick > result.pump_us_per_shard_tick > 0
    assert result.tick_only_us_per_replica > 0
    assert result.readies_per_shard_tick > 0


def test_agreement_check_catches_a_replica_that_applied_less() -> None:
    cluster = Cluster.build(shard=0, seed=1)
    leader = cluster.elect()
    leader.propose_batch([b"x"] * 10)
    cluster.pump()
    assert cluster.agree()
    cluster.applied_entries[1] -= 1
    assert not cluster.agree()


def test_json_line_is_last_and_parses(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--json", "--seconds", "0.2", "--warmup-seconds", "0.05", "--batch", "100"]
    assert main([*argv, "--shards", "10", "--idle-ticks", "5"]) == 0
    last = capsys.readouterr().out.rstrip("\n").splitlines()[-1]
    report = json.loads(last)
    assert report["ok"] is True
    assert report["replicas_agree"] is True
    assert report["committed_entries_per_s"] > 0
    assert report["committed_entries"] > 0
    assert report["batch_entries"] == 100
    assert report["entry_bytes"] == 100
    assert report["idle_replicas"] == 30
    for key in ("idle_us_per_shard_tick", "tick_only_us_per_replica", "rss_mib", "cpu_s", "wall_s"):
        assert report[key] > 0, key
