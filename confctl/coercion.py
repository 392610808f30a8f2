"""Command-line values converted without pydantic, for the kinds of parameter confctl's commands take.

Why: typer (0.2x) converts each parameter's text through a pydantic TypeAdapter that it builds the
first time the parameter is parsed, for every parameter of the command that runs, given or not.
Importing pydantic and building those adapters cost ~100 ms of every confctl call, more than all
the rest of `confctl version` (bench/confctl_latency.py): a person at a shell feels it each time.

`FastCommand` and `FastGroup` (what `confctl.cli` builds its commands with) give each parameter a
converter of this module before typer parses. For `str`, `bool` flags, `int` and `float` (within
typer's min/max, no clamp), `Path` (with none of typer's path checks asked for) and `Enum`
choices, a value that plainly converts is converted here, to what typer would make of it.
Anything else (a number that does not parse, one out of range, an unknown choice, another type)
goes to typer's own conversion, built then: every error message stays typer's. A typer that does
not build its converters lazily (older ones, on click) is left alone. The converters are held to
typer's results by tests/unit/test_confctl_coercion.py.
"""

from __future__ import annotations

import enum
import functools
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

# "Not sure: let typer convert it." A converter returns this rather than guess.
UNSURE: Any = object()
_INT = re.compile(r"-?[0-9]+")
_FLOAT = re.compile(r"-?[0-9]+(\.[0-9]+)?")

Convert = Callable[[Any, Any], Any]  # (value, click context) -> the value, or UNSURE


class FastConversion:
    """A parameter's converter: ours when it is sure, else typer's (made on first need)."""

    __slots__ = ("convert",)

    def __init__(self, convert: Convert) -> None:
        self.convert = convert

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        if value is None:
            return None  # typer's converters pass None through too (the parameter was not given)
        converted = self.convert(value, ctx)
        if converted is not UNSURE:
            return converted
        param._runtime_param = None  # typer builds its own now, and keeps it
        return param.get_runtime_param().coerce(value, param=param, ctx=ctx)


def converter_for(annotation: Any, info: Any) -> Convert | None:
    """Our converter for a parameter of this type and typer ParameterInfo; None: typer's only."""
    if getattr(info, "parser", None) is not None:
        return None
    if annotation is str:
        return _text
    if annotation is bool:
        return _flag
    if annotation in (int, float) and not info.clamp:
        return functools.partial(_number, annotation, info.min, info.max)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return functools.partial(_choice, annotation, info.case_sensitive)
    if annotation is Path and _plain_path(info):
        return _path
    return None


def _text(value: Any, ctx: Any) -> Any:
    return value if isinstance(value, str) else UNSURE


def _flag(value: Any, ctx: Any) -> Any:
    return value if isinstance(value, bool) else UNSURE


def _number(
    kind: type[int] | type[float], low: float | None, high: float | None, value: Any, ctx: Any
) -> Any:
    if isinstance(value, bool):
        return UNSURE
    if isinstance(value, str):
        pattern = _INT if kind is int else _FLOAT
        if pattern.fullmatch(value) is None:
            return UNSURE
        number: int | float = kind(value)
    elif isinstance(value, kind) or (kind is float and isinstance(value, int)):
        number = kind(value)
    else:
        return UNSURE
    if (low is not None and number < low) or (high is not None and number > high):
        return UNSURE  # typer says which bound, in its words
    return number


def _choice(kind: type[enum.Enum], case_sensitive: bool, value: Any, ctx: Any) -> Any:
    if isinstance(value, kind):
        return value
    if not isinstance(value, str) or getattr(ctx, "token_normalize_func", None) is not None:
        return UNSURE

    def norm(text: str) -> str:
        return text if case_sensitive else text.casefold()

    wanted = norm(value)
    for member in kind:
        if norm(str(member.value)) == wanted:
            return member
    return UNSURE


def _plain_path(info: Any) -> bool:
    """No path check asked for beyond typer's defaults (which only refuse an unreadable file)."""
    return (
        not info.exists
        and not info.resolve_path
        and not info.allow_dash
        and info.path_type is None
        and info.file_okay
        and info.dir_okay
        and not info.writable
    )


def _path(value: Any, ctx: Any) -> Any:
    if isinstance(value, Path):
        return value
    if not isinstance(value, str) or not value:
        return UNSURE
    if os.path.exists(value) and not os.access(value, os.R_OK):
        return UNSURE  # typer refuses it, and says so
    return Path(value)


def install(params: list[Any]) -> None:
    """Give each typer parameter without a converter yet one of ours, where we have one."""
    for param in params:
        descriptor = getattr(param, "type_descriptor", None)
        if descriptor is None or getattr(param, "_runtime_param", False) is not None:
            continue  # not typer's lazily converted kind, or already converted
        if param.nargs != 1 or param.multiple or descriptor.file_annotation is not None:
            continue
        convert = converter_for(descriptor.annotation, descriptor.parameter_info)
        if convert is not None:
            param._runtime_param = FastConversion(convert)


# The context is typed Any: its class is typer's private click copy (or click, in older typers).
class FastCommand(TyperCommand):
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        install(self.get_params(ctx))
        return super().parse_args(ctx, args)


class FastGroup(TyperGroup):
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        install(self.get_params(ctx))
        return super().parse_args(ctx, args)


class FastTyper(typer.Typer):
    """A typer app whose group and commands convert values with this module's converters first."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cls=FastGroup, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", FastCommand)
        return super().command(*args, **kwargs)
