"""What storage caches of one shard's Raft records, as one immutable value.

A `ShardState` describes the shard as of some point in the write order: the
durable state (everything written) or the staged tip (everything written or
staged in a batch not yet written). Staging computes a new tip from the old
one; a successful write makes a batch's tip durable.

Invariants:
- The stored log is `log_first..log_last`, contiguous; an empty log is
  normalised to `(s + 1, s)` where `s` is the snapshot index (0: none).
- `last_index` is the last log index Raft sees: the last entry's, or the
  snapshot's when the log is empty (as `MemoryStorage.last_index`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from confmand.raft.types import HardState, SnapshotMeta


@dataclass(frozen=True, slots=True)
class ShardState:
    hard_state: HardState | None = None
    snapshot: SnapshotMeta | None = None  # the latest snapshot's meta (no data: shard_storage.py)
    log_first: int = 1
    log_last: int = 0
    applied: tuple[int, int] = (0, 0)

    def __init__(
        self,
        hard_state: HardState | None = None,
        snapshot: SnapshotMeta | None = None,
        log_first: int = 1,
        log_last: int = 0,
        applied: tuple[int, int] = (0, 0),
    ) -> None:
        object.__setattr__(self, "hard_state", hard_state)
        object.__setattr__(self, "snapshot", snapshot)
        object.__setattr__(self, "log_first", log_first)
        object.__setattr__(self, "log_last", log_last)
        object.__setattr__(self, "applied", applied)

    @property
    def snapshot_index(self) -> int:
        return self.snapshot.index if self.snapshot else 0

    @property
    def log_empty(self) -> bool:
        return self.log_first > self.log_last

    @property
    def last_index(self) -> int:
        return self.snapshot_index if self.log_empty else self.log_last

    @property
    def has_raft_state(self) -> bool:
        return self.snapshot is not None or self.hard_state is not None or not self.log_empty

    def with_empty_log(self) -> ShardState:
        s = self.snapshot_index
        return replace(self, log_first=s + 1, log_last=s)

    # The staging hot path makes a new tip per Ready and per apply batch of every shard: these
    # call the constructor directly (dataclasses.replace costs several times more).

    def with_log(self, log_first: int, log_last: int) -> ShardState:
        return ShardState(self.hard_state, self.snapshot, log_first, log_last, self.applied)

    def with_hard_state(self, hard_state: HardState) -> ShardState:
        return ShardState(hard_state, self.snapshot, self.log_first, self.log_last, self.applied)

    def with_applied(self, applied: tuple[int, int]) -> ShardState:
        return ShardState(self.hard_state, self.snapshot, self.log_first, self.log_last, applied)
