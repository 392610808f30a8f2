"""The final phase's demand: a healed cluster serves a fresh write and a fresh read in bounded time.

Once every fault is healed (engine.py), each tick the newest leader is asked,
until it works, for
- a write: a fresh proposal, done when it is committed (with its own term:
  the committed prefix says so) and a majority of the proposer's voters know
  it is committed;
- a read: a fresh ReadIndex request, done when its ReadState arrives (the
  checker still judges its index as for any read).
A probe whose leader stepped down, or whose slot went to another entry, is
simply asked again of the next leader. Both must be done within the
scenario's `liveness_ticks`, or `Violation("liveness")`.
"""

from __future__ import annotations

from dataclasses import dataclass

from confmand.raft import NodeId, ProposalRejected, Role
from tests.sim.driver import SimNode
from tests.sim.invariants import Checker

_LEADER = Role.LEADER


@dataclass(frozen=True, slots=True)
class _Write:
    proposer: NodeId
    term: int
    index: int
    voters: frozenset[NodeId]


@dataclass(frozen=True, slots=True)
class _Read:
    leader: NodeId
    term: int
    context: bytes


class LivenessProbe:
    def __init__(self, checker: Checker, nodes: dict[NodeId, SimNode]) -> None:
        self.checker = checker
        self.nodes = nodes
        self.write: _Write | None = None
        self.read: _Read | None = None
        self.write_done = self.read_done = False
        self.attempts = 0

    @property
    def done(self) -> bool:
        return self.write_done and self.read_done

    def tick(self, now: int, leader: SimNode | None) -> None:
        """After the step of tick `now`: check the probes in flight, ask `leader` for new ones."""
        if not self.write_done:
            self._check_write()
            if self.write is None and leader is not None:
                self._propose(now, leader)
        if not self.read_done:
            self._check_read()
            if self.read is None and leader is not None:
                self._ask_read(now, leader)

    def describe(self) -> str:
        write = "done" if self.write_done else self.write
        read = "done" if self.read_done else self.read
        return f"write {write}, read {read}, {self.attempts} attempts"

    def _check_write(self) -> None:
        write = self.write
        if write is None:
            return
        known = self.checker.committed.get(write.index)
        if known == write.term:
            holders = sum(1 for v in write.voters if self._knows_committed(v, write.index))
            self.write_done = holders > len(write.voters) // 2
        elif known is not None or not self._leads(write.proposer, write.term):
            self.write = None  # lost its slot, or its leader: ask again

    def _check_read(self) -> None:
        read = self.read
        if read is None:
            return
        if read.context not in self.checker.reads:
            self.read_done = True  # answered (and judged) by the checker
        elif not self._leads(read.leader, read.term):
            self.checker.read_refused(read.context)  # abandoned with its leader: ask again
            self.read = None

    def _propose(self, now: int, leader: SimNode) -> None:
        raft = leader.node
        self.attempts += 1
        try:
            term, index, _ = raft.propose_batch([b"probe=%d" % now])
        except ProposalRejected:
            return
        finally:
            leader.observe()
        membership = raft.membership
        assert membership is not None
        self.write = _Write(leader.id, term, index, membership.voters)

    def _ask_read(self, now: int, leader: SimNode) -> None:
        raft = leader.node
        context = b"probe-read-%d" % now
        self.attempts += 1
        self.checker.read_started(context)
        try:
            raft.read_index(context)
        except ProposalRejected:
            self.checker.read_refused(context)
            return
        finally:
            leader.observe()
        self.read = _Read(leader.id, raft.term, context)

    def _leads(self, node_id: NodeId, term: int) -> bool:
        raft = self.nodes[node_id].raft
        return raft is not None and raft.role is _LEADER and raft.term == term

    def _knows_committed(self, node_id: NodeId, index: int) -> bool:
        sn = self.nodes.get(node_id)
        return sn is not None and sn.raft is not None and sn.raft.log.commit >= index
