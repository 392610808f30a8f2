"""The daemon's log lines: one event per line on stderr, as text or as JSON (`[log] format`).

journald stores each line of a service's stderr as one entry, so an event that spans lines (a
traceback, a message quoting a multi-line value) would be torn into entries that interleave with
others. Both formats keep an event on one line: text escapes newlines as `\\n`; JSON is one
object per line (`ts`, `level`, `logger`, `msg`, and `exc` with the traceback when there is one),
for log shippers that parse fields rather than text.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class OneLineFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n", "\\n")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            event["exc"] = self.formatException(record.exc_info)
        return json.dumps(event, ensure_ascii=False)


def configure_logging(level: str, fmt: str = "text") -> None:
    """Route every logger to stderr in `fmt`, at `level`; called again (SIGHUP) it only changes them."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "confman", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.confman = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter() if fmt == "json" else OneLineFormatter())
    root.setLevel(level.upper())
