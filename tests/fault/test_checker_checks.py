"""The non-linearizability checks: sets, read-your-writes, exactly-once and change counts."""

from __future__ import annotations

from tests.fault.checks import check_change_counts, check_exactly_once, check_read_your_writes, check_sets
from tests.fault.history import Op, Outcome, Value


def add(element: str, outcome: Outcome = "ok", key: str = "s") -> Op:
    return Op(1, "add", key, element, 0, None if outcome == "unknown" else 1, outcome)


def put(p: int, value: str, call: int, ret: int, version: str, *, key: str = "k") -> Op:
    return Op(p, "put", key, value, call, ret, "ok", version=version)


def get(p: int, value: Value, call: int, ret: int, version: str | None, *, key: str = "k") -> Op:
    return Op(p, "get", key, None, call, ret, "ok", value, version)


# ---------------------------------------------------------------- sets


def test_a_set_holding_every_acknowledged_element_passes() -> None:
    adds = [add("a"), add("b", "unknown"), add("c", "unknown"), add("d", "fail")]

    assert check_sets({"s": ["a", "b"]}, adds) == []


def test_a_lost_acknowledged_element_is_reported() -> None:
    assert check_sets({"s": ["b"]}, [add("a"), add("b")]) == [
        "'s': 'a' was acknowledged but is missing from the final set (lost)"
    ]


def test_an_element_never_attempted_or_definitely_failed_is_reported() -> None:
    problems = check_sets({"s": ["a", "ghost", "d"]}, [add("a"), add("d", "fail")])

    assert problems == [
        "'s': 'ghost' is in the final set but was never written",
        "'s': 'd' is in the final set but its write definitely failed",
    ]


def test_an_element_present_twice_is_reported() -> None:
    assert check_sets({"s": ["a", "a"]}, [add("a")]) == ["'s': 'a' is present 2 times in the final set"]


def test_a_set_never_read_at_the_end_is_reported() -> None:
    assert check_sets({}, [add("a", key="t")]) == [
        "'t': elements were added but the set was never read at the end"
    ]


def test_an_element_that_failed_once_and_was_retried_successfully_is_fine() -> None:
    assert check_sets({"s": ["a"]}, [add("a", "fail"), add("a")]) == []


# ---------------------------------------------------------------- exactly-once


def test_a_log_applying_each_write_once_passes() -> None:
    writes = [put(1, "a", 0, 1, "1:1"), Op(1, "put", "k", "b", 2, None, "unknown")]

    assert check_exactly_once({"k": ["a", "b"]}, writes) == []
    assert check_exactly_once({"k": ["a"]}, writes) == []


def test_a_write_applied_twice_is_reported() -> None:
    writes = [Op(1, "put", "k", "a", 0, None, "unknown")]

    assert check_exactly_once({"k": ["a", "a"]}, writes) == ["'k': 'a' is present 2 times in the applied log"]


def test_change_counts_between_acknowledged_and_attempted_writes_pass() -> None:
    writes = [put(1, "a", 0, 1, "1:1"), Op(1, "put", "k", "b", 2, None, "unknown")]

    assert check_change_counts({"k": 1}, writes) == []
    assert check_change_counts({"k": 2}, writes) == []


def test_change_counts_outside_the_bounds_are_reported() -> None:
    writes = [put(1, "a", 0, 1, "1:1"), Op(1, "put", "k", "b", 2, 3, "fail")]

    assert check_change_counts({"k": 0}, writes) == [
        "'k': changes is 0 but 1 writes were acknowledged (some lost)"
    ]
    assert check_change_counts({"k": 2}, writes) == [
        "'k': changes is 2 but only 1 acknowledged + 0 unknown writes were made "
        "(some applied twice, or a phantom write)"
    ]


# ---------------------------------------------------------------- read-your-writes


def test_reads_at_or_after_the_clients_own_write_pass() -> None:
    ops = [
        put(1, "a", 0, 1, "1:5"),
        get(1, "a", 2, 3, "1:5"),
        put(2, "b", 4, 5, "1:9"),
        get(1, "b", 6, 7, "1:9"),
    ]

    assert check_read_your_writes(ops) == []


def test_a_read_older_than_the_clients_own_write_is_reported() -> None:
    ops = [put(2, "old", 0, 1, "1:3"), put(1, "a", 2, 3, "1:5"), get(1, "old", 4, 5, "1:3")]

    [problem] = check_read_your_writes(ops)

    assert problem.startswith(
        "p1 'k': p1 get() -> 'old' ok [4, 5] (version 1:3) went back below version index 5"
    )


def test_a_read_of_a_missing_key_after_the_clients_own_write_is_reported() -> None:
    assert len(check_read_your_writes([put(1, "a", 0, 1, "1:5"), get(1, None, 2, 3, None)])) == 1


def test_a_read_with_the_writes_version_but_another_value_is_reported() -> None:
    [problem] = check_read_your_writes([put(1, "a", 0, 1, "1:5"), get(1, "b", 2, 3, "1:5")])

    assert "has the version of its own write" in problem


def test_a_read_with_a_fresh_version_but_an_older_value_is_reported() -> None:
    ops = [put(2, "old", 0, 1, "1:3"), put(1, "a", 2, 3, "1:5"), get(1, "old", 4, 5, "1:6")]

    [problem] = check_read_your_writes(ops)

    assert "returned a value written at index 3" in problem


def test_monotonic_reads_a_client_never_goes_back_after_a_read() -> None:
    ops = [
        put(2, "a", 0, 1, "1:5"),
        put(2, "b", 2, 3, "1:6"),
        get(1, "b", 4, 5, "1:6"),
        get(1, "a", 6, 7, "1:5"),
    ]

    assert len(check_read_your_writes(ops)) == 1


def test_other_clients_and_other_keys_do_not_set_the_floor() -> None:
    ops = [
        put(1, "a", 0, 1, "1:5", key="x"),
        get(2, None, 2, 3, None, key="x"),
        get(1, None, 2, 3, None, key="y"),
    ]

    assert check_read_your_writes(ops) == []


def test_a_read_concurrent_with_the_clients_write_is_not_judged() -> None:
    assert check_read_your_writes([put(1, "a", 0, 10, "1:5"), get(1, None, 5, 6, None)]) == []
