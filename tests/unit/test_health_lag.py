"""A replica's apply lag counts from the shard's commit index, not from the log it happens to hold."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

from confmand.server.health import apply_lag
from confmand.server.replica import Replica


def replica_at(own_commit: int, leader_commit: int, applied: int) -> Replica:
    raft = SimpleNamespace(commit_index=own_commit, known_commit_index=max(own_commit, leader_commit))
    return cast(Replica, SimpleNamespace(raft=raft, applied=SimpleNamespace(index=applied)))


def test_a_restarted_replica_whose_log_trails_the_leaders_commit_lags_by_the_difference() -> None:
    # Its own commit index stops at its log's end (40), all applied; the leader committed 500.
    assert apply_lag(replica_at(own_commit=40, leader_commit=500, applied=40)) == 460


def test_a_replica_that_applied_all_the_shard_committed_does_not_lag() -> None:
    assert apply_lag(replica_at(own_commit=500, leader_commit=500, applied=500)) == 0
