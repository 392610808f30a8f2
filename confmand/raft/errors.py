"""Errors the core raises to a caller that asked for something it cannot do now."""

from __future__ import annotations

from confmand.raft.types import NodeId


class ProposalRejected(Exception):
    """A proposal, read or membership change was not accepted; nothing was appended.

    `leader_hint` names the node believed to lead, when known, so that the
    caller can retry there.
    """

    def __init__(self, reason: str, leader_hint: NodeId | None = None) -> None:
        super().__init__(reason if leader_hint is None else f"{reason} (leader hint: {leader_hint})")
        self.reason = reason
        self.leader_hint = leader_hint


class NotLeader(ProposalRejected):
    def __init__(self, leader_hint: NodeId | None) -> None:
        super().__init__("not the leader", leader_hint)


class ReadyOrderError(RuntimeError):
    """A Ready advanced twice, skipped, or out of order: a driver bug."""
