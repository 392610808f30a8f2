"""`EventWindow`: the key changes a replica applied lately, kept in memory for its watchers.

A watch is served from the applied log of whichever replica the client reached (docs/protocol.md,
*Watches*): every replica applies the same entries in the same order, so every replica can tell a
watcher what changed after a version, and a watcher that reconnects elsewhere resumes there.

The window holds every change of every entry in `(floor, top]`, in log order: `top` is the last
entry applied, `floor` the newest entry whose changes are no longer here (the replica's applied
version when it opened, the snapshot it installed, or the last entry evicted to keep the window
within `max_events`). A watch from a version below `floor` cannot be served here: COMPACTED.
Entries that changed no key (no-ops, membership, failed writes) leave nothing but move `top`.

Eviction drops whole entries, oldest first, so the changes of one entry (a txn) are either all
here or all gone, and a watcher is never handed half of one.
"""

from __future__ import annotations

import bisect
from typing import Final

from confmand.kv.store import ChangeEvent
from confmand.protocol.types import Version

DEFAULT_MAX_EVENTS: Final = 10_000


def _index_of(event: ChangeEvent) -> int:
    return event[0]


class EventWindow:
    __slots__ = ("_events", "_head", "floor", "max_events", "top")

    def __init__(self, applied: Version, max_events: int = DEFAULT_MAX_EVENTS) -> None:
        if max_events < 1:
            raise ValueError(f"max_events must be at least 1, got {max_events}")
        self.max_events = max_events
        self.floor = applied
        self.top = applied
        self._events: list[ChangeEvent] = []
        self._head = 0  # events before it were evicted (the list is trimmed now and then)

    def __len__(self) -> int:
        return len(self._events) - self._head

    def extend(self, events: list[ChangeEvent], top: Version) -> None:
        """The changes of entries up to `top`, just applied, in log order."""
        if top.index < self.top.index:
            raise ValueError(f"applied went back: {top} after {self.top}")
        if events and events[0][0] <= self.top.index:
            raise ValueError(f"change at index {events[0][0]} is not after {self.top}")
        self._events.extend(events)
        self.top = top
        if len(self) > self.max_events:
            self._evict()

    def reset(self, at: Version) -> None:
        """A snapshot was installed at `at`: what changed before it is not known here."""
        self._events = []
        self._head = 0
        self.floor = at
        self.top = at

    def serves(self, after: int) -> bool:
        """Whether every change after index `after` is (or, once applied, will be) here."""
        return after >= self.floor.index

    def after(self, index: int, max_events: int, max_bytes: int) -> tuple[list[ChangeEvent], bool]:
        """Changes of entries after `index`, in log order, and whether they reach `top`.

        At most `max_events` changes and about `max_bytes` of keys and values, unless the first
        entry alone has more: an entry's changes are never split.
        """
        events = self._events
        start = bisect.bisect_right(events, index, lo=self._head, key=_index_of)
        size = 0
        for i in range(start, len(events)):
            event = events[i]
            full = i - start >= max_events or size >= max_bytes
            if full and event[0] != events[i - 1][0]:  # the limit met at a new entry: stop before it
                return events[start:i], False
            value = event[4]
            size += len(event[3]) + (0 if value is None else len(value))
        return events[start:], True

    def _evict(self) -> None:
        events = self._events
        excess = len(self) - self.max_events
        # The oldest `excess` changes go, and the rest of the entry the last of them is in.
        last = events[self._head + excess - 1][0]
        end = bisect.bisect_right(events, last, lo=self._head, key=_index_of)
        gone = events[end - 1]
        self.floor = Version(gone[1], gone[0])
        self._head = end
        if self._head > len(events) // 2:
            del events[: self._head]
            self._head = 0
