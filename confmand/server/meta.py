"""What the meta shard (shard 0) holds: the shard map and the node registry, under reserved keys.

The meta shard runs the same config state machine as a data shard; its keys are these:
- `shardmap`: the current map (`ShardMap.to_wire()` in msgpack); its epoch orders maps;
- `nodes/<id>`: one node's addresses (`{peer_address, client_address}` in msgpack).

No client key reaches the meta shard (keys route to data shards only), so nothing else writes
there. The first leader of the meta shard that finds no map writes the first map and the
registry in one txn guarded by "no map yet", so a second leader racing it changes nothing.
Data shards never wait for the meta shard: every node starts from the same first map
(`NodeConfig.initial_map`), and a node adopts a stored map only when its epoch is newer.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgpack

from confmand.config import PeerConfig
from confmand.kv.commands import Command
from confmand.kv.queries import get_key
from confmand.kv.store import KVStore
from confmand.protocol.ops import Txn
from confmand.protocol.shardmap import ShardMap
from confmand.protocol.types import Compare, TxnOp, WireError

MAP_KEY = "shardmap"
NODE_PREFIX = "nodes/"
PRINCIPAL = "confmand"  # who the audit record names for what the daemon writes itself


def seed_command(shard_map: ShardMap, peers: Iterable[PeerConfig], hlc: int) -> Command:
    """The txn that writes the first map and the registry, unless a map is already there."""
    txn = Txn((Compare(MAP_KEY, "exists", exists=False),), (map_put(shard_map), *registry_puts(peers)))
    return Command(txn, hlc, PRINCIPAL, None)


def map_put(shard_map: ShardMap) -> TxnOp:
    return TxnOp("put", MAP_KEY, _pack(shard_map.to_wire()))


def registry_puts(peers: Iterable[PeerConfig]) -> list[TxnOp]:
    """The node registry's entries: each node's addresses."""
    return [
        TxnOp(
            "put",
            f"{NODE_PREFIX}{p.id}",
            _pack({"peer_address": p.peer_address, "client_address": p.client_address}),
        )
        for p in peers
    ]


def stored_map(store: KVStore) -> ShardMap | None:
    """The map the meta shard holds (None: none yet); WireError if what is stored is not one."""
    record = get_key(store, MAP_KEY)
    if record is None:
        return None
    try:
        raw = msgpack.unpackb(record.value, raw=False)
    except ValueError as exc:
        raise WireError(f"the stored shard map is not msgpack: {exc}") from exc
    return ShardMap.from_wire(raw)


def _pack(obj: object) -> bytes:
    packed: bytes = msgpack.packb(obj, use_bin_type=True)
    return packed
