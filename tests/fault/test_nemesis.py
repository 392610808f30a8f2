"""The fault machinery: the proxy cuts what it says, the cluster's faults do what they say, schedules replay.

Proxy tests use plain sockets. Cluster tests share one 3-node cluster (booting
is the slow part); each starts from `recover()` and an agreed leader. The
module ends by checking that no confmand process, proxy thread or port is
left behind.
"""

from __future__ import annotations

import itertools
import os
import random
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from confmand.hlc import unpack
from confmand.protocol.shardmap import ShardMap
from tests.fault.cluster import SHARDED, FaultCluster, assert_nothing_left_running
from tests.fault.nemesis import (
    NEMESES,
    FaultEvent,
    NemesisError,
    describe,
    parse_schedule,
    run_schedule,
    schedule,
)
from tests.fault.proxy import Link, ProxyNetwork
from tests.integration.harness import Reply, Writer, error_code, ok, wait_until

QUIET_S = 0.3  # how long "nothing arrives" is watched for


# ------------------------------------------------------------------ the proxy, with plain sockets


@pytest.fixture
def upstream() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(5.0)
    yield server
    server.close()


@pytest.fixture
def network() -> Iterator[ProxyNetwork]:
    with ProxyNetwork() as net:
        yield net


def connect(link: Link) -> socket.socket:
    return socket.create_connection(("127.0.0.1", link.port), timeout=5.0)


def readable_within(sock: socket.socket, timeout_s: float) -> bool:
    return bool(select.select([sock], [], [], timeout_s)[0])


def test_a_link_forwards_bytes_both_ways(network: ProxyNetwork, upstream: socket.socket) -> None:
    link = network.add_link(upstream.getsockname()[1])

    with connect(link) as client:
        server_side, _ = upstream.accept()
        with server_side:
            client.sendall(b"ping")
            got = server_side.recv(16)
            server_side.sendall(b"pong")
            back = client.recv(16)

    assert (got, back) == (b"ping", b"pong")


def test_cutting_a_link_drops_open_connections_and_holds_new_ones_until_healed(
    network: ProxyNetwork, upstream: socket.socket
) -> None:
    link = network.add_link(upstream.getsockname()[1])
    before = connect(link)
    server_side, _ = upstream.accept()

    link.cut()
    dropped = readable_within(before, 5.0) and _closed(before)
    with connect(link) as during:
        during.sendall(b"greeting")
        reached_upstream_while_cut = readable_within(upstream, QUIET_S)
        link.heal()
        held, _ = upstream.accept()
        with held:
            delivered_after_heal = held.recv(16)

    before.close()
    server_side.close()
    assert dropped, "the open connection survived the cut"
    assert not reached_upstream_while_cut, "a connection reached upstream through a cut link"
    assert delivered_after_heal == b"greeting"


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(16) == b""
    except ConnectionError:
        return True


def test_a_delayed_link_delivers_no_sooner_than_its_delay(
    network: ProxyNetwork, upstream: socket.socket
) -> None:
    link = network.add_link(upstream.getsockname()[1])
    link.set_delay(200)

    with connect(link) as client:
        server_side, _ = upstream.accept()
        with server_side:
            sent_at = time.monotonic()
            client.sendall(b"late")
            got = server_side.recv(16)
            elapsed_s = time.monotonic() - sent_at

    assert got == b"late"
    assert elapsed_s >= 0.2


def test_a_link_to_a_dead_upstream_closes_the_connection_instead_of_failing(network: ProxyNetwork) -> None:
    with socket.create_server(("127.0.0.1", 0)) as gone:
        port = gone.getsockname()[1]
    link = network.add_link(port)

    with connect(link) as client:
        assert readable_within(client, 5.0)
        assert _closed(client)
    link.cut()  # the network still answers after the failed forward
    assert link.is_cut


def test_closing_the_network_stops_its_thread_and_its_listeners() -> None:
    net = ProxyNetwork()
    port = net.add_link(1).port

    net.close()
    net.close()

    assert "fault-proxy" not in {t.name for t in threading.enumerate()}
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()


# ------------------------------------------------------------------ which links a network fault cuts


@pytest.fixture
def unbooted(tmp_path: Path) -> Iterator[FaultCluster]:
    """A 5-node cluster whose processes never start: only its proxies run."""
    cluster = FaultCluster(tmp_path, size=5)
    yield cluster
    cluster.close()


def test_a_partition_cuts_both_directions_between_groups_and_nothing_inside_them(
    unbooted: FaultCluster,
) -> None:
    unbooted.partition([[1, 2]])

    cuts = set(unbooted.cuts())

    assert cuts == {(i, j) for i in (1, 2) for j in (3, 4, 5)} | {(j, i) for i in (1, 2) for j in (3, 4, 5)}


def test_a_bridge_cuts_the_two_sides_apart_but_not_from_the_bridge_node(unbooted: FaultCluster) -> None:
    unbooted.bridge([1, 2], [4, 5], 3)

    cuts = set(unbooted.cuts())

    assert cuts == {(i, j) for i in (1, 2) for j in (4, 5)} | {(j, i) for i in (1, 2) for j in (4, 5)}
    assert not any(3 in pair for pair in cuts)


def test_a_one_way_cut_adds_one_direction_and_heal_clears_everything(unbooted: FaultCluster) -> None:
    unbooted.heal()
    unbooted.cut_one_way(1, 2)
    one_way = unbooted.cuts()

    unbooted.heal()

    assert one_way == [(1, 2)]
    assert unbooted.cuts() == []


def test_a_node_listed_in_two_groups_is_refused(unbooted: FaultCluster) -> None:
    with pytest.raises(ValueError, match="two groups"):
        unbooted.partition([[1, 2], [2, 3]])


def test_each_node_reaches_each_other_node_through_its_own_link(unbooted: FaultCluster) -> None:
    config = unbooted.config_path(1).read_text()

    for other in (2, 3, 4, 5):
        assert f"127.0.0.1:{unbooted.link(1, other).port}" in config
    assert f"127.0.0.1:{unbooted.link(2, 3).port}" not in config
    assert str(unbooted.clock_file(1)) in config


# ------------------------------------------------------------------ schedules


@given(seed=st.integers(0, 2**32), size=st.sampled_from([3, 5]))
def test_a_schedule_is_a_function_of_its_seed_and_alternates_heal_and_fault_windows(
    seed: int, size: int
) -> None:
    events = schedule(seed, 30.0, list(NEMESES), size=size)

    assert events == schedule(seed, 30.0, list(NEMESES), size=size)
    assert events, "30 s holds at least one fault window"
    healed_from = 0.0
    for event in events:
        assert 1.0 - 1e-9 <= event.at_s - healed_from <= 3.0 + 1e-9
        assert 1.0 - 1e-9 <= event.until_s - event.at_s <= 3.0 + 1e-9
        healed_from = event.until_s
    assert healed_from <= 30.0


@given(seed=st.integers(0, 2**32))
def test_a_printed_schedule_parses_back_to_the_same_events(seed: int) -> None:
    nemeses = list(NEMESES)
    events = schedule(seed, 20.0, nemeses, size=5)

    line = describe(seed, 20.0, nemeses, events)

    assert "\n" not in line
    assert f"seed={seed}" in line
    assert parse_schedule(line) == events


# A clock step's size; which partition moves where; which replica moves
NOT_NODES = frozenset({"offset_ms", "namespace", "to", "pick"})


@given(seed=st.integers(0, 2**32), size=st.sampled_from([3, 5]))
def test_planned_parameters_name_only_nodes_of_the_cluster(seed: int, size: int) -> None:
    events = schedule(seed, 60.0, list(NEMESES), size=size)

    for event in events:
        nodes = [
            node for name, value in event.params.items() if name not in NOT_NODES for node in _flat(value)
        ]
        assert all(1 <= node <= size for node in nodes), event
        assert len(nodes) == len(set(nodes)), f"a node named twice: {event}"


def _flat(value: object) -> list[int]:
    if isinstance(value, list):
        return [node for item in value for node in _flat(item)]
    assert isinstance(value, int)
    return [value]


def test_an_unknown_nemesis_or_a_broken_line_is_a_typed_error() -> None:
    with pytest.raises(NemesisError, match="unknown nemesis"):
        schedule(1, 10.0, ["kill-everything"])
    with pytest.raises(NemesisError, match="not a schedule line"):
        parse_schedule("nemesis seed=1 schedule=[[1.0]]")


# ------------------------------------------------------------------ a real cluster under fault


@pytest.fixture(scope="module")
def _nothing_left() -> Iterator[None]:
    yield
    assert_nothing_left_running()


@pytest.fixture(scope="module")
def booted(_nothing_left: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultCluster]:
    cluster = FaultCluster(tmp_path_factory.mktemp("fault"), size=3, seed=7)
    try:
        cluster.boot()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def cluster(booted: FaultCluster) -> FaultCluster:
    """The shared cluster, every fault undone and a leader agreed."""
    booted.recover()
    booted.wait_for_leader()
    return booted


def test_isolating_the_leader_elects_one_on_the_majority_side_and_the_old_one_cannot_commit(
    cluster: FaultCluster,
) -> None:
    old = cluster.wait_for_leader()
    majority = cluster.followers(old)

    cluster.partition([[old]])
    new = cluster.wait_for_leader(among=majority)
    refused = cluster.call(old, {"op": "put", "key": "iso/k", "value": b"minority", "timeout_ms": 1000}, 3.0)
    cluster.put(new, "iso/k", b"majority")  # the majority side commits meanwhile

    assert new in majority
    assert error_code(refused) in {"TIMEOUT", "NOT_LEADER", "NO_QUORUM", "NO_REPLY"}, refused


def test_after_healing_an_isolated_leader_rejoins_the_agreed_leader_and_catches_up(
    cluster: FaultCluster,
) -> None:
    old = cluster.wait_for_leader()
    cluster.partition([[old]])
    new = cluster.wait_for_leader(among=cluster.followers(old))
    write = cluster.put(new, "heal/k", b"v")

    cluster.heal()
    cluster.wait_applied(old, int(write["version"].split(":")[1]))
    # Every node, the old leader too, agrees on one leader: the new one, or, in a cluster's first
    # minute, the map's preferred leader, which takes it back (docs/sharding.md).
    cluster.wait_for_leader(among=cluster.node_ids)

    read = ok(cluster.call(old, {"op": "get", "key": "heal/k", "consistency": "stale"}))
    assert read["value"] == b"v"


def test_a_clock_step_shows_in_the_nodes_hlc(cluster: FaultCluster) -> None:
    node = cluster.node_ids[0]
    offset_ms = 20_000

    cluster.step_clock(node, offset_ms)
    stamp = wait_until(
        lambda: _hlc_ahead_by(cluster, node, offset_ms - 1000), 5.0, f"node {node}'s hlc to jump"
    )

    assert unpack(stamp)[0] < _now_ms() + offset_ms + 1000
    others = [unpack(s["hlc"])[0] for n in cluster.followers(node) if (s := cluster.status(n)) is not None]
    assert all(ms < _now_ms() + offset_ms / 2 for ms in others), "a stepped clock dragged the others along"


def _hlc_ahead_by(cluster: FaultCluster, node: int, ahead_ms: int) -> int | None:
    """The node's status `hlc` if its physical part is at least `ahead_ms` ahead of our clock."""
    status = cluster.status(node)
    if status is None or unpack(status["hlc"])[0] < _now_ms() + ahead_ms:
        return None
    stamp: int = status["hlc"]
    return stamp


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def test_a_killed_node_restarts_on_its_data_dir_and_catches_up(cluster: FaultCluster) -> None:
    leader = cluster.wait_for_leader()
    victim = cluster.followers(leader)[0]

    shard_map = ShardMap.from_wire(ok(cluster.call(leader, {"op": "shard_map"})))
    preferred = shard_map.replicas[1][0]

    cluster.kill(victim)
    write = cluster.put(leader, "kill/k", b"while down")
    down = cluster.status(victim)
    cluster.start(victim)
    cluster.wait_applied(victim, int(write["version"].split(":")[1]))
    followed = wait_until(
        lambda: _one_leader_seen_by_all(cluster),
        15.0,
        "every node, the restarted one too, following one leader",
    )

    assert down is None
    # The leader before the kill or, in the cluster's first minute, the map's preferred leader,
    # which takes leadership back from whoever holds it then (docs/sharding.md).
    assert followed in {leader, preferred}


def _one_leader_seen_by_all(cluster: FaultCluster) -> int | None:
    """Shard 1's leader if every node answers and names the same one."""
    statuses = [cluster.status(n, 0.5, shard=1) for n in cluster.node_ids]
    named = [s["leader_id"] for s in statuses if s is not None]
    if len(named) != len(statuses) or len(set(named)) != 1 or named[0] is None:
        return None
    leader: int = named[0]
    return leader


def test_the_kills_and_stops_the_cluster_makes_itself_are_not_reported_as_exits(
    cluster: FaultCluster,
) -> None:
    leader = cluster.wait_for_leader()
    victim = cluster.followers(leader)[0]
    before = len(cluster.check_exits())

    cluster.kill(victim)
    cluster.start(victim)
    cluster.terminate(victim)
    cluster.recover()  # starts it again
    run_schedule(cluster, [FaultEvent(0.0, "restart", {"node": victim}, 0.1)]).join(timeout_s=30.0)
    cluster.wait_for_leader()

    assert len(cluster.check_exits()) == before


def test_a_node_killed_behind_the_clusters_back_is_reported_once_with_its_code_and_log(
    cluster: FaultCluster,
) -> None:
    victim = cluster.followers(cluster.wait_for_leader())[0]
    process = cluster.process(victim)
    before = len(cluster.check_exits())

    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10.0)
    found = cluster.check_exits()[before:]
    cluster.kill(victim)  # a planned kill of the dead node must not hide or repeat it
    cluster.recover()

    assert [(e.node_id, e.exit_code) for e in found] == [(victim, -signal.SIGKILL)]
    assert cluster.check_exits()[before:] == found
    assert found[0].log_tail, "no log lines kept"
    assert found[0].log_tail[-1] in cluster.log_text(victim)
    assert found[0].describe().startswith(f"node {victim} exited unplanned (killed by SIGKILL, code -9)")


def test_a_paused_leader_is_replaced_and_follows_once_resumed(cluster: FaultCluster) -> None:
    old = cluster.wait_for_leader()

    cluster.pause(old)
    new = cluster.wait_for_leader(among=cluster.followers(old))
    cluster.resume(old)
    status = wait_until(lambda: _following(cluster, old, new), 5.0, f"resumed node {old} to follow {new}")

    assert status["role"] == "follower"


def _following(cluster: FaultCluster, node: int, leader: int) -> Reply | None:
    status = cluster.status(node)
    return status if status is not None and status["leader_id"] == leader else None


def test_a_nemesis_run_records_its_windows_and_leaves_the_cluster_healed(cluster: FaultCluster) -> None:
    events = schedule(3, 3.0, ["isolate-leader", "pause-random", "one-way-loss"], window_s=(0.4, 0.8))

    windows = run_schedule(cluster, events, time.monotonic_ns).join(timeout_s=30.0)
    leader = cluster.wait_for_leader()

    assert [w.name for w in windows] == [e.name for e in events], describe(3, 3.0, [], events)
    assert all(w.start_ns < w.end_ns for w in windows)
    assert all(a.end_ns <= b.start_ns for a, b in itertools.pairwise(windows))
    assert (cluster.cuts(), cluster.paused) == ([], set())
    ok(cluster.call(leader, {"op": "put", "key": "after/nemesis", "value": b"v"}))


def test_a_nemesis_run_stopped_early_undoes_its_fault_and_records_its_window(cluster: FaultCluster) -> None:
    run = run_schedule(cluster, [FaultEvent(0.0, "one-way-loss", {"source": 1, "target": 2}, 60.0)])
    wait_until(cluster.cuts, 5.0, "the one-way cut")

    run.stop()
    windows = run.join(timeout_s=10.0)

    assert [(w.name, w.done) for w in windows] == [("one-way-loss", {"source": 1, "target": 2})]
    assert cluster.cuts() == []


def test_a_fault_that_fails_is_raised_by_join_and_the_cluster_is_still_recovered(
    cluster: FaultCluster,
) -> None:
    bad = FaultEvent(0.0, "partition-majority-minority", {"minority": [99]}, 1.0)

    run = run_schedule(cluster, [bad])

    with pytest.raises(ValueError, match="unknown nodes"):
        run.join(timeout_s=10.0)
    assert [w.name for w in run.windows] == ["partition-majority-minority"]
    assert cluster.cuts() == []


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in NEMESES if not n.startswith("move-")])  # those: below
def test_every_nemesis_starts_and_stops_and_the_cluster_serves_after(
    cluster: FaultCluster, name: str
) -> None:
    events = [FaultEvent(0.0, name, NEMESES[name].plan(random.Random(name), 3), 1.5)]

    windows = run_schedule(cluster, events).join(timeout_s=30.0)
    cluster.wait_for_leader()
    writer = Writer(cluster.addresses())
    try:
        # Retried as a client would: a node whose clock was stepped hands its leadership away
        # (NOT_LEADER, retryable) for a moment after the step is undone.
        acknowledged = writer.put(f"after/{name}", b"v", timeout_s=15.0)
    finally:
        writer.close()

    assert [w.name for w in windows] == [name]
    assert windows[0].done, f"{name} did nothing: {windows[0]}"
    assert acknowledged is not None, f"no write acknowledged within 15 s after {name}"


def test_the_move_partition_nemesis_moves_a_workload_namespace_to_another_shard(tmp_path: Path) -> None:
    sharded = FaultCluster(tmp_path, size=3, seed=7, options=SHARDED)
    try:
        sharded.boot()
        events = [FaultEvent(0.0, "move-partition", NEMESES["move-partition"].plan(random.Random(3), 3), 0.5)]

        (window,) = run_schedule(sharded, events).join(timeout_s=30.0)

        done = window.done
        assert done["ok"], window
        assert done["from"] != done["to"]

        def moved() -> bool:
            reply = sharded.call(1, {"op": "shard_map"})
            return reply is not None and ShardMap.from_wire(reply).owners[done["partition"]] == done["to"]

        wait_until(moved, 10.0, f"partition {done['partition']} in shard {done['to']}")
    finally:
        sharded.close()


def test_the_move_replica_nemesis_puts_a_shard_on_a_node_that_held_none_of_it(tmp_path: Path) -> None:
    sharded = FaultCluster(tmp_path, size=4, seed=7, options=SHARDED)
    try:
        sharded.boot()
        events = [FaultEvent(0.0, "move-replica", NEMESES["move-replica"].plan(random.Random(3), 4), 0.5)]

        (window,) = run_schedule(sharded, events).join(timeout_s=30.0)

        done = window.done
        assert done["ok"], window

        def placed() -> bool:
            status = sharded.status(done["to"], shard=done["shard"])
            return (
                status is not None and done["to"] in status["voters"] and done["from"] not in status["voters"]
            )

        wait_until(
            placed, 20.0, f"node {done['to']} a voter of shard {done['shard']}, node {done['from']} not"
        )
    finally:
        sharded.close()


def test_closing_the_cluster_twice_leaves_no_process_thread_or_port(booted: FaultCluster) -> None:
    ports = [link.port for link in booted.links.values()]

    booted.close()
    booted.close()

    assert_nothing_left_running()
    for port in ports:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
