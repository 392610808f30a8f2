"""The small store interface the config state machine reads and writes, and its in-memory twin.

The state machine owns the layout *inside* a shard: it names a record by a
one-byte `kind` (data, history, audit, sessions, ...) and a key of bytes. The
node's storage (confmand/storage, LevelDB) places `(kind, key)` under the
shard's prefix; `MemoryKVStore` keeps it in a sorted list for tests and the
simulator.

Writes never go to the store directly: applying a batch of committed entries
collects them in a `WriteSet`, which the driver persists together with the
applied index in one atomic batch (so recovery replays the log from
applied + 1 and never applies an entry twice). Reads during apply go through
the write set first (`OverlayStore`), so entries of one batch see each other.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

Kind = bytes  # exactly one byte
# One change of a key as a watcher sees it: (entry index, entry term, op "put" or "delete", key,
# value (None for a delete), the entry's HLC stamp). Plain tuples: one is made per change applied.
ChangeEvent = tuple[int, int, str, str, bytes | None, int]


class KVStore(Protocol):
    def get(self, kind: Kind, key: bytes) -> bytes | None: ...

    def scan(
        self, kind: Kind, start: bytes = b"", stop: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Records of `kind` with `start <= key < stop` (stop None: to the end), in key order."""
        ...


@dataclass(slots=True)
class WriteSet:
    """Pending changes, in the order made: `None` marks a delete. Later changes of a key win."""

    changes: dict[tuple[Kind, bytes], bytes | None] = field(default_factory=dict)
    # The key changes the writes make, in log order (a txn's in the order it made them): what
    # the driver hands to watchers once the batch is durable. Records moved in with a partition
    # are not changes and are not here.
    events: list[ChangeEvent] = field(default_factory=list)

    def put(self, kind: Kind, key: bytes, value: bytes) -> None:
        self.changes[(kind, key)] = value

    def delete(self, kind: Kind, key: bytes) -> None:
        self.changes[(kind, key)] = None

    def __len__(self) -> int:
        return len(self.changes)


@dataclass(slots=True)
class MemoryKVStore:
    """A KVStore in memory: sorted `(kind, key)` pairs and a dict of values."""

    _keys: list[tuple[Kind, bytes]] = field(default_factory=list)
    _values: dict[tuple[Kind, bytes], bytes] = field(default_factory=dict)

    def get(self, kind: Kind, key: bytes) -> bytes | None:
        return self._values.get((kind, key))

    def scan(
        self, kind: Kind, start: bytes = b"", stop: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        lo = bisect.bisect_left(self._keys, (kind, start))
        hi = bisect.bisect_left(self._keys, (kind, stop)) if stop is not None else self._kind_end(kind)
        selected = self._keys[lo:hi]
        for k in reversed(selected) if reverse else selected:
            yield k[1], self._values[k]

    def apply(self, writes: WriteSet) -> None:
        """What the driver does with a WriteSet, here in memory."""
        for k, value in writes.changes.items():
            if value is None:
                if k in self._values:
                    del self._values[k]
                    del self._keys[bisect.bisect_left(self._keys, k)]
            else:
                if k not in self._values:
                    bisect.insort(self._keys, k)
                self._values[k] = value

    def clear(self) -> None:
        self._keys.clear()
        self._values.clear()

    def _kind_end(self, kind: Kind) -> int:
        if kind[0] == 0xFF:  # the last kind there can be: everything after its start is its own
            return len(self._keys)
        return bisect.bisect_left(self._keys, (bytes([kind[0] + 1]), b""))
