"""The in-memory twin of the node's LevelDB, with LevelDB's durability rules, for the simulator.

`MemoryDisk` is one node's disk; `disk.opener` opens handles on it the way
`open_plyvel` opens a LevelDB, so `NodeStorage` runs its real code over it
(`NodeStorage.open_with(disk.opener, ...)`), failed-write reopen included.

Durability, as LevelDB with one log file gives it:
- a batch written with `sync=False` is visible at once but not durable;
- a batch written with `sync=True` makes itself and every earlier batch
  durable (the log is one append-only file: its fsync covers all before);
- `power_loss()` forgets what was not durable: a prefix of the unsynced
  batches may survive (a torn tail is dropped whole, as LevelDB's recovery
  drops a torn record), drawn from the generator the caller hands in;
  every open handle dies with the process.

Faults come from `before_write(sync, ops)`, a hook the simulator sets: it
may raise `OSError` (a full disk is errno ENOSPC, as plyvel reports it;
anything else is an I/O error) to refuse the batch, which then does not land
at all, or advance the node's simulated time (a slow fsync), or raise any
other exception to stop the process right there (a crash mid-write).

Reads see every batch written so far, as LevelDB does. Iterators take a
snapshot of their range when made, as plyvel's do.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

Op = tuple[bytes, bytes | None]  # (key, value); None: delete
WriteHook = Callable[[bool, list[Op]], None]


class MemoryDisk:
    def __init__(self) -> None:
        self._durable: dict[bytes, bytes] = {}
        self._unsynced: list[list[Op]] = []
        self._live: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []  # the live keys, sorted
        self._handles: list[MemoryDB] = []
        self.before_write: WriteHook | None = None
        self.writes = 0
        self.syncs = 0

    def opener(self, path: Path, create: bool) -> MemoryDB:
        """Open a handle like `plyvel.DB(path, create_if_missing=create)`; one at a time (LevelDB's LOCK)."""
        if any(not h.closed for h in self._handles):
            raise OSError(11, f"IO error: lock {path}/LOCK: already held by process")
        if not create and not self._live and not self._durable:
            raise OSError(2, f"Invalid argument: {path}/CURRENT: does not exist (create_if_missing is false)")
        handle = MemoryDB(self)
        self._handles.append(handle)
        return handle

    def durable_items(self, start: bytes, stop: bytes) -> list[tuple[bytes, bytes]]:
        """What would survive a power loss now, in `start <= key < stop` (for checkers)."""
        return sorted((k, v) for k, v in self._durable.items() if start <= k < stop)

    @property
    def unsynced_batches(self) -> int:
        return len(self._unsynced)

    def power_loss(self, rng: random.Random | None = None) -> int:
        """Forget what was not synced (keeping a random prefix of it when `rng` is given).

        Returns how many unsynced batches were lost.
        """
        for handle in self._handles:
            handle.closed = True
        self._handles.clear()
        keep = rng.randint(0, len(self._unsynced)) if rng is not None else 0
        lost = len(self._unsynced) - keep
        for ops in self._unsynced[:keep]:
            _apply(self._durable, ops)
        self._unsynced.clear()
        self._live = dict(self._durable)
        self._keys = sorted(self._live)
        return lost

    # ------------------------------------------------------------------ for handles

    def write(self, ops: list[Op], sync: bool) -> None:
        if self.before_write is not None:
            self.before_write(sync, ops)
        self.writes += 1
        live, keys = self._live, self._keys
        for key, value in ops:
            if value is None:
                if live.pop(key, None) is not None:
                    del keys[bisect.bisect_left(keys, key)]
            else:
                if key not in live:
                    bisect.insort(keys, key)
                live[key] = value
        self._unsynced.append(ops)
        if sync:
            self.syncs += 1
            for batch in self._unsynced:
                _apply(self._durable, batch)
            self._unsynced.clear()

    def get(self, key: bytes) -> bytes | None:
        return self._live.get(key)

    def range(self, start: bytes | None, stop: bytes | None) -> list[bytes]:
        keys = self._keys
        lo = 0 if start is None else bisect.bisect_left(keys, start)
        hi = len(keys) if stop is None else bisect.bisect_left(keys, stop)
        return keys[lo:hi]


def _apply(data: dict[bytes, bytes], ops: list[Op]) -> None:
    for key, value in ops:
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value


class MemoryDB:
    """One open handle on a `MemoryDisk`: the subset of `plyvel.DB` that NodeStorage uses."""

    def __init__(self, disk: MemoryDisk) -> None:
        self._disk = disk
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def get(self, key: bytes, verify_checksums: bool = False) -> bytes | None:
        self._check()
        return self._disk.get(key)

    def write_batch(self, sync: bool = False) -> _MemoryWriteBatch:
        self._check()
        return _MemoryWriteBatch(self, sync)

    def iterator(
        self,
        start: bytes | None = None,
        stop: bytes | None = None,
        include_value: bool = True,
        reverse: bool = False,
        verify_checksums: bool = False,
    ) -> _MemoryIterator:
        self._check()
        disk = self._disk
        keys = disk.range(start, stop)
        items = [(k, disk.get(k) or b"") for k in keys]
        return _MemoryIterator(items, include_value, reverse)

    def _write(self, ops: list[Op], sync: bool) -> None:
        self._check()
        self._disk.write(ops, sync)

    def _check(self) -> None:
        if self.closed:
            raise RuntimeError("Database is closed")


class _MemoryWriteBatch:
    def __init__(self, db: MemoryDB, sync: bool) -> None:
        self._db = db
        self._sync = sync
        self._ops: list[Op] = []

    def put(self, key: bytes, value: bytes) -> None:
        self._ops.append((key, value))

    def delete(self, key: bytes) -> None:
        self._ops.append((key, None))

    def write(self) -> None:
        self._db._write(self._ops, self._sync)


class _MemoryIterator:
    """A snapshot of a key range; supports `seek` (forward iterators) and `with`, like plyvel's."""

    def __init__(self, items: list[tuple[bytes, bytes]], include_value: bool, reverse: bool) -> None:
        self._items = items[::-1] if reverse else items
        self._keys = [k for k, _ in items]
        self._pos = 0
        self._include_value = include_value
        self._reverse = reverse

    def __iter__(self) -> Iterator[object]:
        return self

    def __next__(self) -> object:
        if self._pos >= len(self._items):
            raise StopIteration
        key, value = self._items[self._pos]
        self._pos += 1
        return (key, value) if self._include_value else key

    def seek(self, target: bytes) -> None:
        assert not self._reverse, "seek on a reverse iterator is not used"
        self._pos = bisect.bisect_left(self._keys, target)

    def __enter__(self) -> _MemoryIterator:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None
