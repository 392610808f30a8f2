"""Sequential specifications the linearizability checker judges a history against.

A model is a deterministic state machine over hashable states: `init()` is the
state before any op, `step(state, op)` says whether `op`, taking effect
atomically in `state`, could have produced what the client saw, and the state
after it. The checker memoises (linearized ops, state) pairs, so states must
be hashable and equal exactly when they behave the same.

Rules every model follows (the checker relies on them):

- `step` accepts every ``"unknown"`` op (its output was never seen), and
  applies its effect as if it happened at that point;
- ``"fail"`` ops never reach `step` (they are dropped before the search);
- `droppable(ops)` names ops whose removal cannot change the verdict (an
  unknown read, an unknown write nobody could have observed): fewer ops, a
  smaller search. Returning an empty set is always correct;
- `applied_by(ops)` gives, for some unknown ops, a time by which they must
  have taken effect if the history is linearizable (a later op observed their
  effect): the checker uses it as their return time, so they stop hanging
  around as "maybe later" for the rest of the history. Returning an empty
  dict is always correct.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Hashable, Sequence
from typing import Protocol, TypeVar

from tests.fault.history import HistoryError, Op, Value

S = TypeVar("S", bound=Hashable)


class Model(Protocol[S]):
    """The interface of a sequential specification (see the module docstring)."""

    @property
    def name(self) -> str: ...

    @property
    def kinds(self) -> frozenset[str]:
        """The op kinds this model understands; the checker refuses any other."""
        ...

    def init(self) -> S: ...

    def step(self, state: S, op: Op) -> tuple[bool, S]: ...

    def droppable(self, ops: Sequence[Op]) -> frozenset[int]:
        """Positions in `ops` (non-failed ops of one key) whose removal keeps the verdict."""
        ...

    def applied_by(self, ops: Sequence[Op]) -> dict[int, int]:
        """Positions in `ops` of unknown ops -> a time by which any linearization applies them."""
        ...

    def validate(self, op: Op) -> None:
        """Raise HistoryError if `op` is malformed for this model (checked before the search)."""
        ...

    def describe_state(self, state: S) -> str: ...

    def why_not(self, state: S, op: Op) -> str:
        """Why `op` cannot take effect in `state` (called only when `step` refused it)."""
        ...


RegisterState = Value
"""The register's value; None when the key does not exist."""


class Register:
    """One key of the store: put(v), get -> v | None, cas(expected, new) -> True | False, delete.

    Compared by value: the workloads write unique values, so a value read
    identifies the write that produced it. A cas's `input` is the pair
    `(expected, new)`; `expected=None` means "the key must not exist"
    (cas with expected_version 0:0).
    """

    name = "register"
    kinds = frozenset({"put", "get", "cas", "delete"})

    def init(self) -> RegisterState:
        return None

    def step(self, state: RegisterState, op: Op) -> tuple[bool, RegisterState]:
        kind = op.kind
        known = op.outcome == "ok"
        if kind == "put":
            return True, op.input
        if kind == "get":
            return (not known or op.output == state), state
        if kind == "cas":
            expected, new = _cas_input(op)
            holds = state == expected
            if known and op.output is not holds:
                return False, state
            return True, (new if holds else state)
        if kind == "delete":
            return True, None
        raise HistoryError(f"the register model has no op {kind!r}")

    def validate(self, op: Op) -> None:
        if op.kind not in self.kinds:
            raise HistoryError(f"the register model has no op {op.kind!r}: {op.describe()}")
        if op.kind == "put" and op.input is None:
            raise HistoryError(f"a put writes a value, not None: {op.describe()}")
        if op.kind == "cas":
            _cas_input(op)
            if op.outcome == "ok" and not isinstance(op.output, bool):
                raise HistoryError(f"an ok cas has output True or False: {op.describe()}")

    def droppable(self, ops: Sequence[Op]) -> frozenset[int]:
        """Unknown gets, and unknown writes of a value no other op relies on.

        Why the second is sound: take a linearization with an unknown write w
        of v, where no ok get returned v and no cas expected v (other than
        cas ops that observed False). Until the next write, the state is v, so
        only unknown ops and cas ops that observed False can sit there. Move
        the unknown ones to the end (their return time is infinite, so that
        respects real time; at the end they affect nothing observed) and drop
        w: every remaining op sees what it saw, except a cas c that observed
        False because the state was v rather than p, the value before w, with
        c expecting p. Such a c returned after w's call; w is kept unless the
        value c expects provably cannot be the state any more at w's call
        (`_gone_by`). Each condition only gets weaker as ops are dropped, so
        dropping all such writes at once is sound too.
        """
        drop = {i for i, op in enumerate(ops) if op.kind == "get" and op.outcome == "unknown"}
        mentioned: set[Value] = set()
        cas_false: list[tuple[int, Value]] = []  # (return time, expected value)
        for op in ops:
            if op.kind == "get" and op.outcome == "ok":
                mentioned.add(op.output)
            elif op.kind == "cas" and op.outcome == "ok" and op.output is False and op.return_ns is not None:
                cas_false.append((op.return_ns, _cas_input(op)[0]))
            elif op.kind == "cas":
                mentioned.add(_cas_input(op)[0])
        gone_by = _gone_by(ops)
        for i, op in enumerate(ops):
            if op.outcome != "unknown" or op.kind not in ("put", "cas"):
                continue
            if _written(op) in mentioned:
                continue
            if all(
                returned < op.call_ns or gone_by(expected) < op.call_ns for returned, expected in cas_false
            ):
                drop.add(i)
        return frozenset(drop)

    def applied_by(self, ops: Sequence[Op]) -> dict[int, int]:
        """An unknown write of a value only it writes is applied before its value is first observed.

        Observed means an ok get returned the value, or an ok cas found it
        (output True). With one writer of v, any op that saw v is linearized
        after that writer, so the writer's linearization point is before that
        op's return.
        """
        writers: dict[Value, int] = {}
        for op in ops:
            if op.kind in ("put", "cas"):
                written = _written(op)
                writers[written] = writers.get(written, 0) + 1
        first_seen: dict[Value, int] = {}
        for op in ops:
            if op.outcome != "ok" or op.return_ns is None:
                continue
            if op.kind == "get":
                seen = op.output
            elif op.kind == "cas" and op.output is True:
                seen = _cas_input(op)[0]
            else:
                continue
            first_seen[seen] = min(first_seen.get(seen, op.return_ns), op.return_ns)
        bounds = {}
        for i, op in enumerate(ops):
            if op.outcome == "unknown" and op.kind in ("put", "cas"):
                written = _written(op)
                if writers[written] == 1 and written in first_seen:
                    bounds[i] = first_seen[written]
        return bounds

    def describe_state(self, state: RegisterState) -> str:
        return "absent" if state is None else repr(state)

    def why_not(self, state: RegisterState, op: Op) -> str:
        if op.kind == "get":
            return (
                f"read {self.describe_state(op.output)} but the register holds {self.describe_state(state)}"
            )
        if op.kind == "cas":
            expected = _cas_input(op)[0]
            verb = "succeeded" if op.output else "failed"
            return (
                f"cas expecting {self.describe_state(expected)} {verb} "
                f"but the register holds {self.describe_state(state)}"
            )
        return f"{op.kind} refused in state {self.describe_state(state)}"


def _written(op: Op) -> Value:
    return op.input if op.kind == "put" else _cas_input(op)[1]


def _gone_by(ops: Sequence[Op]) -> Callable[[Value], float]:
    """A time after which `value` is certainly not the register's state (inf: no such time known).

    With x the only op that writes the value, and x acknowledged: once a
    definite write y (ok put, or ok cas that swapped) called after x returned
    has itself returned, the state is never that value again (nobody else
    writes it). Absent (None) is gone once any definite write has returned,
    unless the key sees deletes. A value nobody could have written is never
    the state.
    """
    writers: dict[Value, list[Op]] = {}
    for op in ops:
        if op.kind in ("put", "cas"):
            writers.setdefault(_written(op), []).append(op)
    definite = sorted(
        (op.call_ns, op.return_ns)
        for op in ops
        if op.outcome == "ok" and op.return_ns is not None and (op.kind == "put" or op.output is True)
    )
    calls = [call for call, _ in definite]
    # first_return_from[j]: the earliest return among definite writes called at or after calls[j].
    first_return_from = [float("inf")] * (len(definite) + 1)
    for j in range(len(definite) - 1, -1, -1):
        first_return_from[j] = min(first_return_from[j + 1], definite[j][1])
    has_delete = any(op.kind == "delete" for op in ops)

    def gone_by(value: Value) -> float:
        if value is None:
            return float("inf") if has_delete else first_return_from[0]
        mine = writers.get(value, [])
        if not mine:
            return float("-inf")
        if len(mine) > 1 or mine[0].outcome != "ok" or mine[0].return_ns is None:
            return float("inf")
        return first_return_from[bisect.bisect_right(calls, mine[0].return_ns)]

    return gone_by


def _cas_input(op: Op) -> tuple[Value, Value]:
    pair = op.input
    if not isinstance(pair, tuple) or len(pair) != 2 or pair[1] is None:
        raise HistoryError(f"a cas input is (expected, new) with new not None: {op.describe()}")
    return pair[0], pair[1]


REGISTER = Register()
