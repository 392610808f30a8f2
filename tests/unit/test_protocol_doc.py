"""docs/protocol.md and `confmand.protocol` say the same: one definition, written down once more for people.

The error-code tables (retryable, may a write have applied, what to retry with) are
checked here against the code; the `status` table against a live node's reply in
tests/server/test_node_protocol.py.
"""

from __future__ import annotations

from pathlib import Path

from confmand.protocol import CLIENT_CODES, SERVER_CODES, CodeInfo

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def section(title: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"\n{title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def table_rows(text: str, header: str) -> list[list[str]]:
    """The rows of the markdown table whose header line is `header`, as lists of cell texts."""
    lines = text[text.index(header) :].splitlines()
    rows = []
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def documented_codes(table_index: int) -> dict[str, CodeInfo]:
    text = section("### Error codes")
    header = "| code | retryable | applied? | retry with | meaning |"
    parts = text.split(header)
    assert len(parts) == 3, "two error tables: the server's codes and the client's"
    rows = table_rows(header + parts[table_index + 1], header)
    return {
        code.strip("`"): CodeInfo(retryable == "yes", applied.strip("*") == "yes", retry)
        for code, retryable, applied, retry, _meaning in rows
    }


def test_the_server_code_table_is_the_protocols() -> None:
    assert documented_codes(0) == {str(code): info for code, info in SERVER_CODES.items()}


def test_the_client_code_table_is_the_protocols() -> None:
    assert documented_codes(1) == {str(code): info for code, info in CLIENT_CODES.items()}


def documented_status_fields() -> set[str]:
    rows = table_rows(section("## Status"), "| field | meaning |")
    return {name.strip(" `") for row in rows for name in row[0].split(",")}


def test_the_status_table_names_each_field_once() -> None:
    fields = documented_status_fields()
    assert {"node_id", "applied", "hlc", "clock_fault", "peers", "learners"} <= fields
