"""One in-process `Node` with real sockets and real LevelDB, turned by the test itself.

The test plays the loop: it sends a request on a DEALER and calls
`node.turn()` until the reply arrives. No threads, no sleeps: what happens in
between is exactly the turns the test ran.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import zmq

from confmand.config import ClusterShape, NodeConfig, PeerConfig, RaftSettings
from confmand.protocol.shardmap import META_SHARD
from confmand.server.meta import stored_map
from confmand.server.wiring import LocalNode

EPHEMERAL = "tcp://127.0.0.1:*"
ONE_DATA_SHARD = ClusterShape()


def single_node_config(
    data_dir: Path,
    snapshot_interval_entries: int = 10_000,
    log_retain_entries: int = 1_000,
    cluster: ClusterShape = ONE_DATA_SHARD,
) -> NodeConfig:
    return NodeConfig(
        source=data_dir / "node.toml",
        cluster_id="unit",
        node_id=1,
        data_dir=data_dir,
        peer_address=EPHEMERAL,
        client_address=EPHEMERAL,
        peers=(PeerConfig(1, EPHEMERAL, EPHEMERAL),),
        cluster=cluster,
        raft=RaftSettings(
            tick_ms=1,
            snapshot_interval_entries=snapshot_interval_entries,
            log_retain_entries=log_retain_entries,
        ),
    )


class NodeHarness:
    def __init__(self, config: NodeConfig) -> None:
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.local = LocalNode(config, self.context)
        self.node = self.local.node
        self.client: zmq.Socket[bytes] = self.context.socket(zmq.DEALER)
        self.client.setsockopt(zmq.LINGER, 0)
        self.client.connect(self.local.clients.bound_address)
        self._ids = itertools.count(1)

    def send(self, op: str, **fields: Any) -> int:
        rid = next(self._ids)
        self.client.send(msgpack.packb({"v": 1, "id": rid, "op": op, **fields}, use_bin_type=True))
        return rid

    def reply(self, max_turns: int = 2000) -> dict[str, Any]:
        """Turn the node until a reply is waiting on the client socket."""
        for _ in range(max_turns):
            self.node.turn()
            if self.client.poll(1):
                answer: dict[str, Any] = msgpack.unpackb(self.client.recv(), raw=False)
                return answer
        raise AssertionError(f"no reply within {max_turns} turns")

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        rid = self.send(op, **fields)
        answer = self.reply()
        assert answer["id"] == rid
        return answer

    def turn_until(self, condition: Callable[[], bool], max_turns: int = 20_000) -> None:
        """Turn the node until `condition()` holds (waiting briefly on its sockets between turns)."""
        for _ in range(max_turns):
            self.node.turn()
            if condition():
                return
            self.local.peers.socket.poll(1)
        raise AssertionError(f"condition not reached within {max_turns} turns")

    def until_leader(self, max_turns: int = 5000) -> None:
        """Turn until this node leads every shard and has written everything its elections produced.

        The meta shard's leader writes the first map once elected: that too, so a test's own
        writes (and the disk faults it injects) meet no write of the node's.
        """
        for _ in range(max_turns):
            self.node.turn()
            replicas = self.node.replicas
            if all(r.is_leader and not r.raft.has_ready() for r in replicas.values()) and (
                META_SHARD not in replicas or stored_map(replicas[META_SHARD].storage) is not None
            ):
                return
        raise AssertionError("the single node never became leader of every shard")

    def close(self) -> None:
        self.client.close()
        self.local.close()
        self.context.term()
