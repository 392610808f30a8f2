"""confctl's own converters give what typer's would, for every value: the same result or the same error.

confctl.coercion converts command-line values without pydantic (see its docstring for why). Each
case here runs one command line through two apps alike but for that: one built on
`FastTyper` (confctl's), one on plain `typer.Typer`; their exit codes and output must match,
including typer's error messages for values confctl's converters hand back to typer.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from confctl.coercion import UNSURE, FastTyper, converter_for


class Mode(enum.StrEnum):
    TABLE = "table"
    JSON = "json"


def make_app(app: typer.Typer) -> typer.Typer:
    @app.command()
    def show(
        name: Annotated[str, typer.Argument()],
        *,
        count: Annotated[int, typer.Option("--count", min=1, max=1000)] = 100,
        ratio: Annotated[float | None, typer.Option("--ratio", min=0.001)] = None,
        wait: Annotated[float, typer.Option("--wait", min=0)] = 30,
        mode: Annotated[Mode | None, typer.Option("--mode", case_sensitive=False)] = None,
        path: Annotated[Path | None, typer.Option("--path")] = None,
        flag: Annotated[bool, typer.Option("--flag")] = False,
    ) -> None:
        typer.echo(repr((name, count, ratio, wait, mode, path, flag)))

    @app.command()
    def other() -> None:  # a second command, so `show` is a subcommand as confctl's are
        typer.echo("other")

    return app


FAST = make_app(FastTyper())
PLAIN = make_app(typer.Typer())

CASES = [
    ["k"],
    [""],
    ["-"],
    ["k", "--count", "5"],
    ["k", "--count", "1000"],
    ["k", "--count", "0"],
    ["k", "--count", "1001"],
    ["k", "--count", "-3"],
    ["k", "--count", "05"],
    ["k", "--count", "+5"],
    ["k", "--count", " 5"],
    ["k", "--count", "1_0"],
    ["k", "--count", "5.0"],
    ["k", "--count", "x"],
    ["k", "--count", ""],
    ["k", "--ratio", "5"],
    ["k", "--ratio", "0.5"],
    ["k", "--ratio", "0"],
    ["k", "--ratio", "-1"],
    ["k", "--ratio", "1e3"],
    ["k", "--ratio", ".5"],
    ["k", "--ratio", "nan"],
    ["k", "--ratio", "inf"],
    ["k", "--wait", "0"],
    ["k", "--wait", "2.5"],
    ["k", "--mode", "json"],
    ["k", "--mode", "JSON"],
    ["k", "--mode", "Table"],
    ["k", "--mode", "xml"],
    ["k", "--path", "some/file.toml"],
    ["k", "--path", "-"],
    ["k", "--path", ""],
    ["k", "--flag"],
]


def outcome(app: typer.Typer, args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["show", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("args", CASES, ids=[" ".join(c) or "empty" for c in CASES])
def test_a_command_line_gets_the_same_values_or_the_same_error_as_with_typers_own_conversion(
    args: list[str],
) -> None:
    assert outcome(FAST, args) == outcome(PLAIN, args)


def test_an_existing_file_or_directory_converts_the_same_too(tmp_path: Path) -> None:
    file = tmp_path / "f.toml"
    file.touch()
    for path in (tmp_path, file):
        args = ["k", "--path", str(path)]
        assert outcome(FAST, args) == outcome(PLAIN, args)


@pytest.mark.parametrize(
    ("annotation", "info", "value", "expected"),
    [
        (str, typer.models.OptionInfo(), "x", "x"),
        (int, typer.models.OptionInfo(min=1, max=10), "7", 7),
        (float, typer.models.OptionInfo(min=0.001), "2", 2.0),
        (Mode, typer.models.OptionInfo(case_sensitive=False), "JSON", Mode.JSON),
        (Path, typer.models.OptionInfo(), "a/b", Path("a/b")),
    ],
)
def test_plain_values_are_converted_without_asking_typer(
    annotation: type, info: typer.models.OptionInfo, value: str, expected: object
) -> None:
    convert = converter_for(annotation, info)
    assert convert is not None
    assert convert(value, None) == expected


def test_values_it_is_not_sure_of_are_left_to_typer() -> None:
    convert = converter_for(int, typer.models.OptionInfo(min=1, max=10))
    assert convert is not None
    assert convert("11", None) is UNSURE  # out of range: typer words the error
    assert convert("ten", None) is UNSURE


def test_kinds_it_does_not_know_are_left_to_typer_whole() -> None:
    assert converter_for(float, typer.models.OptionInfo(clamp=True)) is None
    assert converter_for(Path, typer.models.OptionInfo(exists=True)) is None
    assert converter_for(list[str], typer.models.OptionInfo()) is None
