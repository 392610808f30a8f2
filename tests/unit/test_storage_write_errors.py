"""A failed write or read is a typed error; a failed write changes no cache, and the same batch
succeeds once the fault is gone.

LevelDB refuses every write after a failed compaction or log sync until it is
reopened (a "background error"); `NodeStorage.write` reopens so the retry can
succeed. Checked with a fake DB (the error mapping) and, as root on Linux,
with a real full tmpfs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plyvel
import pytest

from confmand.kv.store import WriteSet
from confmand.raft.ready import Ready, SoftState
from confmand.raft.types import Entry, EntryKind, HardState, Role
from confmand.storage import DataDirError, NodeStorage, StorageError, StorageFullError
from confmand.storage.dbio import open_plyvel

CLUSTER = "c1"


@dataclass
class Faults:
    write_error: BaseException | None = None
    read_error: BaseException | None = None
    opens: int = 0


class _FaultyBatch:
    def __init__(self, inner: Any, faults: Faults) -> None:
        self._inner = inner
        self._faults = faults

    def put(self, key: bytes, value: bytes) -> None:
        self._inner.put(key, value)

    def delete(self, key: bytes) -> None:
        self._inner.delete(key)

    def write(self) -> None:
        error = self._faults.write_error
        if error is not None:
            # A fresh exception each time: raising the shared one would pin its traceback (and
            # through it this test's DB) to the parametrize arguments until interpreter exit.
            raise type(error)(*error.args)
        self._inner.write()


class _FaultyDB:
    """A real plyvel DB whose batch writes raise what the test says."""

    def __init__(self, inner: Any, faults: Faults) -> None:
        self._inner = inner
        self._faults = faults

    def write_batch(self, sync: bool) -> _FaultyBatch:
        return _FaultyBatch(self._inner.write_batch(sync=sync), self._faults)

    def get(self, key: bytes, *args: Any, **kwargs: Any) -> Any:
        error = self._faults.read_error
        if error is not None:
            raise type(error)(*error.args)
        return self._inner.get(key, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def faulty_node(path: Path, faults: Faults) -> NodeStorage:
    def opener(p: Path, create: bool) -> _FaultyDB:
        faults.opens += 1
        return _FaultyDB(open_plyvel(p, create), faults)

    return NodeStorage.open(path, CLUSTER, 1, opener=opener)


def a_ready(first: int, last: int) -> Ready:
    entries = [Entry(1, i, EntryKind.NORMAL, b"x") for i in range(first, last + 1)]
    return Ready(0, SoftState(Role.FOLLOWER, None), hard_state=HardState(term=1), entries=entries)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (plyvel.IOError(b"IO error: /d/000003.log: No space left on device"), StorageFullError),
        (OSError(28, "No space left on device"), StorageFullError),
        (plyvel.IOError(b"IO error: /d/000003.log: Input/output error"), StorageError),
        (plyvel.Error(b"Corruption: bad block"), StorageError),
    ],
)
def test_write_errors_map_to_typed_storage_errors(
    tmp_path: Path, error: BaseException, expected: type[StorageError]
) -> None:
    faults = Faults()
    node = faulty_node(tmp_path, faults)
    faults.write_error = error
    batch = node.new_batch()
    node.shard(0).stage_ready(a_ready(1, 3), batch)

    with pytest.raises(expected) as failed:
        node.write(batch, sync=True)
    assert str(tmp_path) in str(failed.value)
    assert type(failed.value) is expected
    node.close()


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (plyvel.IOError(b"IO error: /d/000005.ldb: Input/output error"), StorageError),
        (plyvel.CorruptionError(b"Corruption: block checksum mismatch"), DataDirError),
    ],
)
def test_a_failed_point_read_is_a_typed_error_naming_the_dir(
    tmp_path: Path, error: BaseException, expected: type[StorageError]
) -> None:
    faults = Faults()
    node = faulty_node(tmp_path, faults)
    faults.read_error = error

    with pytest.raises(expected) as failed:
        node.shard(0).get(b"d", b"app/url")
    assert str(tmp_path) in str(failed.value)
    assert "reading" in str(failed.value)
    node.close()


def test_a_point_read_after_close_is_refused(tmp_path: Path) -> None:
    node = NodeStorage.open(tmp_path, CLUSTER, 1)
    shard = node.shard(0)
    node.close()
    with pytest.raises(StorageError, match="closed"):
        shard.get(b"d", b"app/url")


def test_a_failed_write_keeps_the_db_for_reads_and_reopens_it_before_the_retry(tmp_path: Path) -> None:
    faults = Faults()
    node = faulty_node(tmp_path, faults)
    faults.write_error = plyvel.IOError(b"IO error: No space left on device")
    shard = node.shard(0)
    batch = node.new_batch()
    shard.stage_ready(a_ready(1, 3), batch)
    with pytest.raises(StorageFullError):
        node.write(batch, sync=True)
    assert faults.opens == 1  # the failed handle stays open for reads
    assert shard.log_bounds() == (1, 0)  # nothing counted as written

    faults.write_error = None
    node.write(batch, sync=True)
    assert faults.opens == 2  # never written through again: reopened first
    assert shard.log_bounds() == (1, 3)
    assert [e.index for e in shard.initial_state().entries] == [1, 2, 3]
    node.close()


def test_a_failure_while_creating_the_dir_is_a_data_dir_error(tmp_path: Path) -> None:
    faults = Faults(write_error=plyvel.IOError(b"IO error: No space left on device"))
    with pytest.raises(DataDirError, match="disk is full"):
        faulty_node(tmp_path, faults)


def test_no_later_batch_is_written_before_a_failed_one(tmp_path: Path) -> None:
    faults = Faults()
    node = faulty_node(tmp_path, faults)
    faults.write_error = plyvel.IOError(b"IO error: disk on fire")
    first = node.new_batch()
    node.shard(0).stage_ready(a_ready(1, 1), first)
    with pytest.raises(StorageError):
        node.write(first, sync=True)
    second = node.new_batch()
    node.shard(0).stage_ready(a_ready(2, 2), second)

    faults.write_error = None
    with pytest.raises(StorageError, match="write in order"):
        node.write(second, sync=True)
    node.write(first, sync=True)
    node.write(second, sync=True)
    assert node.shard(0).log_bounds() == (1, 2)
    node.close()


# ---------------------------------------------------------------- a real full disk


def _can_mount_tmpfs() -> str | None:
    if not sys.platform.startswith("linux"):
        return "mounting a tmpfs needs Linux"
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    return None


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    reason = _can_mount_tmpfs()
    if reason:
        pytest.skip(reason)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)]
    done = subprocess.run(mount, check=False, capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def _fill(path: Path) -> None:
    with path.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass  # full: exactly what we want


def test_a_full_disk_fails_writes_with_storage_full_and_they_succeed_once_space_is_freed(
    tiny_disk: Path,
) -> None:
    node = NodeStorage.open(tiny_disk / "data", CLUSTER, 1)
    shard = node.shard(0)
    kept = WriteSet()
    kept.put(b"d", b"kept", b"before the disk filled")
    first = node.new_batch()
    shard.stage_applied(kept, 1, 1, first)
    node.write(first, sync=True)
    _fill(tiny_disk / "filler")
    writes = WriteSet()
    writes.put(b"d", b"big", os.urandom(512 * 1024))
    batch = node.new_batch()
    shard.stage_applied(writes, 1, 2, batch)

    with pytest.raises(StorageFullError, match="disk is full"):
        node.write(batch, sync=True)
    with pytest.raises(StorageFullError):
        node.write(batch, sync=True)  # still full: the retry fails the same typed way
    assert shard.get(b"d", b"kept") == b"before the disk filled"  # reads go on

    (tiny_disk / "filler").unlink()
    node.write(batch, sync=True)
    assert shard.applied() == (1, 2)
    assert shard.get(b"d", b"big") == writes.changes[(b"d", b"big")]
    node.close()
    again = NodeStorage.open(tiny_disk / "data", CLUSTER, 1)
    assert again.shard(0).applied() == (1, 2)
    again.close()
