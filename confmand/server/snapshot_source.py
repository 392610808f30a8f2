"""What the Raft core of a replica reads from storage: its log at start, and a snapshot to send.

A shard's storage keeps no copy of the state as snapshot data (shard_storage.py,
"Snapshots"): the snapshot a lagging follower gets is made when the leader's core
asks for one, from the state machine's records as written, at the applied index.
Between loop turns nothing is half-written, so the records and that index agree.
"""

from __future__ import annotations

from collections.abc import MutableMapping

from confmand.kv.snapshot import export_state
from confmand.raft import Snapshot
from confmand.raft.storage import PersistedState
from confmand.storage import ShardStorage


class SnapshotSource:
    """The core's `Storage` (confmand/raft/storage.py) over one shard's storage."""

    __slots__ = ("_counters", "_storage")

    def __init__(self, storage: ShardStorage, counters: MutableMapping[str, int]) -> None:
        self._storage = storage
        # The node's counters: how many snapshots were made to send, how many past the stored one.
        self._counters = counters

    def initial_state(self) -> PersistedState:
        return self._storage.initial_state()

    def snapshot(self) -> Snapshot | None:
        meta = self._storage.applied_snapshot_meta()
        if meta is None:
            return None
        self._counters["snapshots_made_to_send"] += 1
        stored = self._storage.snapshot_meta()
        if stored is not None and meta.index > stored.index:
            self._counters["snapshots_made_past_stored"] += 1
        return Snapshot(meta, export_state(self._storage))
