"""Where `put` and `cas` take the value to write from: VALUE, stdin or a file.

'-' means stdin wherever confctl reads input (VALUE, `--file -`, `txn -`), as in most Unix tools;
a VALUE left out is read from stdin too when something is piped in, as etcdctl does. `--literal`
stores VALUE exactly as given, so a value that is a lone dash can still be written. Values are
bytes: stdin and files are read as they are, VALUE is encoded as UTF-8.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from confctl.commands.common import UsageProblem

STDIN = "-"

ValueArg = Annotated[
    str | None,
    typer.Argument(
        help="The value. '-' reads stdin, as does leaving it out when something is piped in; "
        "--literal stores it as given.",
        show_default=False,
    ),
]
FileOpt = Annotated[
    Path | None,
    typer.Option("--file", "-f", help="Read the value from this file ('-': stdin).", show_default=False),
]
LiteralOpt = Annotated[
    bool,
    typer.Option("--literal", help="Store VALUE exactly as given, even a lone '-' (which reads stdin)."),
]


def read_value(value: str | None, file: Path | None, literal: bool) -> bytes:
    """The bytes to write: VALUE, else --file's, else stdin's."""
    if value is not None and file is not None:
        raise UsageProblem("give VALUE or --file, not both")
    if literal and value is None:
        raise UsageProblem("--literal stores VALUE as given: give VALUE")
    if value is not None and (literal or value != STDIN):
        return value.encode("utf-8")
    if file is not None and str(file) != STDIN:
        try:
            return file.read_bytes()
        except OSError as exc:
            raise UsageProblem(f"cannot read {file}: {exc.strerror or exc}") from exc
    asked = value == STDIN or file is not None
    if sys.stdin is None or (not asked and sys.stdin.isatty()):
        # Nothing piped and stdin not asked for by name: waiting on the terminal would only puzzle.
        raise UsageProblem("no value: give VALUE, --file FILE, or pipe it on stdin ('-')")
    return sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode("utf-8")
