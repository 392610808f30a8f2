"""quorum.py against brute force: what a majority holds, and who won a vote."""

from __future__ import annotations

from itertools import combinations, product

from hypothesis import given, settings
from hypothesis import strategies as st

from confmand.raft.quorum import VoteResult, majority, quorum_index, vote_result

PROPERTY = settings(derandomize=True, database=None, deadline=None, max_examples=300)

voter_sets = st.frozensets(st.integers(1, 7), min_size=1, max_size=7)


def brute_quorum_index(voters: frozenset[int], match: dict[int, int]) -> int:
    """The best index such that some majority of voters all hold it."""
    need = len(voters) // 2 + 1
    return max(
        min(match.get(v, 0) for v in subset)
        for size in range(need, len(voters) + 1)
        for subset in combinations(sorted(voters), size)
    )


def brute_vote_result(voters: frozenset[int], votes: dict[int, bool]) -> VoteResult:
    """Try every way the undecided voters could still answer."""
    need = len(voters) // 2 + 1
    granted = sum(1 for v in voters if votes.get(v) is True)
    if granted >= need:
        return VoteResult.WON
    undecided = [v for v in voters if v not in votes]
    can_win = any(granted + sum(answers) >= need for answers in product((0, 1), repeat=len(undecided)))
    return VoteResult.PENDING if can_win else VoteResult.LOST


@PROPERTY
@given(st.integers(1, 50))
def test_majority_is_the_smallest_count_above_half(voter_count: int) -> None:
    assert majority(voter_count) == min(k for k in range(voter_count + 1) if 2 * k > voter_count)


@PROPERTY
@given(voter_sets, st.dictionaries(st.integers(0, 9), st.integers(0, 20), max_size=10))
def test_quorum_index_is_the_best_index_a_majority_of_voters_holds(
    voters: frozenset[int], match: dict[int, int]
) -> None:
    assert quorum_index(voters, match) == brute_quorum_index(voters, match)


@PROPERTY
@given(voter_sets, st.dictionaries(st.integers(0, 9), st.integers(0, 20), max_size=10), st.integers(8, 9))
def test_quorum_index_ignores_what_non_voters_hold(
    voters: frozenset[int], match: dict[int, int], stranger: int
) -> None:
    assert quorum_index(voters, {**match, stranger: 10**6}) == quorum_index(voters, match)


@PROPERTY
@given(voter_sets, st.dictionaries(st.integers(0, 9), st.booleans(), max_size=10))
def test_vote_result_matches_every_way_the_undecided_could_answer(
    voters: frozenset[int], votes: dict[int, bool]
) -> None:
    assert vote_result(voters, votes) == brute_vote_result(voters, votes)


def test_quorum_examples_read_like_the_paper() -> None:
    assert quorum_index({1, 2, 3}, {1: 5, 2: 3}) == 3
    assert quorum_index({1, 2, 3, 4}, {1: 5, 2: 3, 3: 1}) == 1
    assert vote_result({1, 2, 3}, {1: True, 2: True}) is VoteResult.WON
    assert vote_result({1, 2, 3}, {1: True, 2: False}) is VoteResult.PENDING
    assert vote_result({1, 2, 3}, {1: True, 2: False, 3: False}) is VoteResult.LOST
