"""RaftLog against naive reference implementations over plain lists of terms."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from confmand.raft import Entry, EntryKind
from confmand.raft.log import RaftLog

PROPERTY = settings(derandomize=True, database=None, deadline=None, max_examples=200)


@dataclass(frozen=True)
class LogModel:
    """A log as the paper draws it: a snapshot point, then one term per entry (never decreasing)."""

    snapshot_index: int
    snapshot_term: int
    terms: tuple[int, ...]

    @property
    def last_index(self) -> int:
        return self.snapshot_index + len(self.terms)

    def term_at(self, index: int) -> int | None:
        if index == self.snapshot_index:
            return self.snapshot_term
        if self.snapshot_index < index <= self.last_index:
            return self.terms[index - self.snapshot_index - 1]
        return None

    def entries(self) -> list[Entry]:
        return [make_entry(t, self.snapshot_index + 1 + k) for k, t in enumerate(self.terms)]

    def raft_log(self, commit: int | None = None) -> RaftLog:
        return RaftLog(self.snapshot_index, self.snapshot_term, self.entries(), commit or self.snapshot_index)


def make_entry(term: int, index: int) -> Entry:
    return Entry(term, index, EntryKind.NORMAL, b"")


def non_decreasing(draw: st.DrawFn, start: int, max_size: int, step: st.SearchStrategy[int]) -> list[int]:
    terms, term = [], start
    for delta in draw(st.lists(step, max_size=max_size)):
        term += delta
        terms.append(term)
    return terms


@st.composite
def log_models(draw: st.DrawFn) -> LogModel:
    snapshot_index = draw(st.integers(0, 5))
    snapshot_term = draw(st.integers(0, 3)) if snapshot_index else 0
    terms = non_decreasing(draw, max(snapshot_term, 1), 12, st.integers(0, 2))
    return LogModel(snapshot_index, snapshot_term, tuple(terms))


@st.composite
def diverged_logs(draw: st.DrawFn) -> tuple[LogModel, LogModel, int]:
    """A follower's and a leader's log obeying Log Matching, and a prev index they agree on.

    They share a prefix; after it the follower's entries have odd terms and the
    leader's even terms, so no (index, term) of one tail is in the other.
    """
    common = draw(log_models())
    base = max(common.terms, default=max(common.snapshot_term, 1))
    odd = [2 * (t // 2) + 1 for t in non_decreasing(draw, base + 1, 8, st.integers(0, 3))]
    even = [2 * ((t + 1) // 2) for t in non_decreasing(draw, base + 1, 8, st.integers(0, 3))]
    follower = LogModel(common.snapshot_index, common.snapshot_term, common.terms + tuple(odd))
    leader = LogModel(common.snapshot_index, common.snapshot_term, common.terms + tuple(even))
    prev = draw(st.integers(common.snapshot_index, common.last_index))
    return follower, leader, prev


@PROPERTY
@given(log_models(), st.integers(-1, 25))
def test_term_at_is_the_term_of_the_entry_or_the_snapshot_point(model: LogModel, index: int) -> None:
    assert model.raft_log().term_at(index) == model.term_at(index)


@PROPERTY
@given(log_models(), st.integers(0, 25), st.integers(0, 12))
def test_log_is_up_to_date_iff_its_last_term_then_last_index_is_not_smaller(
    model: LogModel, last_index: int, last_term: int
) -> None:
    mine = (model.term_at(model.last_index), model.last_index)
    assert model.raft_log().is_up_to_date(last_index, last_term) == ((last_term, last_index) >= mine)


@PROPERTY
@given(log_models(), st.data())
def test_first_index_of_term_walks_back_to_where_the_term_starts(
    model: LogModel, data: st.DataObject
) -> None:
    if not model.terms:
        return
    index = data.draw(st.integers(model.snapshot_index + 1, model.last_index))
    expected = index
    while expected - 1 > model.snapshot_index and model.term_at(expected - 1) == model.term_at(index):
        expected -= 1
    assert model.raft_log().first_index_of_term(index) == expected


@PROPERTY
@given(log_models(), st.integers(0, 12), st.integers(0, 25))
def test_last_index_of_term_is_the_last_entry_of_that_term_not_after_at_most(
    model: LogModel, term: int, at_most: int
) -> None:
    candidates = [
        i
        for i in range(model.snapshot_index + 1, min(at_most, model.last_index) + 1)
        if model.term_at(i) == term
    ]
    assert model.raft_log().last_index_of_term(term, at_most) == (max(candidates) if candidates else None)


@PROPERTY
@given(diverged_logs(), st.integers(0, 20))
def test_find_conflict_is_the_first_entry_the_log_lacks_or_holds_in_another_term(
    logs: tuple[LogModel, LogModel, int], count: int
) -> None:
    follower, leader, prev = logs
    entries = leader.entries()[prev - leader.snapshot_index :][:count]
    expected = next(
        (pos for pos, e in enumerate(entries) if follower.term_at(e.index) != e.term),
        len(entries),
    )
    assert follower.raft_log().find_conflict(entries) == expected


@PROPERTY
@given(diverged_logs())
def test_truncate_then_append_makes_the_follower_log_the_leaders(
    logs: tuple[LogModel, LogModel, int],
) -> None:
    """As `_on_append` does it; a follower whose log merely extends the leader's keeps it whole."""
    follower, leader, prev = logs
    log = follower.raft_log(commit=prev)
    log.take_unstable()
    entries = leader.entries()[prev - leader.snapshot_index :]
    pos = log.find_conflict(entries)
    new = entries[pos:]
    if new and new[0].index <= log.last_index:
        log.truncate_from(new[0].index)
    log.append(new)
    assert tuple(e.term for e in log.entries) == (leader.terms if new else follower.terms)
    assert log.take_unstable() == new, "exactly the replaced and new entries go to the driver"
    assert log.stable == (new[0].index - 1 if new else follower.last_index)


@PROPERTY
@given(log_models(), st.data())
def test_truncating_a_committed_entry_raises(model: LogModel, data: st.DataObject) -> None:
    if not model.terms:
        return
    commit = data.draw(st.integers(model.snapshot_index + 1, model.last_index))
    index = data.draw(st.integers(model.snapshot_index + 1, commit))
    log = model.raft_log(commit)
    with pytest.raises(AssertionError, match="safety"):
        log.truncate_from(index)


@PROPERTY
@given(log_models(), st.data())
def test_compact_keeps_every_term_from_the_compaction_point_on(model: LogModel, data: st.DataObject) -> None:
    log = model.raft_log(model.last_index)
    log.applied = model.last_index
    index = data.draw(st.integers(model.snapshot_index, model.last_index))
    log.compact(index)
    assert log.snapshot_index == index
    for i in range(model.last_index + 2):
        assert log.term_at(i) == (model.term_at(i) if i >= index else None)


def test_log_rejects_entries_that_do_not_start_right_after_the_snapshot() -> None:
    with pytest.raises(ValueError, match="expected 4"):
        RaftLog(3, 1, [make_entry(1, 5)], 3)


def test_log_rejects_a_commit_index_beyond_its_last_entry() -> None:
    with pytest.raises(ValueError, match="beyond the last log index"):
        RaftLog(0, 0, [make_entry(1, 1)], 2)


def test_stable_to_ignores_an_index_whose_term_changed_meanwhile() -> None:
    log = RaftLog(0, 0, [], 0)
    log.append([make_entry(1, 1), make_entry(1, 2)])
    handed = log.take_unstable()
    log.truncate_from(2)
    log.append([make_entry(2, 2)])
    log.stable_to(handed[-1].index, handed[-1].term)
    assert log.stable == 0
