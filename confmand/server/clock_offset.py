"""Test-only: step a running node's wall clock from a file, so fault tests can skew one node's HLC.

`FileOffsetClock` wraps the node's clock: its `wall_ms` is the inner clock's
plus the integer of milliseconds in the file (negative steps it back). The
file is looked at no more than every `POLL_S`, and re-read only when its
mtime or size changes. A missing or unreadable file means offset 0; a bad
number is logged and ignored. The monotonic clock is never shifted.
"""

from __future__ import annotations

import logging
from pathlib import Path

from confmand.server.links import Clock

log = logging.getLogger(__name__)

POLL_S = 0.1


class FileOffsetClock:
    def __init__(self, inner: Clock, path: Path) -> None:
        self.inner = inner
        self.path = path
        self.offset_ms = 0
        self._seen: tuple[int, int] | None = None
        self._next_poll = 0.0

    def monotonic(self) -> float:
        return self.inner.monotonic()

    def wall_ms(self) -> int:
        self._poll(self.inner.monotonic())
        return self.inner.wall_ms() + self.offset_ms

    def _poll(self, now: float) -> None:
        if now < self._next_poll:
            return
        self._next_poll = now + POLL_S
        try:
            stat = self.path.stat()
        except OSError:
            self._set(0)
            self._seen = None
            return
        seen = (stat.st_mtime_ns, stat.st_size)
        if seen == self._seen:
            return
        self._seen = seen
        try:
            self._set(int(self.path.read_text().strip() or "0"))
        except (OSError, ValueError) as exc:
            log.warning("ignoring clock offset file %s: %s", self.path, exc)

    def _set(self, offset_ms: int) -> None:
        if offset_ms != self.offset_ms:
            log.warning("test-only: wall clock offset %+d ms", offset_ms)
            self.offset_ms = offset_ms
