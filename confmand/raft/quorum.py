"""Quorum arithmetic: what a majority of voters has, and who won a vote.

Pure functions over plain mappings, so that the commit rule and the vote
count can be read, and tested, on their own.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping

from confmand.raft.types import NodeId


def majority(voter_count: int) -> int:
    return voter_count // 2 + 1


def quorum_index(voters: Collection[NodeId], match: Mapping[NodeId, int]) -> int:
    """The largest index that a majority of `voters` holds (missing voters hold 0)."""
    acked = sorted((match.get(v, 0) for v in voters), reverse=True)
    return acked[majority(len(acked)) - 1]


class VoteResult(enum.Enum):
    PENDING = "pending"
    WON = "won"
    LOST = "lost"


def vote_result(voters: Collection[NodeId], votes: Mapping[NodeId, bool]) -> VoteResult:
    granted = sum(1 for v in voters if votes.get(v) is True)
    rejected = sum(1 for v in voters if votes.get(v) is False)
    needed = majority(len(voters))
    if granted >= needed:
        return VoteResult.WON
    if len(voters) - rejected < needed:
        return VoteResult.LOST
    return VoteResult.PENDING
