"""The storage the core reads from, and its in-memory twin.

The core never writes storage: the driver persists what each `Ready` carries.
The core reads storage twice: once at start (`initial_state`), and whenever
it must send a snapshot to a follower that fell behind the compacted log
(`snapshot`).

A new shard is bootstrapped by storing a snapshot at index 0 that carries
the initial membership and an empty state machine. A replica that joins an
existing shard starts with empty storage and learns the membership from the
leader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from confmand.raft.types import Entry, HardState, Membership, Snapshot, SnapshotMeta

if TYPE_CHECKING:
    from confmand.raft.ready import Ready


@dataclass(frozen=True, slots=True)
class PersistedState:
    hard_state: HardState
    snapshot_meta: SnapshotMeta | None
    entries: list[Entry]  # contiguous, starting right after the snapshot


class Storage(Protocol):
    def initial_state(self) -> PersistedState: ...

    def snapshot(self) -> Snapshot | None: ...


@dataclass(slots=True)
class MemoryStorage:
    """Storage held in memory: what the simulator's nodes and the unit tests use.

    Everything in it counts as fsynced; a simulated crash keeps a
    MemoryStorage and loses only what had not been persisted into it yet.
    """

    hard_state: HardState = field(default_factory=HardState)
    latest_snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)

    @classmethod
    def bootstrap(cls, membership: Membership, data: bytes = b"") -> MemoryStorage:
        return cls(latest_snapshot=Snapshot(SnapshotMeta(0, 0, membership), data))

    def initial_state(self) -> PersistedState:
        meta = self.latest_snapshot.meta if self.latest_snapshot else None
        return PersistedState(self.hard_state, meta, list(self.entries))

    def snapshot(self) -> Snapshot | None:
        return self.latest_snapshot

    @property
    def last_index(self) -> int:
        if self.entries:
            return self.entries[-1].index
        return self.latest_snapshot.meta.index if self.latest_snapshot else 0

    def persist(self, ready: Ready) -> None:
        """Step 1 of the Ready protocol: snapshot, then entries, then hard state."""
        if ready.snapshot is not None:
            self.install_snapshot(ready.snapshot)
        if ready.entries:
            self.append(ready.entries)
        if ready.hard_state is not None:
            self.hard_state = ready.hard_state

    def append(self, entries: list[Entry]) -> None:
        first = entries[0].index
        # The stored log starts at its first entry, which a snapshot saved without compaction
        # does not move: entries before the snapshot index may still be here.
        offset = self.entries[0].index if self.entries else self._snapshot_index() + 1
        if first <= self._snapshot_index():
            raise ValueError(f"entry {first} lies inside the snapshot at {self._snapshot_index()}")
        if first > self.last_index + 1:
            raise ValueError(f"gap in the log: last {self.last_index}, appending from {first}")
        del self.entries[max(0, first - offset) :]
        self.entries.extend(entries)

    def install_snapshot(self, snapshot: Snapshot) -> None:
        """Take a received snapshot: it replaces the whole log (the core does the same)."""
        self.entries = []
        self.latest_snapshot = snapshot

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """Keep a snapshot the state machine made locally; the log is compacted separately."""
        current = self._snapshot_index()
        if snapshot.meta.index < current:
            raise ValueError(f"snapshot {snapshot.meta.index} is older than the stored {current}")
        self.latest_snapshot = snapshot

    def compact(self, index: int) -> None:
        """Drop the log entries up to `index` (a stored snapshot must cover them)."""
        if index > self._snapshot_index():
            raise ValueError(f"cannot compact to {index}: the snapshot covers only {self._snapshot_index()}")
        del self.entries[: max(0, index - self.entries[0].index + 1) if self.entries else 0]

    def _snapshot_index(self) -> int:
        return self.latest_snapshot.meta.index if self.latest_snapshot else 0
