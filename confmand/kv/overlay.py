"""`OverlayStore`: a KVStore that reads a base store through a WriteSet of pending changes.

Applying a batch of entries writes into one WriteSet while the base store stays untouched until
the driver persists the set; reading through the overlay lets each entry see the writes of the
entries before it in the batch (and of the ops before it in its own txn).

Invariants: `get` and `scan` answer exactly what the base store would hold after
`MemoryKVStore.apply(writes)`; a pending delete hides the base record. The overlay keeps the
pending keys of each kind in a list, appended to in O(1) (puts and deletes are the hot path)
and sorted only when a scan of that kind needs it (then kept sorted until the next new key),
so a scan merges two ordered streams instead of sorting the whole WriteSet on every scan.
A scan sees the pending writes made before it began; callers that change records they are
scanning collect the keys first.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

from confmand.kv.store import Kind, KVStore, WriteSet


class OverlayStore:
    """`base` as it will be once `writes` is applied; `put`/`delete` add to `writes`."""

    __slots__ = ("_base", "_pending", "_unsorted", "writes")

    def __init__(self, base: KVStore, writes: WriteSet | None = None) -> None:
        self._base = base
        self.writes = WriteSet() if writes is None else writes
        self._pending: dict[Kind, list[bytes]] = {}
        self._unsorted: set[Kind] = set()
        for kind, key in sorted(self.writes.changes):
            self._pending.setdefault(kind, []).append(key)

    def get(self, kind: Kind, key: bytes) -> bytes | None:
        changes = self.writes.changes
        if (kind, key) in changes:
            return changes[(kind, key)]
        return self._base.get(kind, key)

    def put(self, kind: Kind, key: bytes, value: bytes) -> None:
        self._track(kind, key)
        self.writes.put(kind, key, value)

    def delete(self, kind: Kind, key: bytes) -> None:
        self._track(kind, key)
        self.writes.delete(kind, key)

    def scan(
        self, kind: Kind, start: bytes = b"", stop: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Records of `kind` with `start <= key < stop` (stop None: to the end), in key order."""
        pending = self._pending.get(kind, [])
        if kind in self._unsorted:
            pending.sort()
            self._unsorted.discard(kind)
        lo = bisect.bisect_left(pending, start)
        hi = len(pending) if stop is None else bisect.bisect_left(pending, stop)
        mine = pending[lo:hi]  # a copy: later puts do not disturb this scan
        if reverse:
            mine.reverse()
        return self._merge(kind, self._base.scan(kind, start, stop, reverse), mine, reverse)

    def _merge(
        self, kind: Kind, base: Iterator[tuple[bytes, bytes]], mine: list[bytes], reverse: bool
    ) -> Iterator[tuple[bytes, bytes]]:
        changes = self.writes.changes
        b = next(base, None)
        i = 0
        while b is not None or i < len(mine):
            m = mine[i] if i < len(mine) else None
            if b is not None and (m is None or (b[0] > m if reverse else b[0] < m)):
                yield b  # the base record comes first and no pending change touches it
                b = next(base, None)
                continue
            assert m is not None
            if b is not None and b[0] == m:
                b = next(base, None)  # the pending change overrides the base record
            i += 1
            value = changes[(kind, m)]
            if value is not None:
                yield m, value

    def _track(self, kind: Kind, key: bytes) -> None:
        if (kind, key) in self.writes.changes:
            return
        self._pending.setdefault(kind, []).append(key)
        self._unsorted.add(kind)
