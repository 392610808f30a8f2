"""The record of a fault test: what each client asked, when, and what it learnt.

An `Op` is one client call, complete: its process (the client id), kind, key,
input, the times it was called and returned, its outcome and its output.

Outcomes (the one distinction every checker relies on):

- ``"ok"``: the call took effect (a write) or observed something (a read),
  and `output` says what: the value read (None for NOT_FOUND), or for a
  cas True (swapped) / False (the comparison did not hold).
- ``"fail"``: definitely **not** applied (CAS_FAILED, NOT_LEADER before
  proposing, INVALID_REQUEST...). A failed op tells nothing about the state.
- ``"unknown"``: may or may not have been applied (TIMEOUT, no reply,
  connection lost). It may take effect at any time after `call_ns`, or never;
  its `return_ns` is None (or the time the client gave up, which no checker
  uses) and its `output` is None.

Values are JSON scalars (str, int, bool, None) or tuples of them, so a history
saves to JSON lines and loads back equal: tuples are written as lists and read
back as tuples. Bytes must be decoded by the recorder (the workloads write
unique text values). Times are integers in nanoseconds of one monotonic clock.

Invariants checked when an `Op` is built (a `HistoryError` names the op):
kind and outcome are known words, `call_ns <= return_ns` for a completed op,
an ok or failed op has a `return_ns`, an unknown op has no `output`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias, get_args

Value: TypeAlias = "bool | int | str | tuple[Value, ...] | None"
Outcome = Literal["ok", "fail", "unknown"]
OUTCOMES: frozenset[str] = frozenset(get_args(Outcome))

_FIELDS = ("process", "kind", "key", "input", "call_ns", "return_ns", "outcome", "output", "version", "shard")


class HistoryError(ValueError):
    """A malformed op or history file; the message names the op or the line."""


def _check_value(value: object, where: str) -> None:
    """Refuse anything that would not survive a JSON round trip unchanged."""
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, tuple):
        for item in value:
            _check_value(item, where)
        return
    raise HistoryError(
        f"{where}: {type(value).__name__} is not a history value (str, int, bool, None, tuple)"
    )


@dataclass(frozen=True, slots=True)
class Op:
    """One client call. `version` is the reply's `term:index` token (writes and reads), if any."""

    process: int
    kind: str
    key: str
    input: Value
    call_ns: int
    return_ns: int | None
    outcome: Outcome
    output: Value = None
    version: str | None = None
    shard: int | None = None  # whose log `version` is in: versions of two shards do not compare

    def __post_init__(self) -> None:
        where = f"op {self.kind!r} on {self.key!r} by process {self.process}"
        if not isinstance(self.process, int) or isinstance(self.process, bool):
            raise HistoryError(f"{where}: process must be an int, not {self.process!r}")
        if not isinstance(self.kind, str) or not self.kind:
            raise HistoryError(f"{where}: kind must be a non-empty str")
        if not isinstance(self.key, str):
            raise HistoryError(f"{where}: key must be a str, not {self.key!r}")
        if self.outcome not in OUTCOMES:
            raise HistoryError(f"{where}: outcome must be one of {sorted(OUTCOMES)}, not {self.outcome!r}")
        if not isinstance(self.call_ns, int) or isinstance(self.call_ns, bool):
            raise HistoryError(f"{where}: call_ns must be an int, not {self.call_ns!r}")
        if self.return_ns is None:
            if self.outcome != "unknown":
                raise HistoryError(f"{where}: an {self.outcome!r} op needs a return_ns")
        elif not isinstance(self.return_ns, int) or self.return_ns < self.call_ns:
            raise HistoryError(
                f"{where}: return_ns {self.return_ns!r} is not an int >= call_ns {self.call_ns}"
            )
        if self.outcome == "unknown" and self.output is not None:
            raise HistoryError(f"{where}: an unknown op has no output, got {self.output!r}")
        if self.shard is not None and (not isinstance(self.shard, int) or isinstance(self.shard, bool)):
            raise HistoryError(f"{where}: shard must be an int, not {self.shard!r}")
        if self.version is not None and not isinstance(self.version, str):
            raise HistoryError(f"{where}: version must be a 'term:index' str, not {self.version!r}")
        _check_value(self.input, f"{where}: input")
        _check_value(self.output, f"{where}: output")

    def describe(self) -> str:
        """One readable line: `p3 cas('a'->'b') -> True ok [100, 250]`."""
        if isinstance(self.input, tuple) and len(self.input) == 2 and self.kind == "cas":
            args = f"{self.input[0]!r}->{self.input[1]!r}"
        else:
            args = "" if self.input is None else repr(self.input)
        # A get that found nothing shows `-> None`; a write shows no output.
        observed = self.outcome == "ok" and (self.output is not None or self.kind == "get")
        shown = f" -> {self.output!r}" if observed else ""
        end = "?" if self.return_ns is None else str(self.return_ns)
        return f"p{self.process} {self.kind}({args}){shown} {self.outcome} [{self.call_ns}, {end}]"

    def to_json(self) -> str:
        return json.dumps({name: getattr(self, name) for name in _FIELDS}, separators=(",", ":"))

    @staticmethod
    def from_json(line: str) -> Op:
        """Inverse of `to_json`; raises HistoryError on anything else."""
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as err:
            raise HistoryError(f"not JSON: {err}") from None
        if not isinstance(raw, dict):
            raise HistoryError(f"an op is a JSON object, got {type(raw).__name__}")
        unknown = set(raw) - set(_FIELDS)
        missing = {"process", "kind", "key", "input", "call_ns", "return_ns", "outcome"} - set(raw)
        if unknown or missing:
            raise HistoryError(f"bad fields: unknown {sorted(unknown)}, missing {sorted(missing)}")
        fields: dict[str, Any] = {name: _tuples(value) for name, value in raw.items()}
        try:
            return Op(**fields)
        except TypeError as err:
            raise HistoryError(str(err)) from None


def _tuples(value: object) -> object:
    """JSON arrays back to tuples, so loaded values are hashable and equal to the saved ones."""
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    if isinstance(value, float):
        raise HistoryError(f"a float is not a history value: {value!r}")
    if isinstance(value, dict):
        raise HistoryError(f"an object is not a history value: {value!r}")
    return value


class History:
    """An ordered list of ops (the order carries no meaning; times do). Ops are identified by position."""

    __slots__ = ("_ops",)

    def __init__(self, ops: Iterable[Op] = ()) -> None:
        self._ops: list[Op] = []
        for op in ops:
            self.append(op)

    def append(self, op: Op) -> None:
        if not isinstance(op, Op):
            raise HistoryError(f"a history holds Op, not {type(op).__name__}")
        self._ops.append(op)

    def __len__(self) -> int:
        return len(self._ops)

    def __iter__(self) -> Iterator[Op]:
        return iter(self._ops)

    def __getitem__(self, position: int) -> Op:
        return self._ops[position]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, History) and self._ops == other._ops

    def __hash__(self) -> int:
        return hash(tuple(self._ops))

    def __repr__(self) -> str:
        return f"History({len(self._ops)} ops)"

    @property
    def ops(self) -> tuple[Op, ...]:
        return tuple(self._ops)

    def by_key(self) -> dict[str, History]:
        """Per-key sub-histories, in first-seen key order, each keeping its ops' relative order."""
        parts: dict[str, History] = {}
        for op in self._ops:
            parts.setdefault(op.key, History()).append(op)
        return parts

    def only(self, kinds: Iterable[str]) -> History:
        """The ops of these kinds, e.g. the linearizable ones before `linearizability.check`."""
        wanted = frozenset(kinds)
        return History(op for op in self._ops if op.kind in wanted)

    def to_jsonl(self) -> str:
        return "".join(op.to_json() + "\n" for op in self._ops)

    @staticmethod
    def from_jsonl(text: str) -> History:
        """Parse JSON lines (blank lines skipped); a HistoryError names the bad line number."""
        history = History()
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                history.append(Op.from_json(line))
            except HistoryError as err:
                raise HistoryError(f"line {number}: {err}") from None
        return history

    def save(self, path: Path | str) -> None:
        Path(path).write_text(self.to_jsonl(), encoding="utf-8")

    @staticmethod
    def load(path: Path | str) -> History:
        return History.from_jsonl(Path(path).read_text(encoding="utf-8"))


def index_of(version: str | None) -> int | None:
    """The index of a `term:index` token (versions of one shard are ordered by index alone)."""
    if version is None:
        return None
    term, sep, index = version.partition(":")
    if not sep or not term.isdigit() or not index.isdigit():
        raise HistoryError(f"not a version token (want term:index): {version!r}")
    return int(index)


def as_mapping(history: History | Iterable[Op]) -> Mapping[str, list[Op]]:
    """Ops grouped by key (a plain dict of lists, for the checks)."""
    parts: dict[str, list[Op]] = {}
    for op in history:
        parts.setdefault(op.key, []).append(op)
    return parts


__all__ = ["OUTCOMES", "History", "HistoryError", "Op", "Outcome", "Value", "as_mapping", "index_of"]
