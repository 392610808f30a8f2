"""The test's side of a lazy filesystem: mount one, pull its plug, remount it.

`LazyMount(backing, mountpoint)` runs `python -m tests.fault.lazyfs` (see that
module for what is durable when) as a child with pipes on its stdin and
stdout. `mount()` returns once the filesystem said `ready`. `pull_plug()` is
the power loss: SIGKILL to the filesystem process (its memory, the page
cache, is gone), then a lazy unmount of the dead mount; the backing dir holds
exactly what was fsynced. `mount()` again serves what survived.

Invariants:
- Every filesystem process is in `MOUNTS` until it has exited and its
  mountpoint is unmounted; `unmount_all()` (the session finalizer, and every
  cluster's close) leaves none behind.
- Nothing waits a fixed time: lines from the child are awaited with select
  against a deadline, the mount's end by waiting on the process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

MNT_DETACH = 2
MOUNT_TIMEOUT_S = 10.0
REPLY_TIMEOUT_S = 5.0
REPO_ROOT = Path(__file__).resolve().parents[2]

MOUNTS: list[LazyMount] = []


def unavailable() -> str | None:
    """Why a lazy filesystem cannot be mounted here, or None when it can."""
    if os.geteuid() != 0:
        return "power-loss tests need root (to mount FUSE and unmount a dead mount)"
    if not os.path.exists("/dev/fuse"):
        return "power-loss tests need /dev/fuse (load the fuse module; in a container: --device /dev/fuse)"
    if ctypes.util.find_library("fuse3") is None:
        return "power-loss tests need libfuse3 (Debian: apt-get install fuse3 libfuse3-3; ./dev does it)"
    if importlib.util.find_spec("mfusepy") is None:
        return "power-loss tests need mfusepy (pip install -e '.[test]')"
    return None


def is_mounted(path: Path) -> bool:
    """Whether something is mounted at `path` (os.path.ismount says no for a dead FUSE mount)."""
    wanted = os.path.realpath(path)
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        for line in mountinfo:
            # Field 5 is the mount point, with space, tab, newline and backslash octal-escaped.
            point = line.split()[4].encode().decode("unicode_escape")
            if point == wanted:
                return True
    return False


def _umount(path: Path) -> None:
    """umount2(path, MNT_DETACH): drop a mount, even one whose filesystem process is gone (root only)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.umount2(os.fsencode(os.path.realpath(path)), MNT_DETACH) != 0 and is_mounted(path):
        err = ctypes.get_errno()
        raise OSError(err, f"umount2({path}): {os.strerror(err)}")


class LazyMountError(RuntimeError):
    """The filesystem process did not start, or did not answer."""


class LazyMount:
    """One lazy filesystem over `backing` at `mountpoint`; see the module docstring."""

    def __init__(self, backing: Path, mountpoint: Path, log_path: Path) -> None:
        self.backing = backing
        self.mountpoint = mountpoint
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.hung: list[str] = []  # paths of fsyncs that never returned (hang-next-sync)
        self._buffer = b""

    @property
    def mounted(self) -> bool:
        return self.process is not None

    def mount(self) -> None:
        if self.process is not None:
            return
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.fault.lazyfs", str(self.backing), str(self.mountpoint)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=REPO_ROOT,
            )
        MOUNTS.append(self)
        self._buffer = b""
        self.hung.clear()
        try:
            line = self._line(MOUNT_TIMEOUT_S)
        except LazyMountError:
            self.pull_plug()
            raise
        if line != "ready":
            self.pull_plug()
            raise LazyMountError(
                f"lazyfs at {self.mountpoint} said {line!r}, not 'ready'; see {self.log_path}"
            )

    def stats(self) -> dict[str, int]:
        """Unsynced files and bytes now, and the fsyncs served so far."""
        reply = self._ask("stats")
        stats: dict[str, int] = json.loads(reply)
        return stats

    def arm_hang(self, suffix: str = "") -> None:
        """The next fsync (of a path ending in `suffix`) will never return; see `wait_hung`."""
        reply = self._ask(f"hang-next-sync {suffix}".strip())
        if reply != "armed":
            raise LazyMountError(f"lazyfs at {self.mountpoint} answered {reply!r} to hang-next-sync")

    def wait_hung(self, timeout_s: float) -> str | None:
        """The path of the fsync that hung, once one did within `timeout_s`; None if none came."""
        deadline = time.monotonic() + timeout_s
        while not self.hung:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                self._stash(self._line(remaining))
            except LazyMountError:
                return None
        return self.hung[0]

    def pull_plug(self) -> None:
        """Power loss: kill the filesystem process (and its cache), then drop the dead mount."""
        process = self.process
        if process is None:
            return
        process.kill()
        process.wait()
        self._close(process)

    def unmount(self, timeout_s: float = MOUNT_TIMEOUT_S) -> None:
        """A clean shutdown: the filesystem writes its cache back and unmounts (SIGKILL if it hangs)."""
        process = self.process
        if process is None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self._close(process)

    # ---------------------------------------------------------------- the pipe

    def _close(self, process: subprocess.Popen[bytes]) -> None:
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()
        _umount(self.mountpoint)
        self.process = None
        if self in MOUNTS:
            MOUNTS.remove(self)

    def _ask(self, command: str) -> str:
        process = self.process
        if process is None or process.stdin is None:
            raise LazyMountError(f"lazyfs at {self.mountpoint} is not mounted")
        process.stdin.write(command.encode() + b"\n")
        process.stdin.flush()
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while True:
            line = self._line(deadline - time.monotonic())
            if not line.startswith("hung "):
                return line
            self._stash(line)

    def _stash(self, line: str) -> None:
        if line.startswith("hung "):
            self.hung.append(line.removeprefix("hung "))

    def _line(self, timeout_s: float) -> str:
        """The next line the child prints, within `timeout_s`."""
        process = self.process
        assert process is not None
        assert process.stdout is not None
        fd = process.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            readable = select.select([fd], [], [], max(0.0, remaining))[0] if remaining > 0 else []
            if not readable:
                raise LazyMountError(f"lazyfs at {self.mountpoint} did not answer in {timeout_s:.1f} s")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise LazyMountError(f"lazyfs at {self.mountpoint} exited; see {self.log_path}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()


def unmount_all() -> list[str]:
    """Unmount every lazy filesystem still mounted; the mountpoints that were left."""
    left = [str(mount.mountpoint) for mount in MOUNTS]
    for mount in list(MOUNTS):
        mount.unmount()
    return left
