"""`@value_class`: an immutable record type, as mypy checks it, that is cheap to make at run time.

A `@dataclass(frozen=True)` enforces immutability at run time by setting every field in
`__init__` through `object.__setattr__`: three times the cost of a plain `self.x = x`
(0.6 µs against 0.2 µs for a five-field record on this machine). The apply path makes
about 35 wire values per write on each node (versions, sessions, commands, history and
audit records, results), so that check cost 10-13% of the CPU per write
(docs/benchmarks.md, session 25). This decorator makes a slotted dataclass with field
equality and a field hash; `dataclass_transform(frozen_default=True)` tells mypy that
it is frozen, so an assignment to a field is a type error, and the tests run mypy on
every change. Mutating one anyway (from unchecked code) would change its hash: don't.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def value_class(cls: type[T]) -> type[T]:
    return dataclass(slots=True, unsafe_hash=True)(cls)
