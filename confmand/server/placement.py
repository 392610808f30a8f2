"""Placement: the membership change that brings a shard one step closer to the map's replicas.

The shard map names the nodes that should hold each data shard (`set_replicas`, `confctl
replicas`). The shard's leader compares that with the shard's Raft membership and makes one
single-server change at a time (docs/raft.md), in this order, so the shard keeps as many voters
as it had throughout:
1. a node the map names that holds no replica joins as a learner;
2. a learner the map names that has the leader's whole committed log is promoted;
3. a learner the map does not name is removed;
4. once every node the map names is a voter, a voter it does not name is removed; if that is
   the leader itself, it first hands leadership to a voter the map names.
A pure function of what the leader knows, called again after every change commits; the
leader of another term just goes on from the membership it finds.

Once the voters are the map's, for a minute after each newer map (`confctl rebalance` reorders replicas to
even out the leaders, and re-places a shard whose leader is not its preferred one),
`preferred_transfer` hands leadership to the map's preferred leader (its first replica) if
another node leads. The node spaces these transfers out per shard (`Node._place_replicas`), so a
preferred leader that cannot keep leadership (its clock is off, it hands off again) is not handed
it over and over. Leadership does not go back on its own after a failover until the map changes:
a change of leader costs clients a retry.
"""

from __future__ import annotations

from dataclasses import dataclass

from confmand.raft import Membership, MembershipChange, MembershipChangeKind


@dataclass(frozen=True, slots=True)
class Transfer:
    """Hand leadership to `node` first: the leader itself is to leave the shard."""

    node: int


def next_step(
    membership: Membership, wanted: tuple[int, ...], leader: int, matched: dict[int, int], commit: int
) -> MembershipChange | Transfer | None:
    """The next change towards voters == `wanted`, or None if there is none (or none yet)."""
    kind = MembershipChangeKind
    voters, learners = membership.voters, membership.learners
    for node in wanted:
        if node not in voters and node not in learners:
            return MembershipChange(kind.ADD_LEARNER, node)
    for node in wanted:
        if node in learners and matched.get(node, 0) >= commit:
            return MembershipChange(kind.PROMOTE, node)
    for node in sorted(learners):
        if node not in wanted:
            return MembershipChange(kind.REMOVE, node)
    if not all(node in voters for node in wanted):
        return None  # a learner still catching up
    for node in sorted(voters):
        if node not in wanted:
            if node == leader:
                return Transfer(wanted[0])
            return MembershipChange(kind.REMOVE, node)
    return None


def preferred_transfer(
    membership: Membership, wanted: tuple[int, ...], leader: int, matched: dict[int, int], commit: int
) -> Transfer | None:
    """Leadership to the map's preferred leader, if it votes, has the whole committed log, and
    does not lead already."""
    preferred = wanted[0]
    if preferred == leader or preferred not in membership.voters:
        return None
    return Transfer(preferred) if matched.get(preferred, 0) >= commit else None
