"""The lazy filesystem forgets exactly what was not fsynced when the plug is pulled.

First the page cache alone, against a model (hypothesis); then the real FUSE
mount: data written without fsync is gone after a power loss, data fsynced
survives, close() saves nothing, and a LevelDB in a killed process keeps its
synced writes and loses its unsynced ones. Mount tests skip, saying why, where
FUSE cannot be mounted (not root, no /dev/fuse, no libfuse3).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fault.lazyfs_cache import PAGE_BYTES, CachedFile
from tests.fault.lazymount import MOUNTS, LazyMount, is_mounted, unavailable, unmount_all

# ------------------------------------------------------------------ the page cache against a model

offsets = st.integers(0, 3 * PAGE_BYTES)
file_ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), offsets, st.binary(min_size=1, max_size=PAGE_BYTES + 10)),
        st.tuples(st.just("truncate"), offsets, st.just(b"")),
        st.tuples(st.just("sync"), st.just(0), st.just(b"")),
        st.tuples(st.just("crash"), st.just(0), st.just(b"")),
    ),
    max_size=30,
)


def _model_write(content: bytearray, offset: int, data: bytes) -> None:
    if offset > len(content):
        content.extend(bytes(offset - len(content)))
    content[offset : offset + len(data)] = data


def _model_truncate(content: bytearray, length: int) -> None:
    del content[length:]
    content.extend(bytes(length - len(content)))


@settings(max_examples=300, deadline=None)
@given(initial=st.binary(max_size=2 * PAGE_BYTES + 7), ops=file_ops)
def test_the_cache_reads_every_write_and_a_crash_returns_the_file_to_its_last_sync(
    tmp_path_factory: pytest.TempPathFactory, initial: bytes, ops: list[tuple[str, int, bytes]]
) -> None:
    path = tmp_path_factory.mktemp("cache") / "file"
    path.write_bytes(initial)
    fd = os.open(path, os.O_RDWR)
    try:
        cached, seen, durable = CachedFile(fd), bytearray(initial), bytes(initial)
        for op, number, data in ops:
            if op == "write":
                cached.write(number, data)
                _model_write(seen, number, data)
            elif op == "truncate":
                cached.truncate(number)
                _model_truncate(seen, number)
            elif op == "sync":
                cached.sync()
                durable = bytes(seen)
            else:  # the power goes: the cache is dropped, the backing file is what is left
                assert path.read_bytes() == durable
                cached, seen = CachedFile(fd), bytearray(durable)
            assert cached.size == len(seen)
            assert cached.read(0, len(seen) + PAGE_BYTES) == bytes(seen)
        assert path.read_bytes() == durable  # nothing reached the disk but what was synced
    finally:
        os.close(fd)


def test_a_read_past_the_end_returns_only_what_is_there(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"abc")
    fd = os.open(path, os.O_RDWR)
    try:
        cached = CachedFile(fd)
        cached.write(10, b"xyz")

        assert cached.read(0, 100) == b"abc" + bytes(7) + b"xyz"
        assert cached.read(13, 5) == b""
    finally:
        os.close(fd)


# ------------------------------------------------------------------ the real mount

needs_fuse = pytest.mark.skipif(unavailable() is not None, reason=unavailable() or "")


@pytest.fixture
def lazy(tmp_path: Path) -> Iterator[LazyMount]:
    mount = LazyMount(tmp_path / "disk", tmp_path / "mnt", tmp_path / "lazyfs.log")
    mount.mount()
    try:
        yield mount
    finally:
        mount.unmount()
        assert not unmount_all(), "a lazy filesystem outlived its test"
        assert not is_mounted(tmp_path / "mnt")


def _write(path: Path, data: bytes, fsync: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _power_cycle(mount: LazyMount) -> None:
    mount.pull_plug()
    assert not is_mounted(mount.mountpoint)
    mount.mount()


@needs_fuse
def test_data_written_without_fsync_is_gone_after_a_power_loss(lazy: LazyMount) -> None:
    _write(lazy.mountpoint / "unsynced", b"lost", fsync=False)
    assert (lazy.mountpoint / "unsynced").read_bytes() == b"lost"  # readers see it meanwhile
    assert lazy.stats()["dirty_files"] == 1

    _power_cycle(lazy)

    assert (lazy.mountpoint / "unsynced").read_bytes() == b""  # the create was durable, the data not


@needs_fuse
def test_data_fsynced_survives_a_power_loss_and_later_writes_do_not(lazy: LazyMount) -> None:
    path = lazy.mountpoint / "log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"synced;" * 1000)
    os.fdatasync(fd)
    os.write(fd, b"unsynced")
    os.close(fd)  # close() makes nothing durable

    _power_cycle(lazy)

    assert path.read_bytes() == b"synced;" * 1000


@needs_fuse
def test_a_truncation_without_fsync_is_undone_by_a_power_loss(lazy: LazyMount) -> None:
    path = lazy.mountpoint / "file"
    _write(path, b"0123456789", fsync=True)
    os.truncate(path, 3)
    assert path.read_bytes() == b"012"

    _power_cycle(lazy)

    assert path.read_bytes() == b"0123456789"


@needs_fuse
def test_directory_operations_are_durable_when_made(lazy: LazyMount) -> None:
    (lazy.mountpoint / "dir").mkdir()
    _write(lazy.mountpoint / "dir" / "tmp", b"current", fsync=True)
    os.rename(lazy.mountpoint / "dir" / "tmp", lazy.mountpoint / "dir" / "CURRENT")
    _write(lazy.mountpoint / "doomed", b"x", fsync=True)
    os.unlink(lazy.mountpoint / "doomed")

    _power_cycle(lazy)

    assert sorted(os.listdir(lazy.mountpoint)) == ["dir"]
    assert (lazy.mountpoint / "dir" / "CURRENT").read_bytes() == b"current"


@needs_fuse
def test_an_fsync_cut_off_by_the_power_loss_saves_nothing(lazy: LazyMount) -> None:
    path = lazy.mountpoint / "file"
    _write(path, b"before", fsync=True)
    lazy.arm_hang()
    outcome: list[BaseException | None] = []

    def write_and_sync() -> None:
        try:
            _write(path, b"during the fsync", fsync=True)
            outcome.append(None)
        except OSError as exc:  # the filesystem died under it
            outcome.append(exc)

    writer = threading.Thread(target=write_and_sync)
    writer.start()
    assert lazy.wait_hung(timeout_s=5.0) == "/file"
    _power_cycle(lazy)
    writer.join(timeout=5.0)

    assert len(outcome) == 1
    assert isinstance(outcome[0], OSError), "the fsync must not have returned success"
    # O_TRUNC and the new bytes were one unsynced change: the file is as of its last fsync.
    assert path.read_bytes() == b"before"


LEVELDB_WRITER = """
import os, signal, sys
import plyvel
db = plyvel.DB(sys.argv[1], create_if_missing=True)
for i in range(100):
    db.put(b"synced/%03d" % i, b"v", sync=True)
for i in range(100):
    db.put(b"unsynced/%03d" % i, b"v", sync=False)
print("written", flush=True)
signal.pause()
"""


@needs_fuse
def test_leveldb_keeps_its_synced_writes_and_loses_the_rest_when_the_plug_is_pulled(
    lazy: LazyMount,
) -> None:
    import plyvel  # noqa: PLC0415 (only this test opens LevelDB itself)

    db_path = lazy.mountpoint / "db"
    writer = subprocess.Popen(
        [sys.executable, "-c", LEVELDB_WRITER, str(db_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "written\n"
    finally:
        writer.kill()  # with the power: the process and the page cache go together
        _power_cycle(lazy)
        writer.wait()

    db = plyvel.DB(str(db_path))
    try:
        keys = [key for key, _ in db]
    finally:
        db.close()
    assert keys == [b"synced/%03d" % i for i in range(100)]


def test_no_mount_is_left_after_these_tests() -> None:
    assert not MOUNTS


LOG_SWITCH_WRITER = """
import sys
import plyvel
db = plyvel.DB(sys.argv[1], create_if_missing=True, write_buffer_size=64 * 1024)
db.put(b"before", b"v", sync=True)
db.put(b"unsynced", b"v", sync=False)  # like confmand's state-machine batch
for i in range(80):  # about 80 KiB: the 64 KiB memtable fills once, LevelDB switches to a new log
    db.put(b"fill/%03d" % i, b"f" * 1000, sync=False)
db.put(b"synced-after", b"v", sync=True)
print("written", flush=True)
sys.stdin.read()
"""


@needs_fuse
def test_leveldb_does_not_sync_its_old_log_when_it_switches_to_a_new_one(lazy: LazyMount) -> None:
    """A synced write does not make every earlier write durable: LevelDB closes the full log unsynced.

    So an unsynced batch written just before a log switch can be lost while a later synced batch
    survives, until the old memtable is flushed to a table. Here the flush is held (its table's
    fsync never returns) and the plug is pulled: the DB keeps the later synced write and not the
    earlier unsynced one, a state no prefix of the writes had.
    """
    import plyvel  # noqa: PLC0415 (only these tests open LevelDB themselves)

    db_path = lazy.mountpoint / "db"
    lazy.arm_hang(".ldb")  # the flush of the old memtable never completes
    writer = subprocess.Popen(
        [sys.executable, "-c", LOG_SWITCH_WRITER, str(db_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "written\n"
        assert lazy.wait_hung(timeout_s=5.0) is not None, "LevelDB never flushed its memtable"
    finally:
        writer.kill()
        _power_cycle(lazy)
        writer.wait()

    db = plyvel.DB(str(db_path))
    try:
        assert db.get(b"before") == b"v"
        assert db.get(b"synced-after") == b"v"
        assert db.get(b"unsynced") is None
    finally:
        db.close()
