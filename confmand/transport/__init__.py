"""The driver's network: peer links, the client socket, the peer wire format, asyncio readiness.

Everything here is synchronous, non-blocking ZeroMQ: the driver's one asyncio
loop awaits `SocketWaiter.wait()` and then drains sockets with NOBLOCK.
"""

from confmand.transport.client import ClientCounters, ClientTransport
from confmand.transport.codec import (
    ForwardReply,
    ForwardRequest,
    PeerBatch,
    PeerDecodeError,
    PeerEncodeError,
    decode_peer_batch,
    encode_peer_batch,
)
from confmand.transport.peer import PeerCounters, PeerTransport, TransportClosedError, UnknownPeerError
from confmand.transport.readiness import SocketWaiter

__all__ = [
    "ClientCounters",
    "ClientTransport",
    "ForwardReply",
    "ForwardRequest",
    "PeerBatch",
    "PeerCounters",
    "PeerDecodeError",
    "PeerEncodeError",
    "PeerTransport",
    "SocketWaiter",
    "TransportClosedError",
    "UnknownPeerError",
    "decode_peer_batch",
    "encode_peer_batch",
]
