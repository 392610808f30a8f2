"""Which of this node's proposals committed, and which never will.

A proposal is tracked as a range of indexes appended in one term. It is
resolved when this node's commit index passes it, by looking at the term of
the committed entry at each index: the same term means it is the proposal
(Log Matching: one leader per term, and a leader never overwrites its own
entries); another term means the proposal lost its slot for good. A
proposal overwritten in this node's log is *not* reported early: another
replica may still hold it and commit it as a later leader.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from confmand.raft.types import ProposalOutcome, ProposalStatus


class ProposalTracker:
    __slots__ = ("_pending", "outcomes")

    def __init__(self) -> None:
        self._pending: deque[tuple[int, int, int]] = deque()  # (term, first, last), in index order
        self.outcomes: list[ProposalOutcome] = []

    def add(self, term: int, first: int, last: int) -> None:
        self._pending.append((term, first, last))

    def resolvable(self, commit: int) -> bool:
        return bool(self._pending) and self._pending[0][1] <= commit

    def take_outcomes(self) -> list[ProposalOutcome]:
        out, self.outcomes = self.outcomes, []
        return out

    def resolve(self, commit: int, term_at: Callable[[int], int | None]) -> None:
        """Report every proposal at or below `commit`, by the committed term at its index."""
        for term, first, last in self._pop_upto(commit):
            if term_at(first) == term and term_at(last) == term:
                self.outcomes.append(ProposalOutcome(term, first, last, ProposalStatus.COMMITTED))
            else:
                self._report_runs(term, first, last, term_at)

    def forget_upto(self, index: int) -> None:
        """A snapshot replaced the log through `index`: those outcomes cannot be known here."""
        for term, first, last in self._pop_upto(index):
            self.outcomes.append(ProposalOutcome(term, first, last, ProposalStatus.UNKNOWN))

    def _pop_upto(self, index: int) -> list[tuple[int, int, int]]:
        pending = self._pending
        out = []
        while pending and pending[0][1] <= index:
            term, first, last = pending.popleft()
            if last > index:
                pending.appendleft((term, index + 1, last))
                last = index
            out.append((term, first, last))
        return out

    def _report_runs(self, term: int, first: int, last: int, term_at: Callable[[int], int | None]) -> None:
        """A range that is partly ours: one outcome per run of equal status (terms only go up)."""
        run_start, run_status = first, None
        for index in range(first, last + 1):
            found = term_at(index)
            if found is None:
                status = ProposalStatus.UNKNOWN
            elif found == term:
                status = ProposalStatus.COMMITTED
            else:
                status = ProposalStatus.DROPPED
            if run_status is not None and status is not run_status:
                self.outcomes.append(ProposalOutcome(term, run_start, index - 1, run_status))
                run_start = index
            run_status = status
        assert run_status is not None
        self.outcomes.append(ProposalOutcome(term, run_start, last, run_status))
