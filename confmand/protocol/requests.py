"""The request side of the wire: the envelope every request carries, its limits and its ops.

`RequestEnvelope.encode(fields)` makes the one frame of a request: the envelope
(`v`, `id`, `op`, `hlc`, `principal`, `timeout_ms`, the session, the read consistency)
and the op's own fields. The server validates what arrives against the same names and
limits (confmand/server/requests.py); the client builds frames with it
(confctl/client/call.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgpack

from confmand.protocol.types import Consistency, Session, Version
from confmand.protocol.value import value_class

PROTOCOL_VERSION: Final = 1
MAX_PRINCIPAL_BYTES: Final = 128
MAX_CLIENT_ID_BYTES: Final = 64
DEFAULT_MAX_REQUEST_BYTES: Final = 2 * 1024 * 1024  # a server's max_request_bytes unless configured
NO_REQUEST_ID: Final = -1  # a reply's id when the request had none that could be read

WRITE_OPS: Final = frozenset({"put", "delete", "cas", "txn", "rollback", "lease_grant", "lease_revoke"})
# `backup` reads a whole shard's state (linearizable, on its leader): `confctl snapshot save`.
READ_OPS: Final = frozenset({"get", "list", "history", "audit", "backup", "lease_keepalive"})
ADMIN_OPS: Final = frozenset({"ping", "status", "shard_map"})
# A partition move (docs/sharding.md): an operator starts one; the daemon sends the other steps
# to the shards' leaders over the peer link, and a client socket refuses them.
MOVE_OPS: Final = frozenset({"move_partition", "set_replicas", "add_shard"})
INTERNAL_MOVE_OPS: Final = frozenset({"partition_ingest", "partition_drop", "map_move"})
# A watch streams the changes under a prefix from one replica until cancelled (docs/protocol.md,
# *Watches*); `cancel_watch` ends one, named by the id of its `watch` request.
WATCH_OPS: Final = frozenset({"watch", "cancel_watch"})
MIN_WATCH_PROGRESS_MS: Final = 10
MAX_WATCH_PROGRESS_MS: Final = 60_000
DEFAULT_WATCH_PROGRESS_MS: Final = 1_000
# Reads that take a `consistency` (audit is always served by the leader).
CONSISTENT_READ_OPS: Final = frozenset({"get", "list", "history"})


@value_class
class RequestEnvelope:
    request_id: int
    op: str
    hlc: int | None = None
    principal: str | None = None
    timeout_ms: int | None = None
    session: Session | None = None  # writes only
    consistency: Consistency | None = None  # reads only
    min_version: Version | None = None  # `version` reads only
    shard: int | None = None  # the shard the client routed to (docs/protocol.md, *Shards*)

    def to_wire(self, fields: Mapping[str, object]) -> dict[str, object]:
        msg: dict[str, object] = {"v": PROTOCOL_VERSION, "id": self.request_id, "op": self.op}
        msg.update(fields)
        if self.timeout_ms is not None:
            msg["timeout_ms"] = self.timeout_ms
        if self.hlc:
            msg["hlc"] = self.hlc
        if self.principal is not None:
            msg["principal"] = self.principal
        if self.session is not None:
            s = self.session
            msg.update(client_id=s.client_id, seq=s.seq, ack=s.ack)
        if self.consistency is not None:
            msg["consistency"] = self.consistency.value
        if self.min_version is not None:
            msg["min_version"] = str(self.min_version)
        if self.shard is not None:
            msg["shard"] = self.shard
        return msg

    def encode(self, fields: Mapping[str, object]) -> bytes:
        return pack(self.to_wire(fields))


def pack(obj: object) -> bytes:
    """msgpack with `bin` for bytes and `str` for text, as the protocol says."""
    packed: bytes = msgpack.packb(obj, use_bin_type=True)
    return packed
