"""The in-memory twin of the node's LevelDB, with LevelDB's durability rules, for the simulator.

`MemoryDisk` is one node's disk; `disk.opener` opens handles on it the way
`open_plyvel` opens a LevelDB, so `NodeStorage` runs its real code over it
(`NodeStorage.open_with(disk.opener, ...)`), failed-write reopen included.

Durability, as LevelDB gives it (its write-ahead log is a series of files):
- a batch written with `sync=False` is visible at once but not durable;
- a batch written with `sync=True` fsyncs the *current* log file: it makes
  itself and every earlier batch of that file durable;
- when the memtable is full (`log_bytes_max`, LevelDB's write_buffer_size)
  LevelDB starts a new log file and closes the old one *without* syncing it
  (google/leveldb#193); the old file's batches become durable only once a
  background flush has written them to a table, `flush_after_writes` writes
  later. A synced write in the new file does not cover them: a power cut in
  between can lose an older unsynced batch while a later synced one survives;
- `power_loss()` forgets what was not durable: of each log file's unsynced
  tail a random prefix may survive (a torn tail is dropped whole, as
  LevelDB's recovery drops a torn record), drawn from the generator the
  caller hands in; every open handle dies with the process.

Faults come from `before_write(sync, ops)`, a hook the simulator sets: it
may raise `OSError` (a full disk is errno ENOSPC, as plyvel reports it;
anything else is an I/O error) to refuse the batch, which then does not land
at all, or advance the node's simulated time (a slow fsync), or raise any
other exception to stop the process right there (a crash mid-write).
`after_write(sync)` runs once the batch has landed (and, if `sync`, is
durable): raising there stops the process after the write, before the
node can act on it (send what it just persisted).

Reads see every batch written so far, as LevelDB does. Iterators take a
snapshot of their range when made, as plyvel's do.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

Op = tuple[bytes, bytes | None]  # (key, value); None: delete
WriteHook = Callable[[bool, list[Op]], None]


@dataclass(slots=True)
class _Written:
    """A batch not yet folded into the durable base: its log file, and whether it is durable."""

    log_file: int
    ops: list[Op]
    durable: bool = False


class MemoryDisk:
    def __init__(self, log_bytes_max: int = 4 << 20, flush_after_writes: int = 3) -> None:
        self.log_bytes_max = log_bytes_max
        self.flush_after_writes = flush_after_writes
        self._base: dict[bytes, bytes] = {}  # durable, and older than every batch still pending
        self._pending: list[_Written] = []  # in write order
        self._live: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []  # the live keys, sorted
        self._handles: list[MemoryDB] = []
        self._log_file = 0
        self._log_bytes = 0
        self._flush_due: tuple[int, int] | None = None  # (closed log file, at write count)
        self.before_write: WriteHook | None = None
        self.after_write: Callable[[bool], None] | None = None
        self.on_log_switch: Callable[[], None] | None = None  # for a simulator to aim a crash
        self.writes = 0
        self.syncs = 0
        self.log_switches = 0

    def opener(self, path: Path, create: bool) -> MemoryDB:
        """Open a handle like `plyvel.DB(path, create_if_missing=create)`; one at a time (LevelDB's LOCK)."""
        if any(not h.closed for h in self._handles):
            raise OSError(11, f"IO error: lock {path}/LOCK: already held by process")
        if not create and not self._live and not self._base:
            raise OSError(2, f"Invalid argument: {path}/CURRENT: does not exist (create_if_missing is false)")
        handle = MemoryDB(self)
        self._handles.append(handle)
        return handle

    def durable_items(self, start: bytes, stop: bytes) -> list[tuple[bytes, bytes]]:
        """What would survive a power loss now, in `start <= key < stop` (for checkers)."""
        data = dict(self._base)
        for written in self._pending:
            if written.durable:
                _apply(data, written.ops)
        return sorted((k, v) for k, v in data.items() if start <= k < stop)

    @property
    def unsynced_batches(self) -> int:
        return sum(1 for w in self._pending if not w.durable)

    def power_loss(self, rng: random.Random | None = None) -> int:
        """Forget what was not durable (keeping a random prefix of each log file's tail when `rng`
        is given). Returns how many batches were lost."""
        for handle in self._handles:
            handle.closed = True
        self._handles.clear()
        survivors: list[_Written] = []
        lost = 0
        torn: set[int] = set()  # log files whose tail was cut off
        for written in self._pending:
            if not written.durable and (written.log_file in torn or rng is None or rng.random() < 0.5):
                torn.add(written.log_file)
                lost += 1
                continue
            survivors.append(written)
        for written in survivors:  # recovery writes what it replayed into tables: durable now
            _apply(self._base, written.ops)
        self._pending.clear()
        self._flush_due = None
        self._live = dict(self._base)
        self._keys = sorted(self._live)
        self._log_file += 1
        self._log_bytes = 0
        return lost

    # ------------------------------------------------------------------ for handles

    def write(self, ops: list[Op], sync: bool) -> None:
        if self.before_write is not None:
            self.before_write(sync, ops)
        self.writes += 1
        size = sum(len(k) + len(v or b"") for k, v in ops)
        if self._log_bytes and self._log_bytes + size > self.log_bytes_max:
            self._switch_log()
        self._log_bytes += size
        live, keys = self._live, self._keys
        for key, value in ops:
            if value is None:
                if live.pop(key, None) is not None:
                    del keys[bisect.bisect_left(keys, key)]
            else:
                if key not in live:
                    bisect.insort(keys, key)
                live[key] = value
        self._pending.append(_Written(self._log_file, ops))
        if sync:
            self.syncs += 1
            for written in reversed(self._pending):
                if written.log_file != self._log_file or written.durable:
                    break
                written.durable = True
        if self._flush_due is not None and self.writes >= self._flush_due[1]:
            self._flush(self._flush_due[0])
        self._fold()
        if self.after_write is not None:
            self.after_write(sync)

    def _switch_log(self) -> None:
        if self._flush_due is not None:  # LevelDB waits for the previous flush before a new switch
            self._flush(self._flush_due[0])
        self.log_switches += 1
        if self.on_log_switch is not None:
            self.on_log_switch()
        self._flush_due = (self._log_file, self.writes + self.flush_after_writes)
        self._log_file += 1
        self._log_bytes = 0

    def _flush(self, log_file: int) -> None:
        for written in self._pending:
            if written.log_file <= log_file:
                written.durable = True
        self._flush_due = None

    def _fold(self) -> None:
        """Fold the durable prefix of the pending batches into the base."""
        done = 0
        for written in self._pending:
            if not written.durable:
                break
            _apply(self._base, written.ops)
            done += 1
        if done:
            del self._pending[:done]

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

    def approximate_sizes(self, *ranges: tuple[bytes, bytes]) -> list[int]:
        """The bytes of the keys and values in each range (plyvel's are LevelDB's estimates)."""
        self._check()
        disk = self._disk
        return [
            sum(len(k) + len(disk.get(k) or b"") for k in disk.range(start, stop)) for start, stop in ranges
        ]

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
