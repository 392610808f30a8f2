"""All of confctl's output: rows as an aligned table or as JSON lines, and the one-line error.

Nothing else in confctl prints. A command hands `Renderer` a list of rows
(dicts with stable keys, in column order); `table` aligns them under upper-case
headers, `json` writes one object per line with sorted keys. Values are shown as
UTF-8 text when they decode; otherwise as base64 — marked `base64:` in a table
and by `"value_encoding": "base64"` in JSON (always present: `utf-8` or `base64`).

A table is for reading: control characters in its cells are escaped (`\t`, `\n`, `\x1b`), so
a tab in a key cannot push a row out of line, and a value over `MAX_VALUE_CHARS` is cut short
with its size (`aaa… (1,048,576 bytes)`), with a note on stderr. JSON is for programs: always
complete and exact.
"""

from __future__ import annotations

import base64
import enum
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import typer

Row = Mapping[str, object]
MAX_VALUE_CHARS = 60
# Each C0 control character and DEL, as Python would write it in a string literal.
_ESCAPES = {c: repr(chr(c))[1:-1] for c in (*range(0x20), 0x7F)}


class Output(enum.StrEnum):
    TABLE = "table"
    JSON = "json"


def value_fields(value: bytes | None, name: str = "value") -> dict[str, object]:
    """`{name: text, name_encoding: "utf-8"}`, or base64 when the bytes are not UTF-8."""
    if value is None:
        return {name: None, f"{name}_encoding": None}
    try:
        return {name: value.decode("utf-8"), f"{name}_encoding": "utf-8"}
    except UnicodeDecodeError:
        return {name: base64.b64encode(value).decode("ascii"), f"{name}_encoding": "base64"}


def escape(text: str) -> str:
    """`text` with its control characters written out, so it stays on its line and in its column."""
    return text.translate(_ESCAPES)


def _cell(row: Row, column: str) -> tuple[str, bool]:
    """The cell's text, and whether a value was cut short to fit."""
    value = row.get(column)
    if value is None:
        return "-", False
    encoding = row.get(f"{column}_encoding")
    if isinstance(value, str) and encoding is not None:
        return _value_cell(value, encoding == "base64")
    if isinstance(value, bool):
        return ("yes" if value else "no"), False
    if isinstance(value, list | tuple):
        return (",".join(str(v) for v in value) or "-"), False
    return escape(str(value)), False


def _value_cell(text: str, is_base64: bool) -> tuple[str, bool]:
    prefix = "base64:" if is_base64 else ""
    if len(text) <= MAX_VALUE_CHARS:
        return prefix + escape(text), False
    # The size of the value as stored: base64 holds 3 bytes in every 4 characters, less padding.
    size = len(text) // 4 * 3 - text.count("=", -2) if is_base64 else len(text.encode("utf-8"))
    return f"{prefix}{escape(text[:MAX_VALUE_CHARS])}… ({size:,} bytes)", True


def _echo(line: str) -> None:
    typer.echo(line)


def _echo_err(line: str) -> None:
    typer.echo(line, err=True)


def _echo_bytes(data: bytes) -> None:
    typer.echo(data)  # bytes go to stdout's binary buffer as they are, then a newline


@dataclass(slots=True)
class Renderer:
    output: Output = Output.TABLE
    out: Callable[[str], None] = field(default=_echo)
    err: Callable[[str], None] = field(default=_echo_err)
    out_bytes: Callable[[bytes], None] = field(default=_echo_bytes)

    def rows(self, rows: Sequence[Row], columns: Sequence[str] | None = None) -> None:
        """Print rows; `columns` picks and orders the table's columns (JSON keeps every key)."""
        if self.output is Output.JSON:
            for row in rows:
                self.out(json.dumps(dict(row), sort_keys=True, ensure_ascii=False))
            return
        cols = (
            list(columns)
            if columns is not None
            else [c for c in (rows[0] if rows else {}) if not c.endswith("_encoding")]
        )
        if not cols:
            return
        cells = [[_cell(r, c) for c in cols] for r in rows]
        table = [[c.upper().replace("_", " ") for c in cols]] + [[text for text, _ in line] for line in cells]
        widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
        for line in table:
            self.out("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
        self._note_cut(any(cut for line in cells for _, cut in line))

    def record(self, row: Row) -> None:
        """One object: JSON as one line; a table as `field  value` lines."""
        if self.output is Output.JSON:
            self.rows([row])
            return
        shown = [k for k in row if not k.endswith("_encoding")]
        width = max((len(k) for k in shown), default=0)
        cut = False
        for k in shown:
            text, cut_here = _cell(row, k)
            cut = cut or cut_here
            self.out(f"{k.replace('_', ' ').ljust(width)}  {text}")
        self._note_cut(cut)

    def _note_cut(self, cut: bool) -> None:
        if cut:
            self.note(
                f"values over {MAX_VALUE_CHARS} characters are cut short here; -o json prints them whole"
            )

    def raw(self, data: bytes) -> None:
        """Bytes as they are, then a newline: `get --print-value-only`."""
        self.out_bytes(data)

    def scalar(self, name: str, value: object) -> None:
        """One value: bare in a table (handy in shell scripts), `{name: value}` in JSON."""
        if self.output is Output.JSON:
            self.rows([{name: value}])
        else:
            self.out(str(value))

    def record_with_rows(self, row: Row, name: str, rows: Sequence[Row], columns: Sequence[str]) -> None:
        """An object that holds a list: JSON nests the list under `name` in one line; a table prints both."""
        if self.output is Output.JSON:
            self.rows([{**row, name: [dict(r) for r in rows]}])
            return
        self.record(row)
        if rows:
            self.out("")
            self.rows(rows, columns)

    def note(self, message: str) -> None:
        """A hint beside the output (on stderr, so JSON on stdout stays one kind of object per line)."""
        self.err(f"confctl: {message}")

    def error(self, message: str) -> None:
        """The one line on stderr that explains a non-zero exit."""
        first = " ".join(message.split())  # one line, whatever the message held
        self.err(f"confctl: {first}")
