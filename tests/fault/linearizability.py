"""A linearizability checker in the style of Porcupine (Wing & Gong, with Lowe's memoisation).

The question: is there a total order of the ops, consistent with real time
(an op that returned before another was called comes first), in which each op,
applied to the model's state in turn, produces what its client saw?

How (per key, since registers are independent: P-compositionality):

1. Failed ops are dropped (definitely not applied, nothing observed); the model
   may drop more (`Model.droppable`). Unknown ops return at +infinity: they may
   take effect any time after their call, and linearized at the very end they
   affect nothing anyone observed, which is exactly "maybe never applied".
   Unknown ops whose effect was later observed must have applied before that
   observation returned (`Model.applied_by`): that time is their return.
2. Every op becomes a call and a return event, sorted by time (calls before
   returns at equal times, so touching intervals count as concurrent), in a
   doubly linked list.
3. Depth-first search from the head: a call event whose op the model accepts
   in the current state is *lifted* (its call and return unlinked) and pushed
   on a stack, unless the (linearized-set, state) pair was seen before (the
   cache: the same ops linearized in another order reaching the same state
   leads to the same future; see `_Cache` for how open-ended unknown ops are
   folded in). Reaching a return event means that op was never linearized
   before its return: backtrack (pop, unlift, try the next call). Every
   bounded op linearized means ok (open-ended unknown ops go last, or never).
   Backtracking from an empty stack means no order exists: a violation.
4. The longest linearized prefix seen is kept; on a violation it is reported
   with the ops that could come next and why the model refused each one.

The search is exponential in the worst case; `deadline_s` bounds each key, after
which that key's verdict is "unknown". The clock is injectable for tests.
Pure: no I/O; the only outside input is the clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from tests.fault.history import History, HistoryError, Op
from tests.fault.models import REGISTER, Model

Verdict = Literal["ok", "violation", "unknown"]
S = TypeVar("S", bound=Hashable)

_CLOCK_EVERY_STEPS = 512  # reading the clock costs more than a search step
_INFINITY = float("inf")


@dataclass(frozen=True, slots=True)
class Linearized:
    """One op of the longest linearizable prefix: its position in the history and the state after it."""

    position: int
    op: Op
    state_after: str


@dataclass(frozen=True, slots=True)
class Stuck:
    """An op that could have been linearized next, but the model refused it."""

    position: int
    op: Op
    reason: str


@dataclass(frozen=True, slots=True)
class KeyResult:
    key: str
    verdict: Verdict
    ops_checked: int
    ops_dropped: int
    steps: int
    elapsed_s: float
    prefix: tuple[Linearized, ...] = ()
    stuck: tuple[Stuck, ...] = ()
    state_after_prefix: str = ""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The verdict of a whole history: violation if any key is, else unknown if any key is, else ok."""

    model: str
    keys: dict[str, KeyResult] = field(default_factory=dict)

    @property
    def verdict(self) -> Verdict:
        verdicts = {result.verdict for result in self.keys.values()}
        if "violation" in verdicts:
            return "violation"
        return "unknown" if "unknown" in verdicts else "ok"

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"

    def with_verdict(self, verdict: Verdict) -> list[KeyResult]:
        return [result for result in self.keys.values() if result.verdict == verdict]


class _Event:
    """A node of the event list: a call (`match` is its return) or a return (`match` is itself).

    `open_ended` marks the call of an unknown op with no bound on when it applied.
    """

    __slots__ = ("id", "is_call", "match", "next", "open_ended", "prev")

    def __init__(self, op_id: int, is_call: bool) -> None:
        self.id = op_id
        self.is_call = is_call
        self.open_ended = False
        self.match = self
        self.prev = self
        self.next = self


def _build_events(ops: Sequence[Op], applied_by: dict[int, int]) -> tuple[_Event, _Event]:
    """The sorted, doubly linked call/return list between a head and a tail sentinel."""
    keyed: list[tuple[float, int, int, _Event]] = []
    for op_id, op in enumerate(ops):
        call, ret = _Event(op_id, True), _Event(op_id, False)
        call.match = ret
        end: float
        if op.outcome == "unknown" or op.return_ns is None:
            end = applied_by.get(op_id, _INFINITY)
        else:
            end = op.return_ns
        call.open_ended = end == _INFINITY
        keyed.append((op.call_ns, 0, op_id, call))
        keyed.append((end, 1, op_id, ret))
    keyed.sort(key=lambda item: item[:3])
    head, tail = _Event(-1, False), _Event(-1, False)
    last = head
    for *_, event in keyed:
        last.next = event
        event.prev = last
        last = event
    last.next = tail
    tail.prev = last
    return head, tail


class _Cache(Generic[S]):
    """Configurations already reached, with dominance over open-ended unknown ops.

    A configuration is (linearized ops, state). Of two that differ only in
    which open-ended unknown ops they linearized, the one with fewer
    dominates: it can take every step the other can (the same bounded ops
    are pending, and open-ended ops never block anything), and its extra
    pending ops can go last or never. So a configuration is new only if no
    reached one with the same bounded ops and state used a subset of its
    open-ended ones. A reached one is either explored and failed, or an
    ancestor on the stack, which explores the same continuations itself.
    This is why the search stops once the bounded ops are all linearized.
    """

    __slots__ = ("_open_ended", "_seen")

    def __init__(self, open_ended: int) -> None:
        self._open_ended = open_ended
        self._seen: dict[tuple[int, S], list[int]] = {}

    def add_if_new(self, linearized: int, state: S) -> bool:
        unknown = linearized & self._open_ended
        key = (linearized & ~self._open_ended, state)
        reached = self._seen.get(key)
        if reached is None:
            self._seen[key] = [unknown]
            return True
        if any(old & ~unknown == 0 for old in reached):
            return False
        reached.append(unknown)
        return True


def _lift(call: _Event) -> None:
    """Unlink an op's call and return (both have neighbours: the sentinels bound the list)."""
    call.prev.next = call.next
    call.next.prev = call.prev
    ret = call.match
    ret.prev.next = ret.next
    ret.next.prev = ret.prev


def _unlift(call: _Event) -> None:
    """Undo `_lift`, in reverse order, so each node's neighbours are the ones it left."""
    ret = call.match
    ret.prev.next = ret
    ret.next.prev = ret
    call.prev.next = call
    call.next.prev = call


@dataclass(slots=True)
class _Search(Generic[S]):
    """The state of one key's depth-first search (see the module docstring, step 3)."""

    model: Model[S]
    ops: Sequence[Op]
    applied_by: dict[int, int]
    deadline: float
    clock: Callable[[], float]
    steps: int = 0
    best: list[tuple[int, S]] = field(default_factory=list)

    def run(self) -> Verdict:
        """Step 3 of the module docstring, with the dominance cache of `_Cache`."""
        head, _ = _build_events(self.ops, self.applied_by)
        open_ended = sum(1 << op_id for op_id, op in enumerate(self.ops) if self._open_ended(op_id, op))
        cache: _Cache[S] = _Cache(open_ended)
        state: S = self.model.init()
        linearized = 0  # bitset of op ids, as a Python int
        stack: list[tuple[_Event, S]] = []  # (lifted call, state before it)
        # Done when every bounded op is linearized: the open-ended rest can go last, or never.
        bounded_left = len(self.ops) - open_ended.bit_count()
        entry = head.next
        while bounded_left:
            self.steps += 1
            if self.steps % _CLOCK_EVERY_STEPS == 0 and self.clock() > self.deadline:
                return "unknown"
            if entry.is_call:
                accepted, new_state = self.model.step(state, self.ops[entry.id])
                if accepted and cache.add_if_new(linearized | (1 << entry.id), new_state):
                    stack.append((entry, state))
                    if len(stack) > len(self.best):
                        self.best = self._states_after(stack, new_state)
                    state, linearized = new_state, linearized | (1 << entry.id)
                    bounded_left -= 0 if entry.open_ended else 1
                    _lift(entry)
                    entry = head.next
                else:
                    entry = entry.next
                continue
            if not stack:
                return "violation"
            entry, state = stack.pop()
            linearized &= ~(1 << entry.id)
            bounded_left += 0 if entry.open_ended else 1
            _unlift(entry)
            entry = entry.next
        return "ok"

    def _open_ended(self, op_id: int, op: Op) -> bool:
        return (op.outcome == "unknown" or op.return_ns is None) and op_id not in self.applied_by

    def _states_after(self, stack: list[tuple[_Event, S]], last_state: S) -> list[tuple[int, S]]:
        """The prefix as (op id, state after it): the stack holds the state *before* each op."""
        after = [state for _, state in stack[1:]] + [last_state]
        return [(event.id, state) for (event, _), state in zip(stack, after, strict=True)]


def check_key(
    model: Model[S],
    key: str,
    ops: Sequence[tuple[int, Op]],
    *,
    deadline_s: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
) -> KeyResult:
    """Judge one key's ops (with their positions in the history, for the report)."""
    started = clock()
    live = [(position, op) for position, op in ops if op.outcome != "fail"]
    dropped = model.droppable([op for _, op in live])
    kept = [item for i, item in enumerate(live) if i not in dropped]
    kept_ops = [op for _, op in kept]
    search = _Search(model, kept_ops, model.applied_by(kept_ops), started + deadline_s, clock)
    verdict = search.run()
    prefix = tuple(
        Linearized(kept[op_id][0], kept[op_id][1], model.describe_state(state))
        for op_id, state in search.best
    )
    stuck: tuple[Stuck, ...] = ()
    state_text = ""
    if verdict == "violation":
        state = search.best[-1][1] if search.best else model.init()
        state_text = model.describe_state(state)
        done = {op_id for op_id, _ in search.best}
        # Candidates the model accepts (unknown ops) only lead back into the dead end: not the cause.
        refused = [i for i in _candidates(kept_ops, done) if not model.step(state, kept_ops[i])[0]]
        stuck = tuple(Stuck(kept[i][0], kept[i][1], model.why_not(state, kept[i][1])) for i in refused)
    return KeyResult(
        key=key,
        verdict=verdict,
        ops_checked=len(kept),
        ops_dropped=len(ops) - len(kept),
        steps=search.steps,
        elapsed_s=clock() - started,
        prefix=prefix if verdict == "violation" else (),
        stuck=stuck,
        state_after_prefix=state_text,
    )


def _candidates(ops: Sequence[Op], done: set[int]) -> list[int]:
    """Ops not yet linearized that were called before every other pending op returned."""
    pending = [i for i in range(len(ops)) if i not in done]
    ends = [end for i in pending if ops[i].outcome != "unknown" and (end := ops[i].return_ns) is not None]
    first_return = min(ends, default=None)
    return [i for i in pending if first_return is None or ops[i].call_ns <= first_return]


def check(
    history: History | Iterable[Op],
    model: Model[S] | None = None,
    *,
    deadline_s: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
) -> CheckResult:
    """Judge a history against `model` (default: the register), key by key.

    Raises HistoryError if an op's kind or shape does not fit the model:
    filter the history first (`History.only`) to leave out, say, stale reads.
    """
    chosen: Model[S] = model if model is not None else REGISTER  # type: ignore[assignment]
    per_key: dict[str, list[tuple[int, Op]]] = {}
    for position, op in enumerate(history):
        if not isinstance(op, Op):
            raise HistoryError(f"item {position} is not an Op: {op!r}")
        chosen.validate(op)
        per_key.setdefault(op.key, []).append((position, op))
    results = {
        key: check_key(chosen, key, ops, deadline_s=deadline_s, clock=clock) for key, ops in per_key.items()
    }
    return CheckResult(model=chosen.name, keys=results)


def explain(result: CheckResult, *, prefix_ops_max: int = 20) -> str:
    """A readable report: a summary line, then each violating or unknown key in detail.

    Only the last `prefix_ops_max` ops of a long linearizable prefix are shown: the
    violation is where the prefix ends.
    """
    counts = {v: len(result.with_verdict(v)) for v in ("ok", "violation", "unknown")}
    lines = [
        f"linearizability ({result.model}): {result.verdict.upper()} - {len(result.keys)} keys: "
        f"{counts['ok']} ok, {counts['violation']} violation, {counts['unknown']} unknown"
    ]
    for key_result in result.with_verdict("unknown"):
        lines.append(
            f"key {key_result.key!r}: UNKNOWN - search gave up after {key_result.steps} steps "
            f"({key_result.elapsed_s:.2f} s, {key_result.ops_checked} ops)"
        )
    for key_result in result.with_verdict("violation"):
        lines.extend(_explain_violation(key_result, prefix_ops_max))
    return "\n".join(lines)


def _explain_violation(result: KeyResult, prefix_ops_max: int) -> list[str]:
    lines = [
        f"key {result.key!r}: NOT LINEARIZABLE ({result.ops_checked} ops checked, "
        f"{result.ops_dropped} failed or irrelevant ops dropped)",
        f"  longest linearizable prefix ({len(result.prefix)} ops), in linearization order:",
    ]
    if not result.prefix:
        lines.append("    (none: not even the first op fits the initial state)")
    hidden = max(0, len(result.prefix) - prefix_ops_max)
    if hidden:
        lines.append(f"    ... {hidden} earlier ops")
    for number, item in enumerate(result.prefix[hidden:], start=hidden + 1):
        lines.append(f"    {number:3}. #{item.position} {item.op.describe()}  => {item.state_after}")
    lines.append(f"  then, in state {result.state_after_prefix}, these ops cannot be linearized:")
    for stuck in result.stuck:
        lines.append(f"    #{stuck.position} {stuck.op.describe()}: {stuck.reason}")
    return lines
