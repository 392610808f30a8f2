"""A shard's answer to a `backup` read: its whole state, and what it owns, as its leader applied it.

The state is the snapshot blob a lagging follower would get (kv/snapshot.py). A data shard
also says which partitions it owns, which are on their way out (LEAVING), and which it
started with; the meta shard says which map it holds. `collect` checks these against one map
so that a backup never catches a partition in two shards or in none (a move in flight).
"""

from __future__ import annotations

from confmand.kv.partitions import LEAVING, OWNED, Ownership, state_of
from confmand.kv.snapshot import export_state
from confmand.kv.store import KVStore
from confmand.server.meta import stored_map


def shard_backup(store: KVStore, ownership: Ownership | None) -> dict[str, object]:
    """The reply fields of a `backup` read of `store` (ownership None: the meta shard)."""
    fields: dict[str, object] = {"state": export_state(store)}
    if ownership is None:
        shard_map = stored_map(store)
        fields["map"] = None if shard_map is None else shard_map.to_wire()
        return fields
    owns, leaving = [], []
    for partition in range(ownership.partitions):
        state = state_of(store, ownership, partition).state
        if state == OWNED:
            owns.append(partition)
        elif state == LEAVING:
            leaving.append(partition)
    fields.update(owns=owns, leaving=leaving, initial=sorted(ownership.initial))
    return fields
