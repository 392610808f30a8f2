"""The linearizability checker on crafted register histories: each case one sentence of the spec.

Times are small integers; `W(...)`, `R(...)`, `C(...)` build put, get and cas
ops. An op that returned before another was called precedes it; ops whose
intervals overlap (or touch) are concurrent.
"""

from __future__ import annotations

import time

import pytest

from tests.fault.history import History, HistoryError, Op, Outcome, Value
from tests.fault.linearizability import check, explain
from tests.fault.models import REGISTER


def W(value: str, call: int, ret: int | None, outcome: Outcome = "ok", *, p: int = 1, key: str = "k") -> Op:
    return Op(p, "put", key, value, call, ret, outcome)


def R(value: Value, call: int, ret: int | None, outcome: Outcome = "ok", *, p: int = 2, key: str = "k") -> Op:
    return Op(p, "get", key, None, call, ret, outcome, None if outcome != "ok" else value)


def C(
    change: tuple[Value, str],
    swapped: bool | None,
    call: int,
    ret: int | None,
    outcome: Outcome = "ok",
    *,
    p: int = 3,
    key: str = "k",
) -> Op:
    """cas(expected -> new) whose output is `swapped` (True, False, or None when not ok)."""
    return Op(p, "cas", key, change, call, ret, outcome, swapped)


def verdict(*ops: Op) -> str:
    return check(History(ops)).verdict


# ---------------------------------------------------------------- plain histories


def test_an_empty_history_is_linearizable() -> None:
    assert verdict() == "ok"


def test_a_sequential_history_that_reads_its_writes_is_linearizable() -> None:
    assert verdict(R(None, 0, 1), W("a", 2, 3), R("a", 4, 5), W("b", 6, 7), R("b", 8, 9)) == "ok"


def test_a_read_of_a_missing_key_after_a_write_is_a_violation() -> None:
    assert verdict(W("a", 0, 1), R(None, 2, 3)) == "violation"


def test_concurrent_writes_may_be_seen_in_either_order() -> None:
    writes = (W("a", 0, 10, p=1), W("b", 0, 10, p=2))

    assert verdict(*writes, R("a", 20, 21), R("a", 22, 23)) == "ok"
    assert verdict(*writes, R("b", 20, 21), R("b", 22, 23)) == "ok"


def test_a_read_concurrent_with_a_write_may_see_the_old_or_the_new_value() -> None:
    assert verdict(W("a", 0, 1), W("b", 5, 20), R("a", 6, 7)) == "ok"
    assert verdict(W("a", 0, 1), W("b", 5, 20), R("b", 6, 7)) == "ok"


def test_reads_cannot_flip_back_to_the_older_of_two_concurrent_writes() -> None:
    history = (W("a", 0, 10, p=1), W("b", 0, 10, p=2), R("b", 20, 21), R("a", 22, 23))

    assert verdict(*history) == "violation"


def test_touching_intervals_count_as_concurrent() -> None:
    # The read is called at the very nanosecond the write returns: either order is allowed.
    assert verdict(W("a", 0, 5), R(None, 5, 6)) == "ok"


def test_a_stale_read_is_a_violation_that_names_the_key_and_the_ops() -> None:
    history = History([W("old", 0, 1), W("new", 2, 3), R("old", 4, 5, p=7)])

    result = check(history)

    assert result.verdict == "violation"
    [bad] = result.with_verdict("violation")
    assert bad.key == "k"
    assert [item.position for item in bad.prefix] == [0, 1]
    assert [(item.position, item.reason) for item in bad.stuck] == [
        (2, "read 'old' but the register holds 'new'")
    ]
    text = explain(result)
    assert "key 'k': NOT LINEARIZABLE" in text
    assert "#2 p7 get() -> 'old' ok [4, 5]: read 'old' but the register holds 'new'" in text


def test_a_read_of_a_value_never_written_is_a_violation() -> None:
    result = check(History([W("a", 0, 1), R("ghost", 2, 3)]))

    assert result.verdict == "violation"
    assert "read 'ghost'" in explain(result)


def test_a_read_of_a_value_whose_write_definitely_failed_is_a_violation() -> None:
    assert verdict(W("a", 0, 1, "fail"), R("a", 2, 3)) == "violation"


def test_a_read_that_failed_constrains_nothing() -> None:
    assert verdict(W("a", 0, 1), R(None, 2, 3, "fail")) == "ok"


# ---------------------------------------------------------------- compare-and-set


def test_a_cas_succeeds_only_when_the_expected_value_is_there() -> None:
    assert verdict(W("a", 0, 1), C(("a", "b"), True, 2, 3), R("b", 4, 5)) == "ok"
    assert verdict(W("a", 0, 1), C(("x", "b"), True, 2, 3)) == "violation"


def test_a_cas_reported_failed_must_have_seen_another_value() -> None:
    assert verdict(W("a", 0, 1), C(("x", "b"), False, 2, 3), R("a", 4, 5)) == "ok"
    assert verdict(W("a", 0, 1), C(("a", "b"), False, 2, 3)) == "violation"


def test_a_cas_expecting_absence_creates_the_key_once() -> None:
    assert verdict(C((None, "a"), True, 0, 1, p=1), C((None, "b"), False, 2, 3, p=2), R("a", 4, 5)) == "ok"
    assert verdict(C((None, "a"), True, 0, 1, p=1), C((None, "b"), True, 2, 3, p=2)) == "violation"


def test_a_cas_with_a_definite_failure_outcome_is_not_applied() -> None:
    # CAS_FAILED recorded as outcome "fail": dropped, so its value cannot appear.
    assert verdict(W("a", 0, 1), C(("a", "b"), None, 2, 3, "fail"), R("a", 4, 5)) == "ok"
    assert verdict(W("a", 0, 1), C(("a", "b"), None, 2, 3, "fail"), R("b", 4, 5)) == "violation"


def test_an_unknown_cas_may_apply_late_when_its_expectation_still_holds() -> None:
    history = (W("a", 0, 1), C(("a", "b"), None, 2, None, "unknown"), R("a", 10, 11), R("b", 20, 21))

    assert verdict(*history) == "ok"


# ---------------------------------------------------------------- unknown outcomes


def test_an_unknown_write_may_appear_long_after_its_call() -> None:
    assert verdict(W("a", 0, 1), W("b", 2, None, "unknown"), R("a", 10, 11), R("b", 50, 51)) == "ok"


def test_an_unknown_write_may_never_appear() -> None:
    assert verdict(W("a", 0, 1), W("b", 2, None, "unknown"), R("a", 10, 11), R("a", 50, 51)) == "ok"


def test_an_unknown_write_read_before_its_call_is_a_violation() -> None:
    assert verdict(R("b", 0, 1), W("b", 2, None, "unknown")) == "violation"


def test_an_unknown_write_cannot_take_effect_twice() -> None:
    history = (W("b", 0, None, "unknown", p=1), R("b", 1, 2), W("c", 3, 4, p=3), R("b", 5, 6))

    assert verdict(*history) == "violation"


def test_an_unknown_read_constrains_nothing() -> None:
    assert verdict(W("a", 0, 1), R(None, 2, None, "unknown")) == "ok"


# ---------------------------------------------------------------- keys are independent


def test_keys_are_checked_independently() -> None:
    history = History(
        [
            W("a", 0, 10, key="x"),
            W("a", 0, 10, key="y", p=3),
            R("a", 11, 12, key="x"),
            R(None, 11, 12, key="y", p=4),  # y was written before: a violation on y only
        ]
    )

    result = check(history)

    assert {key: r.verdict for key, r in result.keys.items()} == {"x": "ok", "y": "violation"}
    assert result.verdict == "violation"


def test_a_value_written_to_one_key_cannot_be_read_from_another() -> None:
    assert verdict(W("a", 0, 1, key="x"), R("a", 2, 3, key="y")) == "violation"


# ---------------------------------------------------------------- limits and bad input


def test_a_pathological_history_with_a_tiny_deadline_is_unknown_quickly() -> None:
    # 40 concurrent writes, then reads that see one written value twice around another:
    # a violation, but proving it means trying every subset of the writes.
    writes = [W(f"v{i}", 0, 100, p=i) for i in range(40)]
    reads = [R("v0", 200, 201, p=50), R("v1", 202, 203, p=50), R("v0", 204, 205, p=50)]
    started = time.monotonic()

    result = check(History(writes + reads), deadline_s=0.05)

    assert result.verdict == "unknown"
    assert time.monotonic() - started < 1.0
    assert "UNKNOWN - search gave up" in explain(result)


def test_the_deadline_is_measured_on_the_injected_clock() -> None:
    ticks = iter(range(1_000_000))
    writes = [W(f"v{i}", 0, 100, p=i) for i in range(30)]
    reads = [R("v0", 200, 201), R("v1", 202, 203), R("v0", 204, 205)]

    result = check(History(writes + reads), deadline_s=3, clock=lambda: float(next(ticks)))

    assert result.verdict == "unknown"
    assert result.keys["k"].steps <= 4 * 512


def test_an_op_the_model_does_not_know_is_refused_by_name() -> None:
    with pytest.raises(HistoryError, match="no op 'append'"):
        check(History([Op(1, "append", "k", "x", 0, 1, "ok")]))


def test_an_ok_cas_without_a_boolean_output_is_refused() -> None:
    with pytest.raises(HistoryError, match="True or False"):
        check(History([Op(1, "cas", "k", ("a", "b"), 0, 1, "ok", "ok")]))


def test_a_cas_input_that_is_not_a_pair_is_refused() -> None:
    with pytest.raises(HistoryError, match=r"\(expected, new\)"):
        check(History([Op(1, "cas", "k", "b", 0, 1, "ok", True)]))


def test_only_filters_out_kinds_the_register_does_not_judge() -> None:
    history = History([W("a", 0, 1), Op(2, "get_stale", "k", None, 2, 3, "ok", None)])

    assert check(history.only(REGISTER.kinds)).verdict == "ok"
