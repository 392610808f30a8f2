"""Real processes hosting many shards: every shard elects, a killed node's shards move on quickly."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from confctl.client import Client
from confmand.protocol.shardmap import META_SHARD, ShardMap, partition_of
from tests.integration.harness import ClusterOptions, Reply, error_code, ok, running, wait_until

SIXTEEN = {"partitions": 64, "data_shards": 16}


def _leaders(status: Reply) -> dict[int, int | None]:
    return {line["shard_id"]: line["leader_id"] for line in status["shards"]}


def test_every_shard_of_a_new_cluster_elects_and_leadership_goes_to_the_maps_preferred_leaders(
    tmp_path: Path,
) -> None:
    with running(tmp_path, ClusterOptions(cluster=SIXTEEN)) as cluster:
        cluster.boot()
        shard_map = ShardMap.from_wire(ok(cluster.call(1, {"op": "shard_map"})))
        preferred = {shard: replicas[0] for shard, replicas in shard_map.replicas.items()}

        def led_as_preferred() -> dict[int, int | None] | None:
            status = cluster.status(1)
            leaders = None if status is None else _leaders(status)
            return leaders if leaders == preferred else None

        # Whichever replica wins a shard's first election hands leadership to the preferred one.
        leaders = wait_until(led_as_preferred, 20.0, f"each of the 17 shards led by {preferred}")

    led = Counter(leaders.values())
    assert sorted(leaders) == list(range(17))
    assert max(led.values()) - min(led.values()) <= 1, f"leaders per node: {dict(led)}"


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


def test_a_partition_moved_under_write_load_loses_and_repeats_no_write(tmp_path: Path) -> None:
    with running(tmp_path, ClusterOptions(cluster=SIXTEEN)) as cluster:
        cluster.boot()
        endpoints = [cluster.client_address(n) for n in cluster.node_ids]
        with Client(endpoints, timeout_s=10.0) as client:
            first = client.shard_map().map
            source = first.shard_of("moving")
            target = next(s for s in first.data_shards if s != source)
            partition = partition_of("moving", first.partitions)
            written: list[tuple[float, float]] = []  # (start, took) of each acknowledged write
            for i in range(40):
                start = time.monotonic()
                client.put(f"moving/k{i % 4}", f"v{i}")
                written.append((start, time.monotonic() - start))

            started = client.move_partition(partition, target)
            moved_at = time.monotonic()
            for i in range(40, 200):
                start = time.monotonic()
                client.put(f"moving/k{i % 4}", f"v{i}")
                written.append((start, time.monotonic() - start))

            def everywhere_moved() -> bool:
                maps = [
                    ShardMap.from_wire(ok(cluster.call(n, {"op": "shard_map"}))) for n in cluster.node_ids
                ]
                return all(m.owners[partition] == target for m in maps)

            wait_until(everywhere_moved, 10.0, f"every node's map to give partition {partition} to {target}")
            records = {k: client.get(f"moving/k{k}") for k in range(4)}
            history = client.history("moving/k0", limit=100)

    assert started.index > 0
    for k, record in records.items():
        assert record.value == f"v{196 + k}".encode()  # the last write of each key
        assert record.changes == 50  # every acknowledged write once, none twice
    assert [v.value for v in history.versions][:3] == [b"v196", b"v192", b"v188"]
    pause = max(took for start, took in written if start >= moved_at - 1.0)
    print(f"longest write during the move: {pause * 1000:.1f} ms")  # docs/sharding.md quotes it
    assert pause < 5.0, f"writes paused {pause:.2f} s"


def test_confctl_move_and_rebalance_move_partitions_and_even_them_out_again(tmp_path: Path) -> None:
    with running(tmp_path, ClusterOptions(cluster={"partitions": 8, "data_shards": 2})) as cluster:
        cluster.boot()
        endpoints = ",".join(cluster.client_address(n) for n in cluster.node_ids)

        def confctl(*args: str) -> subprocess.CompletedProcess[str]:
            command = [sys.executable, "-m", "confctl", "--endpoints", endpoints, "--output", "json", *args]
            return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

        moved = confctl("move", "0", "2")  # partition 0 starts in shard 1: now shard 2 owns five
        plan = confctl("rebalance", "--dry-run")
        rebalanced = confctl("rebalance")
        after = confctl("rebalance", "--dry-run")

    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout)["shard"] == 2
    assert plan.returncode == 0, plan.stderr
    (step,) = [json.loads(line) for line in plan.stdout.splitlines()]  # one JSON object per row
    assert (step["from"], step["to"]) == (2, 1)
    assert rebalanced.returncode == 0, rebalanced.stderr
    assert "moved 1/1" in rebalanced.stderr
    assert after.stdout.strip() == ""  # no row: nothing left to move


def _confctl(endpoints: list[str], *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "confctl", "--endpoints", ",".join(endpoints), "--output", "json", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)


def test_confctl_split_adds_a_shard_that_takes_half_the_partitions_with_their_keys_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    with running(tmp_path, ClusterOptions(cluster={"partitions": 8, "data_shards": 2})) as cluster:
        cluster.boot()
        endpoints = [cluster.client_address(n) for n in cluster.node_ids]
        with Client(endpoints, timeout_s=10.0) as client:
            for i in range(40):
                client.put(f"ns{i}/k", f"v{i}")
        split = _confctl(endpoints, "split", "1")
        shown = _confctl(endpoints, "shards")
        for node in cluster.node_ids:  # every node starts again from its disk
            cluster.kill(node)
        for node in cluster.node_ids:
            cluster.start(node)
        with Client(endpoints, timeout_s=10.0) as client:
            after = client.shard_map().map
            values = [client.get(f"ns{i}/k").value for i in range(40)]
            in_new_shard = [i for i in range(40) if after.shard_of(f"ns{i}/k") == 3]
            written = client.put(f"ns{in_new_shard[0]}/k", "again")

    assert split.returncode == 0, split.stderr
    assert "moved 2/2" in split.stderr
    rows = json.loads(shown.stdout)["shards"]
    assert [r["id"] for r in rows] == [0, 1, 2, 3]
    assert all(isinstance(r["bytes"], int) and r["leader"] is not None for r in rows)
    assert after.data_shards == [1, 2, 3]
    assert after.partitions_of(3) == [4, 6]
    assert after.partitions_of(1) == [0, 2]
    assert values == [f"v{i}".encode() for i in range(40)]
    assert in_new_shard
    assert written.meta.shard == 3


def test_a_node_added_takes_replicas_through_the_map_and_a_drained_node_gives_them_all_up(
    tmp_path: Path,
) -> None:
    options = ClusterOptions(size=5, joins=1, cluster={"partitions": 64, "data_shards": 16, "replication": 3})
    with running(tmp_path, options) as cluster:
        cluster.boot()
        endpoints = [cluster.client_address(n) for n in cluster.node_ids]
        with Client(endpoints, timeout_s=10.0) as client:
            first = client.shard_map().map
            assert first.shards_on(5) == []  # node 5 joins empty
            held_by_3 = first.shards_on(3)
            for i in range(40):
                client.put(f"ns{i}/k", f"v{i}")
            # Node 3's replicas, the meta shard's among them, go to the nodes holding fewest.
            drained = _confctl(endpoints, "drain", "3")
            after = client.shard_map().map
            members = {
                s: (status or {}).get("voters")
                for s in held_by_3
                for status in [cluster.status(after.replicas[s][0], shard=s)]
            }
            for i in range(40, 80):
                client.put(f"ns{i}/k", f"v{i}")

            def hosts_nothing(node: int) -> bool:
                status = cluster.status(node)
                return status is not None and status["shards"] == []

            # Removed from every shard, node 3 learns it and deletes its replicas (docs/raft.md,
            # *Leaving a shard*); restarted, it bootstraps none of them again.
            wait_until(lambda: hosts_nothing(3), 30.0, "node 3 deleted every replica it held")
            cluster.kill(3)
            cluster.start(3)
            wait_until(lambda: cluster.status(3) is not None, 15.0, "node 3 answers again")
            restarted_empty = hosts_nothing(3)
            cluster.kill(3)  # it holds no shard any more: nothing is lost, every shard serves
            values = [client.get(f"ns{i}/k").value for i in range(80)]
            moved = client.move_partition(0, 2 if first.owners[0] != 2 else 1)  # the meta shard serves

    assert drained.returncode == 0, drained.stderr
    assert "node 3 holds no replica now" in drained.stderr
    assert META_SHARD in held_by_3
    assert after.shards_on(3) == []
    assert after.shards_on(5)  # the joined node took some
    assert all(v is not None and 3 not in v and len(v) == len(first.replicas[s]) for s, v in members.items())
    assert restarted_empty
    assert values == [f"v{i}".encode() for i in range(80)]
    assert moved.index > 0


def test_confctl_rebalance_gives_a_new_node_its_share_of_replicas_and_leaders(tmp_path: Path) -> None:
    options = ClusterOptions(size=4, joins=1, cluster={"partitions": 16, "data_shards": 4})
    with running(tmp_path, options) as cluster:
        cluster.boot()
        endpoints = [cluster.client_address(n) for n in cluster.node_ids]
        rebalanced = _confctl(endpoints, "rebalance")
        with Client(endpoints, timeout_s=10.0) as client:
            after = client.shard_map().map

            preferred = {s: after.replicas[s][0] for s in after.replicas}

            def led_by_preferred() -> bool:
                return all(
                    (status := cluster.status(node, shard=s)) is not None and status["role"] == "leader"
                    for s, node in preferred.items()
                )

            wait_until(led_by_preferred, 30.0, "every shard led by the map's preferred leader")

    assert rebalanced.returncode == 0, rebalanced.stderr
    held = Counter(n for s in after.data_shards for n in after.replicas[s])
    assert held == {1: 3, 2: 3, 3: 3, 4: 3}  # 12 data replicas, 3 per node
    assert sorted(Counter(preferred.values()).values()) == [1, 1, 1, 2]  # 5 shards' leaders, 4 nodes
