"""A node hosting many shards: requests go to their namespace's shard, and never to another one."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import msgpack
import pytest
import zmq

from confmand.config import ClusterShape, PeerConfig
from confmand.kv.queries import get_key
from confmand.protocol.shardmap import ShardMap, partition_of
from confmand.raft.messages import Heartbeat
from confmand.server.meta import stored_map
from confmand.storage import DataDirError, NodeStorage
from confmand.transport.codec import PeerBatch, encode_peer_batch
from confmand.transport.peer import routing_id
from tests.server.node_harness import EPHEMERAL, NodeHarness, single_node_config

SHAPE = ClusterShape(partitions=16, data_shards=4)


@pytest.fixture
def sharded(tmp_path: Path) -> Iterator[NodeHarness]:
    h = NodeHarness(single_node_config(tmp_path / "data", cluster=SHAPE))
    h.until_leader()
    yield h
    h.close()


def _map(h: NodeHarness) -> ShardMap:
    return h.node.shard_map


def _namespaces_on_two_shards(h: NodeHarness) -> tuple[str, str]:
    names = [f"ns{i}" for i in range(64)]
    first = names[0]
    other = next(n for n in names if _map(h).shard_of(n) != _map(h).shard_of(first))
    return first, other


def test_a_node_hosts_the_meta_shard_and_every_data_shard_of_its_map(sharded: NodeHarness) -> None:
    assert sorted(sharded.node.replicas) == [0, 1, 2, 3, 4]


def test_a_write_lands_in_the_shard_of_its_namespace_and_says_which(sharded: NodeHarness) -> None:
    a, b = _namespaces_on_two_shards(sharded)

    put_a = sharded.call("put", key=f"{a}/x", value=b"1")
    put_b = sharded.call("put", key=f"{b}/x", value=b"2")

    assert put_a["shard"] == _map(sharded).shard_of(a)
    assert put_b["shard"] == _map(sharded).shard_of(b)
    # Each shard numbers its own log: both writes are the first after their shard's bootstrap.
    assert put_a["version"].split(":")[1] == put_b["version"].split(":")[1]


def test_a_request_routed_to_another_shard_is_wrong_shard_and_writes_nothing(sharded: NodeHarness) -> None:
    a, _ = _namespaces_on_two_shards(sharded)
    owner = _map(sharded).shard_of(a)
    elsewhere = next(s for s in _map(sharded).data_shards if s != owner)

    refused = sharded.call("put", key=f"{a}/x", value=b"1", shard=elsewhere)
    missing = sharded.call("get", key=f"{a}/x")

    assert refused["error"]["code"] == "WRONG_SHARD"
    assert (refused["error"]["shard"], refused["error"]["epoch"]) == (owner, 1)
    assert missing["error"]["code"] == "NOT_FOUND"


def test_a_request_for_a_shard_the_map_lacks_is_wrong_shard(sharded: NodeHarness) -> None:
    for shard in (0, 99):
        reply = sharded.call("list", prefix="", shard=shard)
        assert reply["error"]["code"] == "WRONG_SHARD", reply
        assert reply["error"]["shard"] is None


def test_a_listing_that_may_span_namespaces_must_name_its_shard(sharded: NodeHarness) -> None:
    a, b = _namespaces_on_two_shards(sharded)
    sharded.call("put", key=f"{a}/x", value=b"1")
    sharded.call("put", key=f"{b}/x", value=b"2")

    unnamed = sharded.call("list", prefix="ns")
    of_a = sharded.call("list", prefix="ns", shard=_map(sharded).shard_of(a))
    within = sharded.call("list", prefix=f"{b}/")

    assert unnamed["error"]["code"] == "INVALID_REQUEST"
    assert "`shard`" in unnamed["error"]["message"]
    assert [i["key"] for i in of_a["items"]] == [f"{a}/x"]
    assert [i["key"] for i in within["items"]] == [f"{b}/x"]


def test_a_transaction_across_two_namespaces_is_refused_naming_them(sharded: NodeHarness) -> None:
    a, b = _namespaces_on_two_shards(sharded)
    ops = [{"op": "put", "key": f"{a}/x", "value": b"1"}, {"op": "put", "key": f"{b}/x", "value": b"2"}]

    reply = sharded.call("txn", compare=[], success=ops)

    assert reply["error"]["code"] == "INVALID_REQUEST"
    assert f"'{a}'" in reply["error"]["message"]
    assert f"'{b}'" in reply["error"]["message"]
    assert sharded.call("get", key=f"{a}/x")["error"]["code"] == "NOT_FOUND"


def test_shard_map_answers_the_map_its_nodes_and_the_leaders_it_knows(sharded: NodeHarness) -> None:
    reply = sharded.call("shard_map")

    assert ShardMap.from_wire(reply) == _map(sharded)
    assert reply["shard"] is None
    assert {s["id"]: s["leader"] for s in reply["shards"]} == dict.fromkeys(range(5), 1)
    assert all(s["members"] == [1] for s in reply["shards"])
    assert [n["id"] for n in reply["nodes"]] == [1]


def test_status_names_every_hosted_shard_and_shows_the_one_asked_for(sharded: NodeHarness) -> None:
    default = sharded.call("status")
    third = sharded.call("status", shard=3)

    assert [s["shard_id"] for s in default["shards"]] == [0, 1, 2, 3, 4]
    assert (default["shard_id"], third["shard_id"]) == (1, 3)


def test_a_data_dir_refuses_a_config_of_another_cluster_shape(tmp_path: Path) -> None:
    config = single_node_config(tmp_path / "data", cluster=SHAPE)
    NodeHarness(config).close()

    with pytest.raises(DataDirError, match=r"data_shards = 4 \(the config says 8\)"):
        NodeHarness(replace(config, cluster=replace(SHAPE, data_shards=8)))
    NodeHarness(config).close()  # the dir is untouched by the refusal


def test_a_node_answers_wrong_shard_for_a_shard_it_holds_no_replica_of(tmp_path: Path) -> None:
    peers = tuple(
        PeerConfig(i, f"tcp://127.0.0.1:{19000 + i}", f"tcp://127.0.0.1:{19100 + i}") for i in (1, 2, 3)
    )
    config = replace(
        single_node_config(
            tmp_path / "data", cluster=ClusterShape(partitions=16, data_shards=3, replication=1)
        ),
        peers=peers,
        peer_address=EPHEMERAL,
        client_address=EPHEMERAL,
    )
    h = NodeHarness(config)
    try:
        shard_map = h.node.shard_map
        absent = next(s for s in shard_map.data_shards if 1 not in shard_map.replicas[s])
        key = next(f"ns{i}/x" for i in range(64) if shard_map.shard_of(f"ns{i}") == absent)

        reply = h.call("get", key=key, consistency="stale")
    finally:
        h.close()

    assert reply["error"]["code"] == "WRONG_SHARD"
    assert reply["error"]["shard"] == absent
    assert f"holds no replica of shard {absent}" in reply["error"]["message"]


def test_the_meta_shard_leader_writes_the_first_map_and_the_node_registry(sharded: NodeHarness) -> None:
    meta = sharded.node.replicas[0]

    sharded.turn_until(lambda: stored_map(meta.storage) is not None)

    assert stored_map(meta.storage) == _map(sharded)
    record = get_key(meta.storage, "nodes/1")
    assert record is not None
    assert msgpack.unpackb(record.value)["client_address"] == sharded.node.config.client_address


def test_a_moved_partition_takes_its_keys_history_and_audit_to_the_new_shard(sharded: NodeHarness) -> None:
    a, _ = _namespaces_on_two_shards(sharded)
    partition = partition_of(a, SHAPE.partitions)
    source = _map(sharded).shard_of(a)
    target = next(s for s in _map(sharded).data_shards if s != source)
    sharded.call("put", key=f"{a}/x", value=b"1")
    sharded.call("put", key=f"{a}/x", value=b"2")

    started = sharded.call("move_partition", partition=partition, to_shard=target)
    sharded.turn_until(lambda: _map(sharded).owners[partition] == target and not sharded.node.mover.busy)

    assert started["ok"], started
    got = sharded.call("get", key=f"{a}/x")
    assert (got["ok"], got["value"], got["shard"]) == (True, b"2", target)
    history = sharded.call("history", key=f"{a}/x")
    assert [v["value"] for v in history["versions"]] == [b"2", b"1"]
    assert sharded.call("put", key=f"{a}/x", value=b"3")["shard"] == target
    stale = sharded.call("get", key=f"{a}/x", shard=source)
    assert stale["error"]["code"] == "WRONG_SHARD"
    source_audit = sharded.call("audit", shard=source)
    assert all(not r["key"].startswith(f"{a}/") for r in source_audit["records"])
    assert stored_map(sharded.node.replicas[0].storage) == _map(sharded)


def test_a_client_cannot_send_a_step_only_a_node_may(sharded: NodeHarness) -> None:
    refused = sharded.call("partition_drop", partition=0, gen=1, shard=1)

    assert refused["error"]["code"] == "INVALID_REQUEST"


def _move(h: NodeHarness, namespace: str) -> tuple[int, int, int]:
    """Move `namespace`'s partition to another shard, to the end; (partition, source, target)."""
    partition = partition_of(namespace, SHAPE.partitions)
    source = _map(h).shard_of(namespace)
    target = next(s for s in _map(h).data_shards if s != source)
    assert h.call("move_partition", partition=partition, to_shard=target)["ok"]
    h.turn_until(lambda: _map(h).owners[partition] == target and not h.node.mover.busy)
    return partition, source, target


def test_a_node_with_an_old_map_never_answers_for_a_partition_its_shard_gave_away(
    sharded: NodeHarness,
) -> None:
    a, _ = _namespaces_on_two_shards(sharded)
    sharded.call("put", key=f"{a}/x", value=b"1")
    old_map = _map(sharded)
    _, _, target = _move(sharded, a)
    sharded.node.shard_map = old_map  # as a node that has not heard of the move yet

    read = sharded.call("get", key=f"{a}/x")
    write = sharded.call("put", key=f"{a}/x", value=b"2")

    assert (read["error"]["code"], read["error"]["shard"]) == ("WRONG_SHARD", target)
    assert (write["error"]["code"], write["error"]["shard"]) == ("WRONG_SHARD", target)


def test_a_partition_on_its_way_out_serves_no_read_and_takes_no_write(
    sharded: NodeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = _namespaces_on_two_shards(sharded)
    sharded.call("put", key=f"{a}/x", value=b"1")
    monkeypatch.setattr(sharded.node.mover, "due", lambda now, export: [])  # the move stays frozen
    partition = partition_of(a, SHAPE.partitions)
    target = next(s for s in _map(sharded).data_shards if s != _map(sharded).shard_of(a))
    assert sharded.call("move_partition", partition=partition, to_shard=target)["ok"]

    codes = {
        (op, mode): sharded.call(op, key=f"{a}/x", consistency=mode)["error"]["code"]
        for op in ("get", "history")
        for mode in ("linearizable", "stale")
    }
    listed = sharded.call("list", prefix="", shard=_map(sharded).shard_of(a))
    write = sharded.call("put", key=f"{a}/x", value=b"2")

    assert set(codes.values()) == {"PARTITION_MOVING"}, codes
    assert listed["error"]["code"] == "PARTITION_MOVING"
    assert write["error"]["code"] == "PARTITION_MOVING"


def test_an_added_shard_starts_on_its_founder_takes_a_partition_and_its_founders_travel_in_the_map(
    sharded: NodeHarness,
) -> None:
    added = sharded.call("add_shard", data_shard=5, replicas=[1])
    sharded.turn_until(lambda: 5 in sharded.node.replicas and sharded.node.replicas[5].is_leader)
    namespace = "ns0"
    partition = partition_of(namespace, SHAPE.partitions)
    sharded.call("move_partition", partition=partition, to_shard=5)
    sharded.turn_until(lambda: _map(sharded).owners[partition] == 5)
    written = sharded.call("put", key=f"{namespace}/k", value=b"v")
    reply = sharded.call("shard_map")

    assert added["ok"], added
    assert written["ok"], written
    assert written["shard"] == 5
    assert ShardMap.from_wire(reply) == _map(sharded)  # a peer learning the map learns its founders
    assert _map(sharded).founders == {5: (1,)}


def test_adding_a_shard_again_with_other_replicas_is_refused(sharded: NodeHarness) -> None:
    sharded.call("add_shard", data_shard=5, replicas=[1])
    again = sharded.call("add_shard", data_shard=5, replicas=[1])
    other = sharded.call("add_shard", data_shard=1, replicas=[1])

    assert again["ok"], again  # the same add, repeated: nothing changes
    assert not other["ok"]
    assert other["error"]["code"] == "INVALID_REQUEST"


def test_a_founder_that_deleted_its_replica_never_writes_the_shards_entry_1_again(tmp_path: Path) -> None:
    """It left shard 1 once (a tombstone: removed at 40, in term 7, having voted for 2): neither its
    restart nor a leader's message bootstraps it, which would make it a voter with an empty log.
    A leader's message starts it empty, with the term and vote it had, even one of an older term:
    the replica then answers with its newer term, so that leader steps down (simulator seed 176)."""
    peers = tuple(
        PeerConfig(i, f"tcp://127.0.0.1:{19200 + i}", f"tcp://127.0.0.1:{19300 + i}") for i in (1, 2, 3)
    )
    config = replace(
        single_node_config(tmp_path / "data", cluster=ClusterShape(partitions=16, data_shards=2)),
        peers=peers,
        peer_address=EPHEMERAL,
        client_address=EPHEMERAL,
    )
    NodeHarness(config).close()  # a founder of every shard: entry 1 of each is written
    storage = NodeStorage.open(config.data_dir, config.cluster_id, 1)
    batch = storage.new_batch()
    storage.stage_delete_start(1, batch, removed_at=40, term=7, vote=2)
    storage.write(batch, sync=True)
    batch = storage.new_batch()
    assert storage.stage_delete_step(1, batch, max_keys=1000)
    storage.write(batch, sync=True)
    storage.close()

    h = NodeHarness(config)
    try:
        started_on_restart = 1 in h.node.replicas
        leader = peer_socket(h, node_id=2)

        def heartbeat(term: int) -> None:
            beat = Heartbeat(1, term, 2, 1, leader_commit=9, read_seq=0)
            leader.send(encode_peer_batch(PeerBatch(2, 0, [(1, beat)], [], [], incarnation=term)))

        heartbeat(6)  # a deposed leader's: the replica starts, and refuses it with term 7
        h.turn_until(lambda: 1 in h.node.replicas)
        raft = h.node.replicas[1].raft
        membership, term_now, vote, rejoin = raft.membership, raft.term, raft.vote, raft.config.rejoin_after
        leader.close()
    finally:
        h.close()

    assert not started_on_restart
    assert membership is None, "started empty: the leader's log or snapshot tells it the membership"
    assert (term_now, vote, rejoin) == (7, 2, 40)


def peer_socket(h: NodeHarness, node_id: int) -> zmq.Socket[bytes]:
    """A DEALER that speaks to the node's peer port as node `node_id` does."""
    socket: zmq.Socket[bytes] = h.context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.ROUTING_ID, routing_id(node_id))
    socket.connect(h.local.peers.bound_address)
    return socket
