"""A rate-limited warning log for dropped network input: a flood of junk cannot fill the disk.

At most `burst` records per `interval_s`; what is suppressed is counted and
reported in the next record that gets through.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class DropLog:
    __slots__ = (
        "_burst",
        "_clock",
        "_interval_s",
        "_logger",
        "_suppressed",
        "_window_count",
        "_window_start",
    )

    def __init__(
        self,
        logger: logging.Logger,
        burst: int = 10,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._burst = burst
        self._interval_s = interval_s
        self._clock = clock
        self._window_start = clock()
        self._window_count = 0
        self._suppressed = 0

    @property
    def suppressed(self) -> int:
        """Records held back since the last one that was written."""
        return self._suppressed

    def warning(self, message: str, *args: object) -> None:
        now = self._clock()
        if now - self._window_start >= self._interval_s:
            self._window_start = now
            self._window_count = 0
        if self._window_count >= self._burst:
            self._suppressed += 1
            return
        self._window_count += 1
        if self._suppressed:
            message += " (%d similar messages suppressed)"
            args = (*args, self._suppressed)
            self._suppressed = 0
        self._logger.warning(message, *args)
