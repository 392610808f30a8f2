"""Collecting a backup: the copies must agree with one shard map, or the round is asked again."""

from __future__ import annotations

from typing import Any

import pytest

from confmand.kv.harness import MemoryShard
from confmand.kv.snapshot import export_state
from confmand.protocol.backup_collect import collect
from confmand.protocol.backup_file import BackupError
from confmand.protocol.shardmap import initial_map

MAP = initial_map([1, 2, 3], data_shards=2, replication=3, partitions=4)  # shard 1: 0, 2; shard 2: 1, 3
STATE = export_state(MemoryShard().store)


def meta() -> dict[str, Any]:
    return {"state": STATE, "applied": "2:5", "map": MAP.to_wire()}


def data(owns: list[int], leaving: tuple[int, ...] = ()) -> dict[str, Any]:
    return {"state": STATE, "applied": "3:9", "owns": owns, "leaving": list(leaving), "initial": owns}


def asker(*answers: dict[int, dict[str, Any]]) -> tuple[Any, list[int]]:
    """An `ask` that answers round after round from `answers` (a round begins at the meta shard,
    the last round repeats); and the shards it was asked."""
    asked: list[int] = []

    def ask(shard: int) -> dict[str, Any]:
        asked.append(shard)
        round_ = min(asked.count(0), len(answers)) - 1
        return answers[round_][shard]

    return ask, asked


def test_copies_that_agree_with_the_map_make_the_backup_in_one_round() -> None:
    ask, asked = asker({0: meta(), 1: data([0, 2]), 2: data([1, 3])})

    backup = collect(ask, created_ms=1, confman_version="t")

    assert asked == [0, 1, 2]
    assert [(c.shard, c.owns) for c in backup.shards] == [(0, ()), (1, (0, 2)), (2, (1, 3))]


def test_a_partition_caught_on_its_way_out_asks_the_round_again() -> None:
    moving = {0: meta(), 1: data([0], leaving=(2,)), 2: data([1, 3])}
    ask, asked = asker(moving, {0: meta(), 1: data([0, 2]), 2: data([1, 3])})

    backup = collect(ask, created_ms=1, confman_version="t")

    assert asked == [0, 1, 0, 1, 2]
    assert backup.shards[1].owns == (0, 2)


def test_a_partition_in_two_shards_asks_the_round_again() -> None:
    ingested = {0: meta(), 1: data([0, 2]), 2: data([1, 2, 3])}
    ask, asked = asker(ingested, {0: meta(), 1: data([0, 2]), 2: data([1, 3])})

    collect(ask, created_ms=1, confman_version="t")

    assert asked == [0, 1, 2, 0, 1, 2]


def test_copies_that_never_agree_give_up_saying_a_move_is_running() -> None:
    ask, _ = asker({0: meta(), 1: data([0]), 2: data([1, 3])})

    with pytest.raises(BackupError, match=r"did not agree with one shard map in 3 tries .* move"):
        collect(ask, created_ms=1, confman_version="t", attempts=3)
