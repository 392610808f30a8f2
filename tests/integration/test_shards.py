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
        status = wait_until(lambda: _all_led_status(cluster.status(2)), 15.0, "a leader for every shard")
        # The node that leads the most: of 17 shards on 3 nodes, at least 6.
        victim = max(cluster.node_ids, key=lambda n: len(_led_by(status, n)))
        victim_led = _led_by(status, victim)
        watcher = next(n for n in cluster.node_ids if n != victim)

        cluster.kill(victim)
        killed_at = time.monotonic()

        def moved() -> bool:
            now = cluster.status(watcher, 0.3)
            if now is None:
                return False
            leaders = _leaders(now)
            return all(leaders[s] not in (None, victim) for s in victim_led)

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


def _all_led_status(status: Reply | None) -> Reply | None:
    return status if status is not None and None not in _leaders(status).values() else None


def _led_by(status: Reply | None, node: int) -> list[int]:
    if status is None:
        return []
    return [s for s, leader in _leaders(status).items() if leader == node]
