"""The daemon's log: one event per line, as text or JSON, even with a traceback."""

from __future__ import annotations

import json
import logging
import sys

from confmand.server.log_format import JsonFormatter, OneLineFormatter


def _record_with_traceback() -> logging.LogRecord:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        return logging.LogRecord(
            "confmand.x", logging.ERROR, __file__, 1, "turn failed:\n%s", ("detail",), sys.exc_info()
        )


def test_a_text_event_with_a_traceback_stays_on_one_line() -> None:
    line = OneLineFormatter().format(_record_with_traceback())

    assert "\n" not in line
    assert "ERROR confmand.x: turn failed:\\ndetail\\nTraceback" in line
    assert "ValueError: bad\\nvalue" in line


def test_a_json_event_is_one_object_per_line_with_its_traceback() -> None:
    line = JsonFormatter().format(_record_with_traceback())
    event = json.loads(line)

    assert "\n" not in line
    assert (event["level"], event["logger"], event["msg"]) == ("error", "confmand.x", "turn failed:\ndetail")
    assert event["exc"].startswith("Traceback")
    assert event["ts"].endswith("+00:00")
