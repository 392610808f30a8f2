"""What a client knows of a sharded cluster, and where each request goes in it. Pure, no I/O.

A key's namespace picks its partition, the map's `owners` the shard, and the
shard's replicas the nodes that can serve it (docs/protocol.md, *Shards*).
`ShardDirectory` is shared by every call of one client:

- `map` is the newest map seen (a map older than it, from a node behind, is
  ignored); None until fetched, and for good once a node answered `shard_map`
  UNSUPPORTED (`unsharded`: an older single-shard server, spoken to as before);
- `leaders` is each shard's leader address as last learned (from the map reply,
  NOT_LEADER hints and successful replies of that shard); it is forgotten when
  that address fails, so the next call starts at the preferred leader;
- a shard's candidates are its leader, then its replicas' addresses (preferred
  leader first), then the configured endpoints as a last resort (any node
  forwards, or answers WRONG_SHARD with its own map's epoch).

`target(request)` says what a request is routed by: a key, every data shard
(`Spread.ALL`: a list across namespaces, the audit log), or nothing
(`Spread.NONE`: node-level ops, which carry no `shard`).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from confctl.client.requests import Request, txn_key
from confctl.client.routing import unique
from confctl.client.types import ShardMapResult
from confmand.protocol.shardmap import NAMESPACE_SEPARATOR, ShardMap

KEY_OPS = frozenset(
    {"put", "get", "delete", "cas", "rollback", "history", "lease_grant", "lease_revoke", "lease_keepalive"}
)


class Spread(enum.Enum):
    NONE = "none"  # node-level: sent as it is, no `shard`
    ALL = "all"  # every data shard, the pages merged


def target(request: Request) -> str | Spread:
    """The key whose namespace picks the request's shard, or how it spreads instead."""
    fields = request.fields
    if request.op in KEY_OPS:
        key = fields.get("key")
        return key if isinstance(key, str) else Spread.NONE
    if request.op == "txn":
        return txn_key(fields) or Spread.NONE
    if request.op == "list":
        prefix = fields.get("prefix")
        # A prefix with a `/` lies inside one namespace; one without may match keys of many.
        if isinstance(prefix, str) and NAMESPACE_SEPARATOR in prefix:
            return prefix
        return Spread.ALL
    if request.op == "audit":
        prefix = fields.get("prefix")
        if isinstance(prefix, str) and NAMESPACE_SEPARATOR in prefix:
            return prefix
        return Spread.ALL
    return Spread.NONE


@dataclass(slots=True)
class ShardDirectory:
    discover: bool = False  # fetch the map before the first routed call (the shells turn it on)
    map: ShardMap | None = None
    unsharded: bool = False
    addresses: dict[int, str] = field(default_factory=dict)  # node id -> client address
    leaders: dict[int, str] = field(default_factory=dict)  # shard -> its leader's address
    members: dict[int, tuple[int, ...]] = field(default_factory=dict)  # shard -> members a holder named

    @property
    def needs_map(self) -> bool:
        return self.discover and self.map is None and not self.unsharded

    def learn(self, result: ShardMapResult) -> None:
        if self.map is not None and result.map.epoch < self.map.epoch:
            return
        self.map, self.unsharded = result.map, False
        self.addresses.update(result.addresses)
        for info in result.shards:
            address = self.addresses.get(info.leader) if info.leader is not None else None
            if address is not None:
                self.leaders[info.id] = address
            if info.members:
                self.members[info.id] = info.members

    def learn_unsharded(self) -> None:
        """A node does not know `shard_map`: route nothing, as with every server before shards."""
        self.map, self.unsharded = None, True
        self.leaders.clear()

    def shards_for(self, spread: str | Spread) -> list[int | None]:
        """The shards a request goes to, in order; [None] when it is not routed."""
        if self.map is None or spread is Spread.NONE:
            return [None]
        if spread is Spread.ALL:
            return list(self.map.data_shards)
        return [self.map.shard_of(spread)]

    def candidates(self, shard: int, fallback: Sequence[str]) -> tuple[str, ...]:
        """Where to send a request of `shard`, in order: its leader, its members as a holder named
        them, the map's replicas (a membership change may have moved the shard off them), `fallback`."""
        found: list[str] = []
        leader = self.leaders.get(shard)
        if leader is not None:
            found.append(leader)
        found.extend(self.addresses[n] for n in self.members.get(shard, ()) if n in self.addresses)
        if self.map is not None and shard in self.map.replicas:
            found.extend(self.addresses[n] for n in self.map.replicas[shard] if n in self.addresses)
        found.extend(fallback)
        return unique(found)

    def learn_leader(self, shard: int, address: str | None) -> None:
        if address:
            self.leaders[shard] = address

    def forget(self, shard: int, address: str) -> None:
        """`address` failed for `shard`: do not start its next call there."""
        if self.leaders.get(shard) == address:
            del self.leaders[shard]

    def all_addresses(self, fallback: Sequence[str]) -> tuple[str, ...]:
        """Every node a map may be fetched from: the configured endpoints first, then the map's nodes."""
        return unique([*fallback, *self.addresses.values()])
