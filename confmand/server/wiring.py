"""The daemon's node: a `Node` wired to real LevelDB, real ZeroMQ sockets and the system clock.

The simulator wires the same `Node` to in-memory twins instead (tests/sim/);
everything the daemon adds around the node lives here and in run.py.
"""

from __future__ import annotations

import logging
import random

import zmq

from confmand.config import NodeConfig
from confmand.server.clock_offset import FileOffsetClock
from confmand.server.links import Clock, SystemClock
from confmand.server.node import Node
from confmand.storage import NodeStorage
from confmand.transport.client import ClientTransport
from confmand.transport.peer import PeerTransport

log = logging.getLogger(__name__)


class LocalNode:
    """A node with its real transports; `sockets` are what the loop waits on."""

    def __init__(self, config: NodeConfig, context: zmq.Context[zmq.Socket[bytes]] | None = None) -> None:
        self.context = context or zmq.Context()
        self._own_context = context is None
        clock: Clock = SystemClock()
        if config.clock.test_offset_file is not None:
            path = config.source.parent / config.clock.test_offset_file
            clock = FileOffsetClock(clock, path)
            log.warning("test-only: this node's wall clock is shifted by the ms in %s", path)
        storage = NodeStorage.open(config.data_dir, config.cluster_id, config.node_id)
        peers: PeerTransport | None = None
        clients: ClientTransport | None = None
        try:
            peers = PeerTransport(
                self.context, config.node_id, config.peer_address, config.remote_peer_addresses
            )
            # Frames up to 4x the request limit are read and answered TOO_LARGE; ZeroMQ cuts off
            # a client that sends anything bigger, before it costs us the memory.
            clients = ClientTransport(
                self.context, config.client_address, max_message_bytes=4 * config.limits.max_request_bytes
            )
            # The election timer's jitter needs real randomness in production. The node may still
            # refuse the data dir (a cluster of another shape): then nothing stays open.
            self.node = Node(config, storage, peers=peers, clients=clients, clock=clock, rng=random.Random())
        except BaseException:
            for transport in (peers, clients):
                if transport is not None:
                    transport.close()
            storage.close()
            self._term_context()
            raise
        self.peers = peers
        self.clients = clients

    @property
    def sockets(self) -> list[zmq.Socket[bytes]]:
        return [self.peers.socket, self.clients.socket]

    def close(self) -> None:
        self.node.close()
        self._term_context()

    def _term_context(self) -> None:
        if self._own_context:
            self.context.term()
