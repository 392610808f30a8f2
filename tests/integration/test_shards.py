"""Real processes hosting many shards: every shard elects, a killed node's shards move on quickly."""

from __future__ import annotations

import time
from pathlib import Path

from confmand.protocol.shardmap import ShardMap
from tests.integration.harness import ClusterOptions, Reply, error_code, ok, running, wait_until

SIXTEEN = {"partitions": 64, "data_shards": 16}


def _leaders(status: Reply) -> dict[int, int | None]:
    return {line["shard_id"]: line["leader_id"] for line in status["shards"]}


def test_every_shard_of_three_nodes_elects_and_leadership_is_spread(tmp_path: Path) -> None:
    with running(tmp_path, ClusterOptions(cluster=SIXTEEN)) as cluster:
        cluster.boot()

        def all_led() -> dict[int, int | None] | None:
            status = cluster.status(1)
            leaders = None if status is None else _leaders(status)
            return leaders if leaders is not None and None not in leaders.values() else None

        leaders = wait_until(all_led, 15.0, "a leader for each of the 17 shards")

    assert sorted(leaders) == list(range(17))
    assert len(set(leaders.values())) > 1  # not every shard led by one node


def test_a_node_killed_while_it_leads_several_shards_hands_each_to_a_new_leader_within_2s(
    tmp_path: Path,
) -> None:
    with running(tmp_path, ClusterOptions(cluster=SIXTEEN)) as cluster:
        cluster.boot()
        wait_until(lambda: _all_led(cluster.status(2)), 15.0, "a leader for every shard")
        wait_until(lambda: _led_by(cluster.status(2), 1), 15.0, "node 1 leading some shard")
        victim_led = _led_by(cluster.status(2), 1)

        cluster.kill(1)
        killed_at = time.monotonic()

        def moved() -> bool:
            status = cluster.status(2, 0.3)
            if status is None:
                return False
            leaders = _leaders(status)
            return all(leaders[s] not in (None, 1) for s in victim_led)

        wait_until(moved, 10.0, f"new leaders for shards {victim_led}")
        took_s = time.monotonic() - killed_at

    assert len(victim_led) >= 2
    assert took_s < 2.0, f"{took_s:.2f} s for shards {victim_led}"


def test_a_node_answers_wrong_shard_for_a_shard_it_does_not_hold_and_the_map_says_who_does(
    tmp_path: Path,
) -> None:
    options = ClusterOptions(size=5, cluster={**SIXTEEN, "replication": 3})
    with running(tmp_path, options) as cluster:
        cluster.boot()
        shard_map = ShardMap.from_wire(ok(cluster.call(1, {"op": "shard_map"})))
        absent = next(s for s in shard_map.data_shards if 1 not in shard_map.replicas[s])
        namespace = next(f"ns{i}" for i in range(500) if shard_map.shard_of(f"ns{i}") == absent)
        holder = shard_map.replicas[absent][0]

        refused = cluster.call(1, {"op": "get", "key": f"{namespace}/k", "consistency": "stale"})
        served = cluster.call(holder, {"op": "get", "key": f"{namespace}/k", "consistency": "stale"})

    assert error_code(refused) == "WRONG_SHARD"
    assert refused is not None
    assert refused["error"]["shard"] == absent
    assert error_code(served) == "NOT_FOUND"


def _all_led(status: Reply | None) -> bool:
    return status is not None and None not in _leaders(status).values()


def _led_by(status: Reply | None, node: int) -> list[int]:
    if status is None:
        return []
    return [s for s, leader in _leaders(status).items() if leader == node]
