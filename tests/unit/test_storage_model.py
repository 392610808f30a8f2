"""ShardStorage on LevelDB behaves as MemoryStorage, the core's in-memory twin, across reopens.

Random sequences of Readies (appends that may truncate, hard states,
received snapshots), local snapshots, compactions and reopens are applied to
both; after every step what the core would read back must agree.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from confmand.kv.store import WriteSet
from confmand.raft.ready import Ready, SoftState
from confmand.raft.storage import MemoryStorage
from confmand.raft.types import Entry, EntryKind, HardState, Membership, Role, Snapshot, SnapshotMeta
from confmand.storage import NodeStorage, ShardStorage

MEMBERS = Membership(frozenset({1, 2, 3}))
SHARD = 3

Step = tuple[str, int, int]  # (what, a, b): a and b are clamped into a valid range by the step itself

steps = st.lists(
    st.tuples(
        st.sampled_from(["append", "append", "hard_state", "receive_snapshot", "local_snapshot", "reopen"]),
        st.integers(0, 8),
        st.integers(0, 6),
    ),
    max_size=25,
)


def _ready(**fields: object) -> Ready:
    return Ready(0, SoftState(Role.FOLLOWER, None), **fields)  # type: ignore[arg-type]


class Pair:
    """The same operations on a MemoryStorage and on a ShardStorage in a real LevelDB."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # What stage_bootstrap writes: entry 1 (term 1) sets the first membership, committed.
        self.memory = MemoryStorage()
        first = Entry(1, 1, EntryKind.MEMBERSHIP, MEMBERS.encode())
        self.memory.persist(_ready(entries=[first], hard_state=HardState(term=1, commit=1)))
        self.node = NodeStorage.open(path, "c", 1)
        batch = self.node.new_batch()
        self.node.shard(SHARD).stage_bootstrap(MEMBERS, batch)
        self.node.write(batch, sync=True)
        self.term = 1

    @property
    def shard(self) -> ShardStorage:
        return self.node.shard(SHARD)

    def persist(self, ready: Ready) -> None:
        self.memory.persist(ready)
        batch = self.node.new_batch()
        self.shard.stage_ready(ready, batch)
        self.node.write(batch, sync=True)

    def step(self, what: str, a: int, b: int) -> None:
        snap = self.memory.latest_snapshot.meta.index if self.memory.latest_snapshot else 0
        last = self.memory.last_index
        if what == "append":
            first = max(snap + 1, last + 1 - a)
            self.term += a % 2
            entries = [Entry(self.term, i, EntryKind.NORMAL, b"%d" % i) for i in range(first, first + b + 1)]
            self.persist(_ready(entries=entries))
        elif what == "hard_state":
            self.persist(_ready(hard_state=HardState(term=self.term, vote=a % 4 or None, commit=b)))
        elif what == "receive_snapshot":
            self.persist(_ready(snapshot=Snapshot(SnapshotMeta(last + a, self.term, MEMBERS), b"r%d" % a)))
        elif what == "local_snapshot":
            at = min(last, snap + a)
            snapshot = Snapshot(SnapshotMeta(at, self.term, MEMBERS), b"l%d" % at)
            # Compact right up to the snapshot, as the driver does: MemoryStorage.append assumes
            # its first entry is the snapshot's next one (a shorter compaction confuses it).
            self.memory.save_snapshot(snapshot)
            self.memory.compact(at)
            batch = self.node.new_batch()
            if self.shard.applied()[1] < at:  # the state a snapshot stands for is applied first
                self.shard.stage_applied(WriteSet(), self.term, at, batch)
            self.shard.stage_snapshot(snapshot.meta, batch)
            self.shard.stage_compact(at, batch)
            self.node.write(batch, sync=True)
        else:
            self.node.close()
            self.node = NodeStorage.open(self.path, "c", 1)

    def check(self) -> None:
        want = self.memory.initial_state()
        have = self.shard.initial_state()
        assert have.hard_state == want.hard_state
        assert have.snapshot_meta == want.snapshot_meta
        snap = want.snapshot_meta.index if want.snapshot_meta else 0
        assert have.entries == [e for e in want.entries if e.index > snap]
        stored = self.memory.snapshot()
        assert self.shard.snapshot_meta() == (stored.meta if stored else None)
        # Entries at or below the snapshot that were not compacted yet are invisible to the core
        # (MemoryStorage even drops them on the next append); only the bounds must not hide a gap.
        first, last = self.shard.log_bounds()
        assert last == self.memory.last_index
        assert first <= snap + 1


@settings(max_examples=60, deadline=None)
@given(steps)
def test_shard_storage_reads_back_what_memory_storage_holds(script: list[Step]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pair = Pair(Path(tmp))
        try:
            for what, a, b in script:
                pair.step(what, a, b)
                pair.check()
        finally:
            pair.node.close()
