"""The replica's view of the Raft log: a snapshot point, then the entries after it.

Invariants (asserted, and checked by the simulator after every step):
- `entries[k].index == snapshot_index + 1 + k`: the log is contiguous.
- Terms never decrease along the log.
- `applied <= handed_out <= commit <= last_index`. `handed_out` is how far
  committed entries went out in Readies; `applied` is how far the driver has
  applied them: it moves only when a Ready comes back to `advance()`, so it
  is the one applied index (the driver reads it, never keeps its own).
  `snapshot_index <= applied` except right after a snapshot arrives, when the
  log jumps to its index and `applied` follows once that Ready is advanced.
- A committed entry is never truncated: `truncate_from(i)` with `i <= commit`
  is a safety violation and raises.
- `stable` (the last index the driver has made durable) never exceeds
  `last_index`; only entries after `unstable_from - 1` are still to be handed
  to the driver for persisting.

The whole log after the last compaction point is kept in memory, as etcd's
server does with its MemoryStorage: compaction after each snapshot bounds it.
"""

from __future__ import annotations

from confmand.raft.types import Entry


class RaftLog:
    __slots__ = (
        "applied",
        "applied_term",
        "commit",
        "entries",
        "handed_out",
        "snapshot_index",
        "snapshot_term",
        "stable",
        "unstable_from",
    )

    def __init__(self, snapshot_index: int, snapshot_term: int, entries: list[Entry], commit: int) -> None:
        self.snapshot_index = snapshot_index
        self.snapshot_term = snapshot_term
        self.entries = entries
        if entries and entries[0].index != snapshot_index + 1:
            raise ValueError(f"log starts at {entries[0].index}, expected {snapshot_index + 1}")
        self.commit = max(commit, snapshot_index)
        if self.commit > self.last_index:
            raise ValueError(f"commit {commit} is beyond the last log index {self.last_index}")
        self.applied = self.handed_out = snapshot_index
        self.applied_term = snapshot_term
        self.stable = self.last_index  # what was loaded from storage is durable
        self.unstable_from = self.last_index + 1

    @property
    def first_index(self) -> int:
        return self.snapshot_index + 1

    @property
    def last_index(self) -> int:
        return self.snapshot_index + len(self.entries)

    @property
    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.snapshot_term

    def term_at(self, index: int) -> int | None:
        """The term of the entry at `index`, or None when it is compacted away or not yet there."""
        offset = index - self.snapshot_index
        if offset == 0:
            return self.snapshot_term
        if 0 < offset <= len(self.entries):
            return self.entries[offset - 1].term
        return None

    def entry_at(self, index: int) -> Entry:
        return self.entries[index - self.snapshot_index - 1]

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft §5.4.1: a candidate's log at least as up-to-date as ours gets our vote."""
        my_term = self.last_term
        return last_term > my_term or (last_term == my_term and last_index >= self.last_index)

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """Entries with lo <= index < hi; all of them must be in memory."""
        base = self.snapshot_index + 1
        return self.entries[lo - base : hi - base]

    def append(self, entries: list[Entry]) -> None:
        """Entries that follow the last one directly (the leader's own proposals)."""
        self.entries.extend(entries)

    def truncate_from(self, index: int) -> None:
        if index <= self.commit:
            raise AssertionError(f"safety: truncating committed entry {index} (commit {self.commit})")
        del self.entries[index - self.snapshot_index - 1 :]
        self.stable = min(self.stable, index - 1)
        self.unstable_from = min(self.unstable_from, index)

    def find_conflict(self, entries: list[Entry] | tuple[Entry, ...]) -> int:
        """Position in `entries` of the first one this log lacks or holds with another term.

        Returns len(entries) when the log already holds them all. The common case,
        entries that all lie after our last index, costs one comparison.
        """
        last = self.last_index
        if not entries or entries[0].index > last:
            return 0
        tail = entries[-1]
        if tail.index <= last and self.term_at(tail.index) == tail.term:
            return len(entries)  # Log Matching: the whole run is already here
        for pos, entry in enumerate(entries):
            if entry.index > last or self.term_at(entry.index) != entry.term:
                return pos
        return len(entries)

    def first_index_of_term(self, index: int) -> int:
        """The first index holding the same term as `index` (for the conflict hint)."""
        term = self.term_at(index)
        while index - 1 > self.snapshot_index and self.term_at(index - 1) == term:
            index -= 1
        return index

    def last_index_of_term(self, term: int, at_most: int) -> int | None:
        """The last index <= at_most whose entry has `term`, or None if the log has none."""
        index = min(at_most, self.last_index)
        while index > self.snapshot_index:
            entry_term = self.entry_at(index).term
            if entry_term == term:
                return index
            if entry_term < term:
                return None
            index -= 1
        return None

    def take_unstable(self) -> list[Entry]:
        """Entries not yet handed to the driver for persisting; hands them over."""
        if self.unstable_from > self.last_index:
            return []
        out = self.slice(self.unstable_from, self.last_index + 1)
        self.unstable_from = self.last_index + 1
        return out

    def stable_to(self, index: int, term: int) -> None:
        """The driver made entries through (index, term) durable."""
        if index > self.stable and self.term_at(index) == term:
            self.stable = index

    def compact(self, index: int) -> None:
        """Drop entries through `index` (a stored snapshot covers them)."""
        if index <= self.snapshot_index:
            return
        if index > self.applied or index > self.stable:
            raise ValueError(f"cannot compact to {index}: applied {self.applied}, stable {self.stable}")
        term = self.term_at(index)
        assert term is not None
        del self.entries[: index - self.snapshot_index]
        self.snapshot_index = index
        self.snapshot_term = term

    def restore(self, index: int, term: int) -> None:
        """Replace the whole log by a snapshot's position."""
        self.entries = []
        self.snapshot_index = index
        self.snapshot_term = term
        self.commit = index
        self.handed_out = index  # `applied` follows when the Ready carrying the snapshot is advanced
        self.stable = index
        self.unstable_from = index + 1
