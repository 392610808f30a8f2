"""Which replicas form the shard, as a function of the log.

Membership changes are single-server changes that take effect as soon as
their entry is *appended* (not committed), as in the Raft thesis §4.1: the
membership in force is the one in the latest MEMBERSHIP entry of the log, or
the snapshot's when the log holds none. Truncating a MEMBERSHIP entry
therefore reverts the membership, and this tracker keeps the history since
the snapshot to make that exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter

from confmand.raft.types import Entry, EntryKind, Membership

_kind_of = itemgetter(2)


class MembershipTracker:
    __slots__ = ("_base", "_base_index", "_history")

    def __init__(self, base: Membership | None, base_index: int) -> None:
        self._base = base
        self._base_index = base_index
        self._history: list[tuple[int, Membership]] = []  # (entry index, membership), ascending

    @property
    def current(self) -> Membership | None:
        return self._history[-1][1] if self._history else self._base

    @property
    def latest_index(self) -> int:
        """Index of the entry that set the current membership (the snapshot's index if none)."""
        return self._history[-1][0] if self._history else self._base_index

    def at(self, index: int) -> Membership | None:
        """The membership in force once the log through `index` is appended."""
        for entry_index, membership in reversed(self._history):
            if entry_index <= index:
                return membership
        return self._base

    @staticmethod
    def parse(entries: Sequence[Entry]) -> list[tuple[int, Membership]]:
        """The memberships that `entries` set; raises ValueError on a malformed one."""
        membership_kind = EntryKind.MEMBERSHIP
        if membership_kind not in map(_kind_of, entries):  # the common case, scanned in C
            return []
        return [(e.index, Membership.decode(e.data)) for e in entries if e.kind == membership_kind]

    def on_append(self, parsed: list[tuple[int, Membership]]) -> None:
        self._history.extend(parsed)

    def on_truncate(self, index: int) -> None:
        while self._history and self._history[-1][0] >= index:
            self._history.pop()

    def compact(self, index: int) -> None:
        self._base = self.at(index)
        self._base_index = max(self._base_index, index)
        self._history = [(i, m) for i, m in self._history if i > index]

    def restore(self, membership: Membership, index: int) -> None:
        self._base = membership
        self._base_index = index
        self._history = []
