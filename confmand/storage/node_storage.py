"""The node's one LevelDB: opening and checking the data dir, the one write path, and reads.

Every shard the node hosts lives in this one DB under its own key prefixes
(keys.py), so one synced `write` per loop turn makes the Raft state of all
shards durable at once (group commit).

Invariants:
- `write` is the only place that writes (besides the node metadata written
  once when the dir is created). Batches are staged in creation order and
  written in creation order, each exactly once; a failed batch must be
  retried (the same object) before any later batch (batch.py).
- After a failed write the DB is reopened (at once, or on the next access if
  that fails too): LevelDB may otherwise refuse every later write
  (dbio.py). The batch either landed whole or not at all, and writing it
  again is idempotent, so the retry is safe either way.
- A shard's durable cache changes only when a batch that touched it is
  written; its staged tip changes only when something is staged.
- Everything runs on the node's loop thread: there is no writer thread
  (yet: docs/architecture.md §10), so nothing here takes a lock.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import plyvel

from confmand.storage.batch import WriteBatch
from confmand.storage.dbio import DbOpener, map_io_error, map_open_error, open_db, open_plyvel
from confmand.storage.errors import DataDirError, StorageError, StorageFullError, StorageUsageError
from confmand.storage.identity import load_dir_id, load_peer_dirs, store_dir_id, store_peer_dirs
from confmand.storage.keys import (
    META,
    RAFT_KINDS,
    TOMBSTONE,
    check_shard_id,
    prefix_end,
    shard_of,
    shard_prefix,
)
from confmand.storage.loading import (
    check_dir_before_open,
    check_or_write_meta,
    check_or_write_shape,
    load_shard_states,
)
from confmand.storage.records import RecordError
from confmand.storage.shard_storage import ShardStorage
from confmand.storage.state import ShardState
from confmand.storage.tombstones import (
    Tombstone,
    TombstoneState,
    encode_tombstone,
    load_tombstones,
    shard_record_keys,
    tombstone_key,
)

_DB_ERRORS = (plyvel.Error, OSError, RuntimeError)  # RuntimeError: plyvel's "database is closed"
REOPEN_SPARE_BYTES = 1 << 20  # a new manifest and log, beyond what replaying the old log takes


class NodeStorage:
    def __init__(
        self,
        path: Path,
        db: Any,
        opener: DbOpener,
        states: dict[int, ShardState],
        tombstones: dict[int, Tombstone],
    ) -> None:
        """Use `NodeStorage.open`."""
        self.path = path
        self._db: Any = db
        self._opener = opener
        self._closed = False
        self._write_failed = False  # the last write failed: the next one may need a reopen
        self._token = object()
        self._batch_number = 0
        self._newest: WriteBatch | None = None
        self._unwritten: deque[WriteBatch] = deque()
        self._shards = {sid: ShardStorage(self, sid, state) for sid, state in states.items()}
        self._tombstones = tombstones  # as staged: a shard deleted here, or being deleted

    @classmethod
    def open(
        cls, path: Path, cluster_id: str, node_id: int, *, opener: DbOpener = open_plyvel
    ) -> NodeStorage:
        """Open (creating if missing) the data dir of node `node_id` in cluster `cluster_id`."""
        if not isinstance(cluster_id, str) or not cluster_id:
            raise StorageUsageError(f"a cluster id is a non-empty string, got {cluster_id!r}")
        if isinstance(node_id, bool) or not isinstance(node_id, int) or node_id < 0:
            raise StorageUsageError(f"a node id is a non-negative integer, got {node_id!r}")
        path = Path(path)
        create = check_dir_before_open(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataDirError(f"data dir {path} cannot be created: {exc}") from exc
        return cls.open_with(opener, path, cluster_id, node_id, create=create)

    @classmethod
    def open_with(
        cls, opener: DbOpener, path: Path, cluster_id: str, node_id: int, *, create: bool = True
    ) -> NodeStorage:
        """Open the DB `opener` gives for `path`, without looking at the directory itself.

        For a DB that is not a directory of files: the in-memory twin (memory_db.py).
        """
        db = open_db(opener, path, create)
        try:
            check_or_write_meta(db, path, cluster_id, node_id)
            tombstones = load_tombstones(db)
            deleting = frozenset(s for s, t in tombstones.items() if t.state is TombstoneState.DESTROYING)
            states = load_shard_states(db, path, skip=deleting)
        except RecordError as exc:
            db.close()
            raise DataDirError(f"data dir {path}: a tombstone is corrupt: {exc}") from exc
        except _DB_ERRORS as exc:
            db.close()
            raise map_open_error(exc, path) from exc
        except BaseException:
            db.close()
            raise
        return cls(path, db, opener, states, tombstones)

    def close(self) -> None:
        """Close the DB; batches not yet written are dropped (they were never durable)."""
        self._closed = True
        if self._db is not None:
            self._db.close()
            self._db = None

    def check_cluster_shape(self, shape: Mapping[str, object]) -> None:
        """Refuse (DataDirError) a dir created in a cluster of another shape; record it in a new one."""
        with self._reading("checking the cluster shape") as db:
            check_or_write_shape(db, self.path, shape)

    # ------------------------------------------------------------------ identity (identity.py)

    def dir_id(self) -> int | None:
        """This data dir's id; None until a node first ran from it."""
        with self._reading("reading the data dir id") as db:
            return load_dir_id(db, self.path)

    def set_dir_id(self, dir_id: int) -> None:
        """Record this dir's id (synced); only once, for a dir that has none."""
        with self._reading("recording the data dir id") as db:
            if load_dir_id(db, self.path) is not None:
                raise StorageUsageError(f"data dir {self.path} already has an id")
            store_dir_id(db, dir_id)

    def peer_dir_ids(self) -> dict[int, int]:
        """The dir id each peer showed first, by node id."""
        with self._reading("reading the peers' data dir ids") as db:
            return load_peer_dirs(db, self.path)

    def remember_peer_dir(self, node_id: int, dir_id: int) -> None:
        """Record the dir id `node_id` shows (synced), where none was known for it."""
        with self._reading("recording a peer's data dir id") as db:
            dirs = load_peer_dirs(db, self.path)
            if node_id in dirs:
                raise StorageUsageError(f"node {node_id}'s data dir id is known already")
            dirs[node_id] = dir_id
            store_peer_dirs(db, dirs)

    def forget_peer_dir(self, node_id: int) -> None:
        """Forget `node_id`'s dir id (synced): it left the cluster, and its id may come back with a
        new, empty dir (the node decides when that is safe: confmand/server/peer_changes.py)."""
        with self._reading("forgetting a peer's data dir id") as db:
            dirs = load_peer_dirs(db, self.path)
            if dirs.pop(node_id, None) is not None:
                store_peer_dirs(db, dirs)

    # ------------------------------------------------------------------ shards

    def shard(self, shard_id: int) -> ShardStorage:
        """The storage of one shard (the same object on every call)."""
        check_shard_id(shard_id)
        self._check_open()
        tombstone = self._tombstones.get(shard_id)
        if tombstone is not None and tombstone.state is TombstoneState.DESTROYING:
            raise StorageUsageError(f"shard {shard_id} is being deleted: no replica of it until that is done")
        if shard_id not in self._shards:
            self._shards[shard_id] = ShardStorage(self, shard_id, ShardState())
        return self._shards[shard_id]

    def shard_ids(self) -> list[int]:
        """The shards that have any record on disk, in order (none being deleted)."""
        found: set[int] = set()
        target: bytes | None = b""
        with self._reading("listing shards") as db, db.iterator(include_value=False) as it:
            while target is not None:
                it.seek(target)
                key = next(it, None)
                if key is None:
                    break
                if key[:1] in (META, TOMBSTONE) or len(key) < 5:
                    target = prefix_end(key[:1])
                    continue
                found.add(shard_of(key))
                target = prefix_end(key[:5])  # skip the rest of this kind and shard
        return sorted(found - set(self.deleting_shards()))

    # ------------------------------------------------------------------ deleting a shard

    def deleting_shards(self) -> list[int]:
        """Shards whose deletion started and is not finished (resumed after a restart)."""
        return sorted(s for s, t in self._tombstones.items() if t.state is TombstoneState.DESTROYING)

    def holds_records(self, shard_id: int) -> bool:
        """Whether any record of the shard but its tombstone is in the DB."""
        with self._reading("looking for a shard's records") as db:
            return bool(shard_record_keys(db, shard_id, 1))

    def was_deleted(self, shard_id: int) -> bool:
        """Whether this node deleted (or is deleting) its replica of the shard once."""
        return shard_id in self._tombstones

    def tombstone(self, shard_id: int) -> Tombstone | None:
        """What the node's last deleted replica of the shard left (tombstones.py), if any."""
        return self._tombstones.get(shard_id)

    def stage_delete_start(
        self, shard_id: int, batch: WriteBatch, removed_at: int, term: int, vote: int | None
    ) -> None:
        """Begin deleting the shard's replica: its tombstone, keeping where it was removed and its
        term and vote (write it synced; tombstones.py). Its `ShardStorage` is dropped: a replica
        started again later begins from no state but that term and vote."""
        check_shard_id(shard_id)
        tombstone = Tombstone(TombstoneState.DESTROYING, removed_at, term, vote)
        batch.put_raw(tombstone_key(shard_id), encode_tombstone(shard_id, tombstone))
        self._tombstones[shard_id] = tombstone
        self._shards.pop(shard_id, None)

    def stage_delete_step(self, shard_id: int, batch: WriteBatch, max_keys: int) -> bool:
        """Stage the deletion of up to `max_keys` of the shard's records; once none is left, mark
        its tombstone DESTROYED and return True (write each step synced)."""
        tombstone = self._tombstones.get(shard_id)
        if tombstone is None or tombstone.state is not TombstoneState.DESTROYING:
            raise StorageUsageError(f"shard {shard_id} is not being deleted")
        with self._reading("listing a deleted shard's records") as db:
            keys = shard_record_keys(db, shard_id, max_keys)
        for key in keys:
            batch.delete_raw(key)
        if len(keys) == max_keys:
            return False
        tombstone = tombstone.deleted()
        batch.put_raw(tombstone_key(shard_id), encode_tombstone(shard_id, tombstone))
        self._tombstones[shard_id] = tombstone
        return True

    def approximate_bytes(self, shard_id: int, state_kinds: Iterable[bytes]) -> int:
        """About how many bytes the shard's log and its state (records of `state_kinds`) take on
        disk, as LevelDB estimates from its table indexes: cheap, and what is still only in its
        memtable (the last few MiB written) counts as nothing."""
        check_shard_id(shard_id)
        ranges = []
        for kind in sorted({*RAFT_KINDS, *state_kinds}):
            prefix = shard_prefix(kind, shard_id)
            ranges.append((prefix, prefix_end(prefix) or prefix + b"\xff" * 16))
        with self._reading("estimating a shard's size") as db:
            return int(sum(db.approximate_sizes(*ranges)))

    # ------------------------------------------------------------------ writing

    def new_batch(self) -> WriteBatch:
        """A new, empty batch; seals the previous one (staging goes into the newest batch only)."""
        self._check_open()
        if self._newest is not None:
            self._newest.sealed = True
        self._batch_number += 1
        self._newest = WriteBatch(self._batch_number, self._token, self._register)
        return self._newest

    def write(self, batch: WriteBatch, sync: bool) -> None:
        """Write `batch` atomically (fsynced when `sync`); StorageFullError/StorageError on failure.

        After a failure, retry the same batch (once space is freed, for a full disk);
        no later batch is accepted before it.
        """
        self._check_writable(batch)
        batch.sealed = True
        if batch.ops:
            self._write_ops(batch, sync)
            self._unwritten.popleft()
        batch.written = True
        for sid, state in batch.after.items():
            self._shards[sid].durable_state = state

    def _write_ops(self, batch: WriteBatch, sync: bool) -> None:
        if self._write_failed:
            # Never write again through a handle whose write failed: a torn log record may end
            # its log, and appending after it would corrupt the log. Reopen first, with room.
            if not self._has_room_to_reopen(batch):
                raise StorageFullError(
                    f"data dir {self.path}: the disk is still too full to resume writing "
                    "(reopening LevelDB needs room to replay its log and start a new one)"
                )
            self._close_quietly()
            self._reopen()  # if this fails, reads fail too until a later write reopens it
            self._write_failed = False
        db = self._db if self._db is not None else self._reopen()
        try:
            _write_batch(db, batch, sync)
        except _DB_ERRORS as exc:
            # Keep the handle: reads go on serving from it while the disk is full.
            self._write_failed = True
            raise map_io_error(exc, self.path, f"writing batch {batch.number}") from exc

    def _has_room_to_reopen(self, batch: WriteBatch) -> bool:
        """Reopening replays LevelDB's log into a new table and writes a new log and manifest:
        only try with room for that, and for the batch, to spare."""
        try:
            stat = os.statvfs(self.path)
            log_bytes = sum(f.stat().st_size for f in self.path.glob("*.log"))
        except OSError:
            return True  # cannot tell: let the reopen find out
        batch_bytes = sum(len(k) + len(v or b"") for k, v in batch.ops)
        needed = REOPEN_SPARE_BYTES + log_bytes + 2 * batch_bytes
        return stat.f_bavail * stat.f_frsize >= needed

    def _check_writable(self, batch: WriteBatch) -> None:
        self._check_open()
        if batch.owner_token is not self._token:
            raise StorageUsageError(f"batch {batch.number} was made by another NodeStorage")
        if batch.written:
            raise StorageUsageError(f"batch {batch.number} is already written")
        if batch.ops and self._unwritten and self._unwritten[0] is not batch:
            first = self._unwritten[0].number
            raise StorageUsageError(f"batch {batch.number} written before batch {first}: write in order")

    def _register(self, batch: WriteBatch) -> None:
        self._unwritten.append(batch)

    def _reopen(self) -> Any:
        try:
            self._db = self._opener(self.path, False)
        except _DB_ERRORS as exc:
            raise map_io_error(exc, self.path, "reopening after a failed write") from exc
        return self._db

    def _close_quietly(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            # A DB in a background-error state may fail to close cleanly; it is dropped anyway.
            with contextlib.suppress(*_DB_ERRORS):
                db.close()

    # ------------------------------------------------------------------ reading (for ShardStorage)

    def get(self, key: bytes) -> bytes | None:
        # The state machine's point reads, several a write: no context object on the common path.
        db = self._db
        if db is None or self._closed:
            with self._reading("reading") as db:
                value: bytes | None = db.get(key)
                return value
        try:
            found: bytes | None = db.get(key)
        except _DB_ERRORS as exc:
            raise map_io_error(exc, self.path, "reading") from exc
        return found

    def iterate(
        self, start: bytes, stop: bytes | None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Items with start <= key < stop, lazily; DB errors surface as StorageError."""
        if not reverse:
            with self._reading("scanning") as db, db.iterator(start=start, stop=stop) as it:
                yield from it
            return
        # plyvel 1.5 yields nothing for a reverse range whose only key equals `start`;
        # so bound the reverse scan by `stop` alone and end it at the first key below `start`.
        with self._reading("scanning") as db, db.iterator(stop=stop, reverse=True) as it:
            for key, value in it:
                if key < start:
                    return
                yield key, value

    def keys(self, start: bytes, stop: bytes | None) -> list[bytes]:
        with self._reading("scanning") as db, db.iterator(start=start, stop=stop, include_value=False) as it:
            return list(it)

    def pending_keys(self, prefix: bytes) -> set[bytes]:
        """Keys put under `prefix` by batches staged but not yet written."""
        return {key for batch in self._unwritten for key in batch.keys_with_prefix(prefix)}

    def _reading(self, action: str) -> _Reading:
        self._check_open()
        db = self._db
        if db is None:
            db = self._reopen()
        return _Reading(db, self.path, action)

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"data dir {self.path}: the storage is closed")


def _write_batch(db: Any, batch: WriteBatch, sync: bool) -> None:
    wb = db.write_batch(sync=sync)
    for key, value in batch.ops:
        if value is None:
            wb.delete(key)
        else:
            wb.put(key, value)
    wb.write()


class _Reading:
    """A context that hands out the DB and maps its errors (a reopen may close it under a reader)."""

    def __init__(self, db: Any, path: Path, action: str) -> None:
        self._db = db
        self._path = path
        self._action = action

    def __enter__(self) -> Any:
        return self._db

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is not None and isinstance(exc, _DB_ERRORS):
            raise map_io_error(exc, self._path, self._action) from exc
