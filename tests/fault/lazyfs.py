"""A lazy FUSE filesystem: a passthrough that keeps every write in memory until it is fsynced.

`python -m tests.fault.lazyfs BACKING MOUNTPOINT` mounts BACKING at
MOUNTPOINT (in the spirit of Jepsen's LazyFS, written afresh over mfusepy
and libfuse3). This process's memory is the machine's page cache; the
backing directory is the disk. Pulling the plug on a node is SIGKILL to the
node and then to this process: whatever was not fsynced dies with it
(`tests/fault/lazymount.py` does that, and remounts).

What is durable when (the model, and why):
- File data: up to the file's last fsync or fdatasync, no further. Writes,
  truncations and extensions live in a per-file page cache (`CachedFile`)
  until then. close() does NOT make data durable; nor does fsync of another
  file or of the directory.
- Directory operations (create, mkdir, rename, unlink, link, rmdir) and
  attributes (chmod, utimens): durable at once, on the backing dir, as on a
  filesystem mounted with `dirsync`. A created file survives a power loss
  empty (or as of its last fsync). Real ext4 can lose a rename that no
  directory fsync followed; this model does not try to, so it finds missing
  data fsyncs only, which is the promise at stake (DESIGN.md §1: a write is
  acknowledged after its log entry is fsynced). LevelDB fsyncs the directory
  when it makes a new MANIFEST current anyway.
- A clean unmount (SIGTERM; or the parent's stdin closing) writes the cache
  back, like an orderly shutdown; only SIGKILL loses it.

Control, one line each on stdin, answers on stdout (the parent's pipe):
- `ready` is printed once mounted;
- `stats` -> one JSON line: files and bytes unsynced now, fsyncs so far;
- `hang-next-sync [SUFFIX]` -> `armed`; the next file fsync (of a path
  ending in SUFFIX, if given) prints `hung PATH` and never returns, so the
  parent can pull the plug while a node waits on its fsync (nothing of that
  fsync reaches the disk);
- end of stdin: unmount and exit (the parent is gone).

Every call takes one lock: the node's writes are serialised, which is all
a single node does anyway, and the model stays simple to trust.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import signal
import stat
import sys
import threading
from typing import Any

import mfusepy

from tests.fault.lazyfs_cache import CachedFile

LIBFUSE_EXIT_BY_SIGNAL = 8  # fuse_main's code when its loop ended on SIGTERM (mfusepy raises it)
STAT_FIELDS = ("st_mode", "st_ino", "st_nlink", "st_uid", "st_gid", "st_size", "st_blocks")


class LazyFS(mfusepy.Operations):  # type: ignore[misc]
    """The FUSE operations over `backing`; see the module docstring for the durability model."""

    use_ns = True

    def __init__(self, backing: str) -> None:
        self.backing = os.path.realpath(backing)
        self.mutex = threading.Lock()
        self.files: dict[int, CachedFile] = {}  # backing inode -> its cache (its fd keeps the inode alive)
        self.opens: dict[int, int] = {}  # backing inode -> open handles
        self.handles: dict[int, int] = {}  # file handle -> backing inode
        self._fhs = itertools.count(1)
        self.fsyncs = 0
        self.hang_suffix: str | None = None  # armed: the next fsync of a path ending so never returns
        self.out_lock = threading.Lock()

    # ---------------------------------------------------------------- control

    def say(self, line: str) -> None:
        with self.out_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def stats(self) -> dict[str, int]:
        with self.mutex:
            dirty = [f for f in self.files.values() if f.is_dirty]
            return {
                "dirty_files": len(dirty),
                "dirty_bytes": sum(f.dirty_bytes for f in dirty),
                "fsyncs": self.fsyncs,
            }

    def serve_control(self) -> None:
        for line in sys.stdin:
            command = line.strip()
            if command == "stats":
                self.say(json.dumps(self.stats()))
            elif command.split(" ", 1)[0] == "hang-next-sync":
                with self.mutex:
                    self.hang_suffix = command.removeprefix("hang-next-sync").strip()
                self.say("armed")
            elif command:
                self.say(f"error unknown command {command!r}")
        # The parent is gone: unmount cleanly (libfuse's SIGTERM handler ends the loop).
        os.kill(os.getpid(), signal.SIGTERM)

    # ---------------------------------------------------------------- helpers

    def _real(self, path: str) -> str:
        return os.path.join(self.backing, path.lstrip("/"))

    def _cache(self, fh: int) -> CachedFile:
        try:
            return self.files[self.handles[fh]]
        except KeyError:
            raise mfusepy.FuseOSError(errno.EBADF) from None

    def _cache_for_path(self, real: str) -> tuple[int, CachedFile]:
        """The cache of the backing file at `real`, made (with an fd of its own) if there is none."""
        inode = os.lstat(real).st_ino
        cached = self.files.get(inode)
        if cached is None:
            fd = os.open(real, os.O_RDWR)
            inode = os.fstat(fd).st_ino
            cached = self.files[inode] = CachedFile(fd)
        return inode, cached

    def _forget_if_idle(self, inode: int) -> None:
        """Drop a cache nobody has open that holds nothing unsynced, or whose file is gone."""
        cached = self.files.get(inode)
        if cached is None or self.opens.get(inode, 0):
            return
        if not cached.is_dirty or os.fstat(cached.fd).st_nlink == 0:
            os.close(cached.fd)
            del self.files[inode]
            self.opens.pop(inode, None)

    def _open(self, real: str, flags: int) -> int:
        inode, cached = self._cache_for_path(real)
        if flags & os.O_TRUNC:
            cached.truncate(0)
        self.opens[inode] = self.opens.get(inode, 0) + 1
        fh = next(self._fhs)
        self.handles[fh] = inode
        return fh

    # ---------------------------------------------------------------- files

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        with self.mutex:
            st = os.fstat(self._cache(fh).fd) if fh is not None else os.lstat(self._real(path))
            attrs: dict[str, Any] = {name: getattr(st, name) for name in STAT_FIELDS}
            attrs.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
            cached = self.files.get(st.st_ino)
            if cached is not None and stat.S_ISREG(st.st_mode):
                attrs["st_size"] = cached.size
            return attrs

    def open(self, path: str, flags: int) -> int:
        with self.mutex:
            return self._open(self._real(path), flags)

    def create(self, path: str, mode: int, flags: int) -> int:
        with self.mutex:
            real = self._real(path)
            os.close(os.open(real, os.O_CREAT | os.O_WRONLY | (flags & os.O_EXCL), mode))
            return self._open(real, flags)

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        with self.mutex:
            return self._cache(fh).read(offset, size)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        with self.mutex:
            return self._cache(fh).write(offset, data)

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        with self.mutex:
            if fh is not None:
                self._cache(fh).truncate(length)
            elif path is not None:
                inode, cached = self._cache_for_path(self._real(path))
                cached.truncate(length)
                self._forget_if_idle(inode)
            else:
                raise mfusepy.FuseOSError(errno.EBADF)
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0  # close(2) makes nothing durable: only fsync does

    def release(self, path: str, fh: int) -> int:
        with self.mutex:
            inode = self.handles.pop(fh, None)
            if inode is not None:
                self.opens[inode] -= 1
                self._forget_if_idle(inode)
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        with self.mutex:
            cached = self._cache(fh)
            hang = self.hang_suffix is not None and path is not None and path.endswith(self.hang_suffix)
            if hang:
                self.hang_suffix = None
            else:
                cached.sync()
                self.fsyncs += 1
                return 0
        self.say(f"hung {path}")
        threading.Event().wait()  # the power goes out during this fsync: it never returns
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        return 0  # directory operations are durable when performed (see the module docstring)

    def destroy(self, path: str) -> None:
        with self.mutex:  # a clean unmount: an orderly shutdown writes the page cache back
            for cached in self.files.values():
                cached.sync()
                os.close(cached.fd)
            self.files.clear()

    # ---------------------------------------------------------------- directories and metadata

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._real(path))]

    def mkdir(self, path: str, mode: int) -> int:
        os.mkdir(self._real(path), mode)
        return 0

    def rmdir(self, path: str) -> int:
        os.rmdir(self._real(path))
        return 0

    def unlink(self, path: str) -> int:
        with self.mutex:
            real = self._real(path)
            inode = os.lstat(real).st_ino
            os.unlink(real)
            self._forget_if_idle(inode)
        return 0

    def rename(self, old: str, new: str) -> int:
        with self.mutex:
            real_new = self._real(new)
            replaced = os.lstat(real_new).st_ino if os.path.lexists(real_new) else None
            os.rename(self._real(old), real_new)
            if replaced is not None:
                self._forget_if_idle(replaced)
        return 0

    def link(self, target: str, source: str) -> int:
        os.link(self._real(source), self._real(target))
        return 0

    def symlink(self, target: str, source: str) -> int:
        os.symlink(source, self._real(target))
        return 0

    def readlink(self, path: str) -> str:
        return os.readlink(self._real(path))

    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._real(path), mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        os.chown(self._real(path), uid, gid)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        if times is None:
            os.utime(self._real(path))
        else:
            os.utime(self._real(path), ns=times)
        return 0

    def lock(self, path: str, fh: int, cmd: int, lock: object) -> int:
        # Every POSIX lock is granted: one node owns its data dir, and LevelDB's LOCK file only
        # guards against a second process (libfuse's default answers EINVAL, which LevelDB refuses).
        return 0

    def access(self, path: str, amode: int) -> int:
        if not os.access(self._real(path), amode):
            raise mfusepy.FuseOSError(errno.EACCES)
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        st = os.statvfs(self._real(path))
        names = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_frsize")
        return {name: getattr(st, name) for name in [*names, "f_flag", "f_namemax"]}

    def init(self, path: str) -> None:
        self.say("ready")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tests.fault.lazyfs BACKING MOUNTPOINT", file=sys.stderr)
        return 2
    backing, mountpoint = argv
    operations = LazyFS(backing)
    threading.Thread(target=operations.serve_control, name="lazyfs-control", daemon=True).start()
    # hard_remove: an unlinked open file is not renamed to .fuse_hidden* (that would be a directory
    # operation the node never made).
    try:
        mfusepy.FUSE(
            operations, mountpoint, foreground=True, nothreads=False, hard_remove=True, fsname="lazyfs"
        )
    except RuntimeError as exc:
        if exc.args != (LIBFUSE_EXIT_BY_SIGNAL,):
            raise
    return 0  # unmounted on SIGTERM, the way every clean stop goes


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
