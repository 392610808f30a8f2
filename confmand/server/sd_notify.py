"""systemd's notify protocol (sd_notify(3)) without libsystemd: READY, STATUS, WATCHDOG, STOPPING.

systemd hands a `Type=notify` service the path of a datagram socket in `$NOTIFY_SOCKET` (a
leading `@` names an abstract socket) and, with `WatchdogSec=`, the interval in
`$WATCHDOG_USEC` (meant for the process `$WATCHDOG_PID` names, when set). Each datagram is
newline-separated `NAME=value` assignments.

The watchdog is pinged from the event loop itself, between turns (run.py), never from a thread:
a loop stuck in a turn stops the pings, and systemd kills and restarts the node. Pings go out at
half the interval, as sd_watchdog_enabled(3) advises, so one late turn is not a restart.

Without `$NOTIFY_SOCKET` (not under systemd) every call does nothing. A send that fails is logged
once and never raised: a node keeps serving whether or not systemd hears it.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

STATUS_EVERY_S = 1.0  # how often a changed STATUS= line is sent at most


class SystemdNotifier:
    def __init__(self, address: str | None, watchdog_s: float | None = None) -> None:
        self._address = address
        self.watchdog_s = watchdog_s
        self._sock: socket.socket | None = None
        self._failed = False
        self._next_ping = 0.0
        self._next_status = 0.0
        self._last_status: str | None = None

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] | None = None, pid: int | None = None
    ) -> SystemdNotifier:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        watchdog_s = None
        usec = env.get("WATCHDOG_USEC", "")
        owner = env.get("WATCHDOG_PID", "")
        me = os.getpid() if pid is None else pid
        if usec.isdigit() and int(usec) > 0 and (not owner or owner == str(me)):
            watchdog_s = int(usec) / 1_000_000
        elif usec:
            log.info("systemd watchdog not for this process (WATCHDOG_USEC=%r WATCHDOG_PID=%r)", usec, owner)
        return cls(address, watchdog_s)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, *assignments: str) -> bool:
        """One datagram of `NAME=value` lines; True if it left."""
        if self._address is None:
            return False
        payload = "\n".join(a.replace("\n", " ") for a in assignments).encode()
        try:
            if self._sock is None:
                address = self._address
                if address.startswith("@"):
                    address = "\0" + address[1:]
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                try:
                    sock.connect(address)
                except OSError:
                    sock.close()
                    raise
                self._sock = sock
            self._sock.send(payload)
        except OSError as exc:
            if not self._failed:
                log.warning(
                    "could not notify systemd at %s (%s); further failures are not logged", self._address, exc
                )
                self._failed = True
            self.close()
            return False
        return True

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")
        self._last_status = status

    def stopping(self, status: str) -> None:
        self.send("STOPPING=1", f"STATUS={status}")

    def seconds_to_ping(self, now: float) -> float:
        """How long the loop may wait before it must turn to ping the watchdog (inf: no watchdog)."""
        if self._address is None or self.watchdog_s is None:
            return math.inf
        return max(0.0, self._next_ping - now)

    def after_turn(self, now: float, status: Callable[[], str]) -> None:
        """Ping the watchdog if due; send STATUS= if it changed and the last is old enough."""
        if self._address is None:
            return
        if self.watchdog_s is not None and now >= self._next_ping:
            self.send("WATCHDOG=1")
            self._next_ping = now + self.watchdog_s / 2
        if now >= self._next_status:
            self._next_status = now + STATUS_EVERY_S
            text = status()
            if text != self._last_status:
                self.send(f"STATUS={text}")
                self._last_status = text

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
