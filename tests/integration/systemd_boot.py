"""A private systemd for tests: PID 1 of its own PID and mount namespaces, booting one unit.

`BootedSystemd.start(scratch, unit, unit_text, drop_in, config_text)` runs, in new PID and mount
namespaces (`unshare`), a script that lays copy-on-write overlays over /etc and /var (so the
sysusers entries, /etc/confman and /var/lib/confman land in `scratch`, never on the host) and
tmpfs on /run (the unit and its drop-in) and /tmp (booting cleans /tmp: never the host's),
creates the `confman` user from systemd/confman.sysusers, and execs /lib/systemd/systemd
booting that unit alone. The network namespace is the host's: a test reaches the daemon on
loopback. `systemctl(...)` runs inside (`nsenter`); `stop()` kills its PID 1, which takes every
process of the namespace with it.

`unavailable()` says why this machine cannot (not root, no unshare, no systemd, no mounts in a
namespace): the tests that need it skip with that reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

SYSTEMD = Path("/lib/systemd/systemd")
ROOT = Path(__file__).resolve().parents[2]

INNER = """#!/bin/bash
set -e
scratch={scratch}
mount --make-rprivate /
mount -t tmpfs tmpfs /run
mkdir -p /run/confman-test /run/systemd/system/{unit}.d
cp "$scratch/unit" /run/systemd/system/{unit}
cp "$scratch/drop-in.conf" /run/systemd/system/{unit}.d/10-test.conf
cp "$scratch/sysusers.conf" "$scratch/confmand.toml" /run/confman-test/
for d in etc var; do
  mkdir -p "$scratch/$d-upper" "$scratch/$d-work"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$scratch/$d-upper,workdir=$scratch/$d-work" "/$d"
done
# Its own /tmp too: booting cleans /tmp (tmpfiles.d), which must never reach the host's.
mount -t tmpfs tmpfs /tmp
mkdir -p /etc/confman /etc/sysusers.d
cp /run/confman-test/sysusers.conf /etc/sysusers.d/confman.conf
systemd-sysusers /etc/sysusers.d/confman.conf
cp /run/confman-test/confmand.toml /etc/confman/confmand.toml
chgrp confman /etc/confman /etc/confman/confmand.toml
chmod 0750 /etc/confman
chmod 0640 /etc/confman/confmand.toml
exec env container=confman-test {systemd} --system --unit={unit}
"""


def unavailable() -> str | None:
    """Why a private systemd cannot run here; None when it can."""
    if os.geteuid() != 0:
        return "needs root (namespaces, overlay mounts)"
    for tool in ("unshare", "nsenter", "systemd-sysusers", "systemctl"):
        if shutil.which(tool) is None:
            return f"no {tool} (Debian's systemd and util-linux packages)"
    if not SYSTEMD.exists():
        return f"no {SYSTEMD}"
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount", "--", "sh", "-c", "mount -t tmpfs tmpfs /mnt"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return f"cannot make PID and mount namespaces here: {probe.stderr.strip()[:200]}"
    return None


class BootedSystemd:
    def __init__(self, scratch: Path, unit: str, process: subprocess.Popen[bytes]) -> None:
        self.scratch = scratch
        self.unit = unit
        self.process = process
        self.pid1: int | None = None

    @classmethod
    def start(cls, scratch: Path, unit: str, unit_text: str, drop_in: str, config_text: str) -> BootedSystemd:
        scratch.mkdir(parents=True, exist_ok=True)
        (scratch / "unit").write_text(unit_text)
        (scratch / "drop-in.conf").write_text(drop_in)
        (scratch / "confmand.toml").write_text(config_text)
        shutil.copy(ROOT / "systemd" / "confman.sysusers", scratch / "sysusers.conf")
        script = scratch / "inner.sh"
        script.write_text(INNER.format(scratch=scratch, unit=unit, systemd=SYSTEMD))
        script.chmod(0o755)
        log = open(scratch / "boot.log", "wb")  # noqa: SIM115 (handed to the process)
        process = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount-proc", "--mount", "--", str(script)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        booted = cls(scratch, unit, process)
        booted.pid1 = booted._find_pid1()
        return booted

    def _find_pid1(self, timeout_s: float = 20.0) -> int:
        """The host PID of the namespace's systemd: the unshare child that exec'd it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the namespace exited with {self.process.returncode}: {self.boot_log()}")
            for child in _children(self.process.pid):
                if Path(f"/proc/{child}/exe").resolve() == SYSTEMD.resolve():
                    return child
            time.sleep(0.05)
        raise RuntimeError(f"no systemd within {timeout_s} s: {self.boot_log()}")

    def boot_log(self) -> str:
        path = self.scratch / "boot.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def systemctl(self, *args: str, timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
        assert self.pid1 is not None
        command = ["nsenter", "-t", str(self.pid1), "-m", "-p", "systemctl", "--no-pager", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)

    def journal(self) -> str:
        assert self.pid1 is not None
        command = ["nsenter", "-t", str(self.pid1), "-m", "-p", "journalctl", "--no-pager", "-u", self.unit]
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        return done.stdout + done.stderr

    def show(self, prop: str) -> str:
        return self.systemctl("show", "-p", prop, "--value", self.unit).stdout.strip()

    def stop(self) -> None:
        """Kill the namespace's PID 1 (and so all in it), and reap the unshare process."""
        if self.pid1 is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid1, signal.SIGKILL)
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = (task / "children").read_text().split() if (task / "children").exists() else []
        found += [int(c) for c in children]
    return found
