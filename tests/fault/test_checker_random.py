"""The WGL checker agrees with a brute-force reference on thousands of small random histories.

The reference tries every order of the ops that respects real time (an op that
returned before another's call comes first), on the whole history at once with
a dict of registers, leaving out any subset of the unknown ops. It shares no
code with the checker or the register model: a disagreement is a bug in one.

Two generators: histories recorded from a real linearizable execution (each op
takes effect at a random instant inside its interval, unknown ops at a random
instant after their call or never, failed ops never), which must be ok; and
random junk, mostly violations, on which only agreement is asserted.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fault.history import History, Op, Outcome, Value
from tests.fault.linearizability import check, explain

VALUES = ("v0", "v1", "v2", "v3")
KEYS = ("x", "y")


# ---------------------------------------------------------------- the brute-force reference


def _apply(state: dict[str, Value], op: Op) -> dict[str, Value] | None:
    """The op applied to a copy of `state`, or None if it cannot have produced what was seen."""
    current = state.get(op.key)
    seen = op.outcome == "ok"
    after = dict(state)
    if op.kind == "put":
        after[op.key] = op.input
    elif op.kind == "get":
        if seen and op.output != current:
            return None
    elif op.kind == "cas":
        assert isinstance(op.input, tuple)
        expected, new = op.input
        if seen and op.output != (current == expected):
            return None
        if current == expected:
            after[op.key] = new
    return after


def brute_force_linearizable(ops: list[Op]) -> bool:
    live = [op for op in ops if op.outcome != "fail"]

    def returned_before(a: Op, b: Op) -> bool:
        return a.outcome == "ok" and a.return_ns is not None and a.return_ns < b.call_ns

    def search(remaining: list[Op], state: dict[str, Value]) -> bool:
        if all(op.outcome == "unknown" for op in remaining):
            return True  # the rest never took effect
        for i, op in enumerate(remaining):
            if any(returned_before(other, op) for other in remaining if other is not op):
                continue
            after = _apply(state, op)
            if after is not None and search(remaining[:i] + remaining[i + 1 :], after):
                return True
        return False

    return search(live, {})


# ---------------------------------------------------------------- generators


def recorded_ops(rng: random.Random) -> list[Op]:
    """Up to 7 calls, with outputs computed by running them at random instants."""
    keys = KEYS[: rng.randint(1, 2)]
    planned: list[tuple[float, int, Op]] = []
    for number in range(rng.randint(0, 7)):
        kind = rng.choice(("put", "put", "get", "get", "cas"))
        key = rng.choice(keys)
        call = rng.randint(0, 20)
        ret = call + rng.randint(0, 8)
        outcome: Outcome = rng.choices(("ok", "unknown", "fail"), weights=(75, 18, 7))[0]
        value: Value = f"w{number}"  # unique: a read identifies its write
        data: Value = value if kind == "put" else None
        if kind == "cas":
            data = (rng.choice((None, *VALUES[:1], *[f"w{i}" for i in range(number)])), value)
        op = Op(number, kind, key, data, call, None if outcome == "unknown" else ret, outcome)
        if outcome == "fail":
            planned.append((float("inf"), number, op))
        elif outcome == "unknown":
            instant = rng.uniform(call, call + 30) if rng.random() < 0.5 else float("inf")
            planned.append((instant, number, op))
        else:
            planned.append((rng.uniform(call, ret), number, op))
    return _run(planned)


def _run(planned: list[tuple[float, int, Op]]) -> list[Op]:
    """Apply the ops in instant order (inf: never) to real registers and fill in the outputs."""
    state: dict[str, Value] = {}
    done: dict[int, Op] = {}
    for instant, number, op in sorted(planned, key=lambda item: (item[0], item[1])):
        if instant == float("inf") or op.outcome == "fail":
            done[number] = op
            continue
        current = state.get(op.key)
        output: Value = None
        if op.kind == "put":
            state[op.key] = op.input
        elif op.kind == "get":
            output = current
        elif op.kind == "cas":
            assert isinstance(op.input, tuple)
            output = current == op.input[0]
            if output:
                state[op.key] = op.input[1]
        seen = op.outcome == "ok"
        done[number] = (
            Op(op.process, op.kind, op.key, op.input, op.call_ns, op.return_ns, op.outcome, output)
            if seen
            else op
        )
    return [done[number] for number in sorted(done)]


@st.composite
def junk_histories(draw: st.DrawFn) -> list[Op]:
    ops = []
    for number in range(draw(st.integers(0, 7))):
        kind = draw(st.sampled_from(("put", "get", "cas")))
        key = draw(st.sampled_from(KEYS))
        call = draw(st.integers(0, 12))
        ret = call + draw(st.integers(0, 6))
        outcome: Outcome = draw(st.sampled_from(("ok", "ok", "ok", "unknown", "fail")))
        value = draw(st.sampled_from(VALUES[1:]))
        data: Value = value
        output: Value = None
        if kind == "get":
            data = None
            output = draw(st.sampled_from((None, *VALUES[1:])))
        elif kind == "cas":
            data = (draw(st.sampled_from((None, *VALUES[1:]))), value)
            output = draw(st.booleans())
        if outcome != "ok":
            output = None
        ops.append(Op(number, kind, key, data, call, None if outcome == "unknown" else ret, outcome, output))
    return ops


def seeded_junk(rng: random.Random) -> list[Op]:
    """Like `junk_histories`, without hypothesis's per-draw cost, for the bulk runs."""
    ops = []
    for number in range(rng.randint(0, 7)):
        kind = rng.choice(("put", "get", "cas"))
        call = rng.randint(0, 12)
        ret = call + rng.randint(0, 6)
        outcome: Outcome = rng.choice(("ok", "ok", "ok", "unknown", "fail"))
        data: Value = rng.choice(VALUES[1:])
        output: Value = None
        if kind == "get":
            data, output = None, rng.choice((None, *VALUES[1:]))
        elif kind == "cas":
            data, output = (rng.choice((None, *VALUES[1:])), data), rng.random() < 0.5
        if outcome != "ok":
            output = None
        end = None if outcome == "unknown" else ret
        ops.append(Op(number, kind, rng.choice(KEYS), data, call, end, outcome, output))
    return ops


# ---------------------------------------------------------------- the properties


def corrupted(ops: list[Op], rng: random.Random) -> list[Op]:
    """One ok op's output replaced by another plausible one (another written value, or a flipped cas)."""
    observed = [i for i, op in enumerate(ops) if op.outcome == "ok" and op.kind in ("get", "cas")]
    if not observed:
        return ops
    i = rng.choice(observed)
    op = ops[i]
    written = [other.input for other in ops if other.kind == "put"]
    output: Value = (not op.output) if op.kind == "cas" else rng.choice([None, *written])
    changed = Op(op.process, op.kind, op.key, op.input, op.call_ns, op.return_ns, "ok", output)
    return [*ops[:i], changed, *ops[i + 1 :]]


@settings(max_examples=300, deadline=None)
@given(st.randoms(use_true_random=False))
def test_histories_of_a_linearizable_execution_are_ok(rng: random.Random) -> None:
    ops = recorded_ops(rng)

    assert brute_force_linearizable(ops)
    assert check(History(ops)).verdict == "ok"


def test_thousands_of_seeded_recordings_are_ok() -> None:
    for seed in range(3000):
        ops = recorded_ops(random.Random(seed))

        assert check(History(ops)).verdict == "ok", f"seed {seed}: {ops}"


def test_the_checker_agrees_with_brute_force_on_corrupted_recordings() -> None:
    verdicts = {"ok": 0, "violation": 0}
    for seed in range(4000):
        rng = random.Random(seed)
        ops = corrupted(recorded_ops(rng), rng)
        expected = "ok" if brute_force_linearizable(ops) else "violation"

        assert check(History(ops)).verdict == expected, f"seed {seed}: {ops}"
        verdicts[expected] += 1
    assert min(verdicts.values()) > 1000


@settings(max_examples=400, deadline=None)
@given(junk_histories())
def test_the_checker_agrees_with_brute_force_on_random_histories(ops: list[Op]) -> None:
    expected = "ok" if brute_force_linearizable(ops) else "violation"

    assert check(History(ops)).verdict == expected


def test_the_checker_agrees_with_brute_force_on_thousands_of_seeded_histories() -> None:
    verdicts = {"ok": 0, "violation": 0}
    for seed in range(4000):
        ops = seeded_junk(random.Random(seed))
        expected = "ok" if brute_force_linearizable(ops) else "violation"

        assert check(History(ops)).verdict == expected, f"seed {seed}: {ops}"
        verdicts[expected] += 1
    assert min(verdicts.values()) > 1000  # both answers well exercised


@settings(max_examples=300, deadline=None)
@given(junk_histories())
def test_a_reported_prefix_is_a_real_linearization_prefix(ops: list[Op]) -> None:
    result = check(History(ops))

    for key_result in result.with_verdict("violation"):
        state: dict[str, Value] = {}
        prefix = [item.op for item in key_result.prefix]
        for i, op in enumerate(prefix):
            after = _apply(state, op)
            assert after is not None, f"prefix op {op.describe()} does not fit"
            state = after
            assert not any(
                later.return_ns is not None and later.return_ns < op.call_ns for later in prefix[i:]
            )
        assert key_result.stuck, "a violation names the ops that could not be linearized"


def fault_run(seed: int, *, clients: int = 10, keys: int = 20, calls: int = 2000) -> list[Op]:
    """A run shaped like a fault test: sequential clients, ms latencies, 5 % timeouts, stale cas."""
    rng = random.Random(seed)
    free_at = [0] * clients
    attempted: dict[str, list[Value]] = {}
    planned: list[tuple[float, int, Op]] = []
    for number in range(calls):
        process, key = number % clients, f"k{rng.randrange(keys)}"
        call = free_at[process] + rng.randint(0, 200_000)
        ret = call + rng.randint(100_000, 5_000_000)
        kind = rng.choice(("put", "put", "get", "get", "cas"))
        outcome: Outcome = "unknown" if rng.random() < 0.05 else "ok"
        value = f"w{number}"
        recent = attempted.setdefault(key, [None])
        data: Value = {"put": value, "get": None, "cas": (rng.choice(recent[-3:]), value)}[kind]
        if kind != "get":
            recent.append(value)
        if outcome == "ok":
            instant, free_at[process] = rng.uniform(call, ret), ret
        else:  # the client gives up after 1 s; the write applies within 2 s, or never
            instant = rng.uniform(call, call + 2 * 10**9) if rng.random() < 0.5 else float("inf")
            free_at[process] = call + 10**9
        planned.append(
            (instant, number, Op(process, kind, key, data, call, ret if outcome == "ok" else None, outcome))
        )
    return _run(planned)


def test_a_fault_shaped_run_of_10_clients_20_keys_2000_ops_checks_ok_quickly() -> None:
    result = check(History(fault_run(1)), deadline_s=10)

    assert result.verdict == "ok"
    assert sum(r.elapsed_s for r in result.keys.values()) < 5


def test_a_stale_read_hidden_in_a_long_run_is_found_quickly() -> None:
    ops = fault_run(2)
    i = next(i for i, op in enumerate(ops) if i > 1000 and op.kind == "get" and op.outcome == "ok")
    earlier = next(op.input for op in ops if op.key == ops[i].key and op.kind == "put" and op.outcome == "ok")
    ops[i] = Op(ops[i].process, "get", ops[i].key, None, ops[i].call_ns, ops[i].return_ns, "ok", earlier)

    result = check(History(ops), deadline_s=10)

    assert [r.key for r in result.with_verdict("violation")] == [ops[i].key]
    assert any(stuck.position == i for stuck in result.keys[ops[i].key].stuck)
    assert "... " in explain(result)
    assert len(explain(result).splitlines()) < 30
