"""Requests the node has accepted but not yet answered, and where their replies go.

A reply goes either to a client over the client ROUTER (`ClientSink`) or,
for a request a follower forwarded to this leader, back to that follower over
the peer link (`ForwardSink`), which relays it to its client untouched.

Every pending request has a deadline (monotonic seconds): nothing waits
forever, and a write that times out is answered TIMEOUT, meaning *outcome
unknown* (it may still commit; a retry with the same session seq is safe).
"""

from __future__ import annotations

from dataclasses import dataclass

from confmand.protocol.value import value_class
from confmand.server.errors import RequestError
from confmand.server.requests import ReadRequest


@dataclass(frozen=True, slots=True)
class ClientSink:
    envelope: tuple[bytes, ...]  # ROUTER routing frames (and a REQ delimiter), echoed back
    received_at: float  # loop time the request arrived: its reply's latency counts from here
    op: str = ""  # once parsed, for the latency histograms: the op and a read's consistency
    consistency: str = ""

    def __init__(
        self, envelope: tuple[bytes, ...], received_at: float, op: str = "", consistency: str = ""
    ) -> None:
        object.__setattr__(self, "envelope", envelope)
        object.__setattr__(self, "received_at", received_at)
        object.__setattr__(self, "op", op)
        object.__setattr__(self, "consistency", consistency)


@dataclass(frozen=True, slots=True)
class ForwardSink:
    node_id: int
    forward_id: int

    def __init__(self, node_id: int, forward_id: int) -> None:
        object.__setattr__(self, "node_id", node_id)
        object.__setattr__(self, "forward_id", forward_id)


@value_class
class DaemonSink:
    """A request the node made itself (the meta shard's first map): its answer goes nowhere."""


@value_class
class MoverSink:
    """A step of a partition move this node drives: its answer goes to the mover (mover.py)."""

    task: tuple[int, int, int]  # (source shard, partition, move gen)
    step: str


@value_class
class MapSink:
    """This node's request for a peer's newer shard map: its answer becomes this node's map."""


ReplySink = ClientSink | ForwardSink | DaemonSink | MoverSink | MapSink


@dataclass(slots=True)
class Reply:
    """One answer to send: op fields on success, or an error. The node adds the common fields."""

    sink: ReplySink
    request_id: int
    shard_id: int | None  # None: a node-level reply (ping, status, shard_map, a malformed request)
    fields: dict[str, object]
    error: RequestError | None = None

    def __init__(
        self,
        sink: ReplySink,
        request_id: int,
        shard_id: int | None,
        fields: dict[str, object],
        error: RequestError | None = None,
    ) -> None:
        self.sink = sink
        self.request_id = request_id
        self.shard_id = shard_id
        self.fields = fields
        self.error = error


@dataclass(slots=True)
class PendingWrite:
    sink: ReplySink
    request_id: int
    term: int  # the term it was proposed in: the entry at its index must carry it
    deadline: float

    def __init__(self, sink: ReplySink, request_id: int, term: int, deadline: float) -> None:
        self.sink = sink
        self.request_id = request_id
        self.term = term
        self.deadline = deadline


@dataclass(slots=True)
class PendingRead:
    sink: ReplySink
    request: ReadRequest
    deadline: float

    def __init__(self, sink: ReplySink, request: ReadRequest, deadline: float) -> None:
        self.sink = sink
        self.request = request
        self.deadline = deadline
