"""A follower's side of InstallSnapshot: reassemble the chunks of one snapshot, in order.

Chunks may arrive lost, duplicated or out of order. The receiver takes a
chunk only at the offset it expects and always answers with the offset it
wants next, so the leader resends from there; a chunk of another snapshot
restarts reassembly only from its first byte. Nothing is installed until
the chunk marked `done` completes the data.
"""

from __future__ import annotations

from dataclasses import dataclass

from confmand.raft.messages import InstallSnapshot
from confmand.raft.types import Snapshot, SnapshotMeta


@dataclass(frozen=True, slots=True)
class ChunkResult:
    next_offset: int
    snapshot: Snapshot | None  # the whole snapshot, once its last chunk arrived


class SnapshotReceiver:
    __slots__ = ("_buffer", "_meta")

    def __init__(self) -> None:
        self._meta: SnapshotMeta | None = None
        self._buffer = bytearray()

    def reset(self) -> None:
        self._meta = None
        self._buffer = bytearray()

    def on_chunk(self, msg: InstallSnapshot) -> ChunkResult:
        if self._meta != msg.meta:
            if msg.offset != 0:
                return ChunkResult(0, None)  # a piece of a snapshot we are not assembling
            self._meta = msg.meta
            self._buffer = bytearray()
        buffer = self._buffer
        if msg.offset != len(buffer):
            return ChunkResult(len(buffer), None)
        buffer += msg.data
        if not msg.done:
            return ChunkResult(len(buffer), None)
        snapshot = Snapshot(msg.meta, bytes(buffer))
        self.reset()
        return ChunkResult(len(snapshot.data), snapshot)
