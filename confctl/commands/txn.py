"""The `txn` command: run a transaction read from a JSON file (format in confctl/txnfile.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from confctl.commands.common import Env, UsageProblem, command
from confctl.exit_codes import ExitCode

HELP = """Run a transaction from FILE.json ('-' for stdin): if every compare holds, apply
success, else failure — one log entry, one version. Exit code 4 when the compares
did not hold (the failure branch ran).

\b
{"compare": [{"key": "app/mode", "target": "version", "version": "3:17"},
             {"key": "app/mode", "target": "value", "value": "blue"},
             {"key": "app/lock", "target": "exists", "exists": false}],
 "success": [{"op": "put", "key": "app/mode", "value": "green"},
             {"op": "delete", "key": "app/old"}],
 "failure": []}

Values are UTF-8 text, or base64 with "value_encoding": "base64"."""


def _read(file: Path) -> str:
    try:
        return sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageProblem(f"cannot read {file}: {exc}") from exc


@command
def txn(
    env: Env,
    file: Annotated[Path, typer.Argument(metavar="FILE.json", help="The transaction ('-': stdin).")],
) -> ExitCode:
    from confctl.txnfile import TxnFileError, parse_text  # noqa: PLC0415  (it loads the client's types)

    try:
        compare, success, failure = parse_text(_read(file))
    except TxnFileError as exc:
        raise UsageProblem(f"{file}: {exc}") from exc
    result = env.client.txn(compare, success, failure)
    rows = [
        {
            "op": r.op,
            "key": r.key,
            "version": None if r.version is None else str(r.version),
            "prev_version": None if r.prev_version is None else str(r.prev_version),
        }
        for r in result.results
    ]
    env.renderer.record_with_rows(
        {"succeeded": result.succeeded, "version": str(result.version)},
        "results",
        rows,
        ["op", "key", "version", "prev_version"],
    )
    return ExitCode.OK if result.succeeded else ExitCode.COMPARE_FAILED


txn.__doc__ = HELP


def register(app: typer.Typer) -> None:
    app.command("txn", help=HELP)(txn)
