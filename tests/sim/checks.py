"""What must hold in a whole-daemon run, checked after every turn of every node and at the end.

After every turn (`ClusterChecker.after_turn`), on each of the node's real replicas,
shard by shard (`ShardChecker`):
- election safety: one leader per term, over the whole run;
- one vote per term: a node never votes for two candidates in one term, across
  its restarts (the vote it persisted before answering is the one it keeps);
  a vote still waiting in a batch the disk refused counts only once written;
- leader completeness: a new leader's log holds every entry committed in an
  earlier term (a leader elected on votes of its own term, while a later
  term's leader commits elsewhere, need not hold what that one commits);
- the leader's commit rule (Raft §5.4.2): a leader moves its commit index only
  to an entry of its own term (earlier terms' entries commit beneath one);
- committed prefix: an index committed anywhere holds one term everywhere it
  is committed (a node's commit never passes an entry of another term);
- durable commit: when a leader commits a new index, a majority of its voters
  hold that entry on disk, *synced*, at that moment (`SimHost.durable_term`):
  the promise behind every acknowledged write. The voters are those of the
  membership the leader had after its previous turn or has after this one: a
  leader may commit under one and append a change to it in the same turn
  (simulator seed 1000757), and single-server changes keep the two majorities
  overlapping;
- applied never passes committed, and an applied entry is the committed one;
- no committed entry lost: no node's disk overwrites a committed entry with
  another term's.

At the end, on the clients' histories (tests/fault's checkers):
- every key linearizable (puts, linearizable gets, cas and txn-as-cas);
- read-your-writes for version reads (no read below the client's own floor);
- no retried write applied twice, none lost: each key's change count lies
  between its acknowledged writes and its acknowledged + unknown ones;
and on the replicas: once healed and caught up, every replica's state
machine is byte-identical (the same export at the same applied index).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NoReturn

from confmand.kv.queries import get_key
from confmand.kv.snapshot import export_state
from confmand.raft import Role
from confmand.raft.log import RaftLog
from confmand.server.node import Node
from confmand.server.replica import Replica
from tests.fault.checks import check_change_counts, check_read_your_writes
from tests.fault.history import History
from tests.fault.linearizability import check, explain
from tests.sim.host import SimHost

LINEARIZABLE_KINDS = ("put", "get", "cas")


class Violation(Exception):
    """A broken promise; `replay` is the command that replays the run (set by the engine)."""

    def __init__(self, invariant: str, at_s: float, details: str) -> None:
        super().__init__(invariant, at_s, details)
        self.invariant = invariant
        self.at_s = at_s
        self.details = details
        self.replay = ""

    def __str__(self) -> str:
        text = f"'{self.invariant}' violated at t={self.at_s:.4f}s: {self.details}"
        if self.replay:
            text += f"\nreplay: {self.replay}"
        return text


class ClusterChecker:
    """Every promise, checked for each shard a node hosts, after each of its turns."""

    def __init__(self, hosts: Mapping[int, SimHost]) -> None:
        self.hosts = hosts
        self.shards: dict[int, ShardChecker] = {}
        self.now = 0.0

    def shard(self, shard_id: int) -> ShardChecker:
        checker = self.shards.get(shard_id)
        if checker is None:
            checker = self.shards[shard_id] = ShardChecker(shard_id, self)
        return checker

    @property
    def commit_max(self) -> int:
        return max((c.commit_max for c in self.shards.values()), default=0)

    def fail(self, invariant: str, details: str) -> NoReturn:
        raise Violation(invariant, self.now, details)

    def restarted(self, host: SimHost) -> None:
        for checker in self.shards.values():
            checker.restarted(host)

    def after_turn(self, host: SimHost, now: float) -> None:
        self.now = now
        for shard_id, index, old, new in host.overwritten:
            self.shard(shard_id).overwritten(host, index, old, new)
        host.overwritten.clear()
        node = host.node
        if node is None:
            self.restarted(host)
            return
        for shard_id, replica in node.replicas.items():
            self.shard(shard_id).after_turn(host, node, replica)


class ShardChecker:
    """The promises of one shard (one Raft group) over the whole run."""

    def __init__(self, shard_id: int, cluster: ClusterChecker) -> None:
        self.shard_id = shard_id
        self.cluster = cluster
        self.hosts = cluster.hosts
        self.leaders: dict[int, int] = {}  # term -> node
        self.committed: dict[int, int] = {}  # index -> term
        self.commit_max = 0
        # term -> the highest index first seen committed by a node in that term: the commit
        # decision's term (the committing leader's own turn is always the first to show it)
        self.max_committed_in: dict[int, int] = {}
        self._seen_commit: dict[int, int] = {}  # node -> the commit index already checked
        self.votes: dict[tuple[int, int], int] = {}  # (node, term) -> the candidate it voted for
        self._leading: dict[int, tuple[int, int]] = {}  # node -> (term it was last seen leading, commit)
        self._voters_before: dict[int, frozenset[int]] = {}  # node -> its voters after its last turn

    def fail(self, invariant: str, details: str) -> NoReturn:
        prefix = f"shard {self.shard_id}: "
        self.cluster.fail(invariant, prefix + details)

    def restarted(self, host: SimHost) -> None:
        self._seen_commit.pop(host.id, None)

    def overwritten(self, host: SimHost, index: int, old: int, new: int) -> None:
        if self.committed.get(index) == old:
            self.fail(
                "no committed entry lost",
                f"node {host.id} overwrote committed entry {index} of term {old} with term {new}",
            )

    def after_turn(self, host: SimHost, node: Node, replica: Replica) -> None:
        raft = replica.raft
        term = raft.term
        vote = raft.vote
        if vote is not None and node.storage_error is None:
            earlier = self.votes.setdefault((host.id, term), vote)
            if earlier != vote:
                self.fail(
                    "one vote per term", f"node {host.id} voted for {earlier}, then {vote}, in term {term}"
                )
        log = raft.log
        if raft.role is Role.LEADER:
            holder = self.leaders.setdefault(term, host.id)
            if holder != host.id:
                self.fail("election safety", f"nodes {holder} and {host.id} both lead term {term}")
            last = self._leading.get(host.id)
            if last is None or last[0] != term:
                self._check_complete(host, term, log)
            elif log.commit > last[1] and log.term_at(log.commit) != term:
                self.fail(
                    "leader commit rule",
                    f"leader {host.id} of term {term} moved its commit to {log.commit}, an entry of term "
                    f"{log.term_at(log.commit)}",
                )
            self._leading[host.id] = (term, log.commit)
        commit = log.commit
        seen = self._seen_commit.get(host.id, log.snapshot_index)
        for index in range(max(seen, log.snapshot_index) + 1, commit + 1):
            self._committed(host, index, log.term_at(index), raft.role is Role.LEADER, term)
        self._seen_commit[host.id] = max(seen, commit)
        membership = raft.membership
        self._voters_before[host.id] = frozenset() if membership is None else membership.voters
        applied = replica.applied
        if applied.index > commit:
            self.fail("applied <= committed", f"node {host.id} applied {applied} past its commit {commit}")
        want = self.committed.get(applied.index)
        if applied.index and want is not None and want != applied.term:
            self.fail(
                "state-machine safety",
                f"node {host.id} applied {applied}, but index {applied.index} committed in term {want}",
            )

    def _check_complete(self, host: SimHost, term: int, log: RaftLog) -> None:
        """A new leader holds the newest entry committed before its term (by log matching, all of them)."""
        index = max((i for t, i in self.max_committed_in.items() if t < term), default=0)
        if index <= log.snapshot_index:
            return
        want = self.committed[index]
        have = log.term_at(index)
        if have != want:
            self.fail(
                "leader completeness",
                f"node {host.id} leads term {term} without committed entry {index} of term {want} "
                f"(it holds term {have} there)",
            )

    def _committed(self, host: SimHost, index: int, term: int | None, leading: bool, now_term: int) -> None:
        if term is None:
            return
        known = self.committed.get(index)
        if known is not None and known != term:
            self.fail(
                "committed prefix",
                f"node {host.id} commits {index} in term {term}, committed in term {known}",
            )
        if known is None:
            self.max_committed_in[now_term] = max(self.max_committed_in.get(now_term, 0), index)
        self.committed[index] = term
        if index <= self.commit_max:
            return
        self.commit_max = index
        if not leading:
            return
        assert host.node is not None
        membership = host.node.replicas[self.shard_id].raft.membership
        now_voters = frozenset(membership.voters) if membership else frozenset()
        before = self._voters_before.get(host.id, now_voters)
        now = self.cluster.now
        problems = []
        for voters in {now_voters, before}:
            holding = sorted(
                v for v in voters if self.hosts[v].durable_term(self.shard_id, index, now) == term
            )
            if 2 * len(holding) > len(voters):
                return  # a majority of the membership it committed under holds it
            problems.append(f"only {holding} of voters {sorted(voters)}")
        shown = " and ".join(problems)
        self.fail(
            "durable commit",
            f"leader {host.id} committed {index} (term {term}) while {shown} had it synced to disk",
        )


def check_history(history: History, changes: Mapping[str, int]) -> list[str]:
    """Every problem the clients' history shows (empty: none)."""
    problems = []
    result = check(history.only(LINEARIZABLE_KINDS), deadline_s=10.0)
    if not result.ok:
        problems.append(explain(result))
    problems += check_read_your_writes(history, write_kinds=("put", "cas"), read_kinds=("get", "vget"))
    writes = [op for op in history if op.kind == "put" or (op.kind == "cas" and op.output is not False)]
    problems += check_change_counts(changes, writes)
    return problems


def final_changes(
    leaders: Mapping[int, SimHost], keys: list[str], shard_of: Callable[[str], int]
) -> dict[str, int]:
    """How many changes each key has, as the leader of its shard holds it."""
    counts = {}
    for key in keys:
        shard = shard_of(key)
        node = leaders[shard].node
        assert node is not None
        record = get_key(node.replicas[shard].storage, key)
        counts[key] = 0 if record is None else record.changes
    return counts


def state_digest(host: SimHost, shard: int) -> tuple[str, bytes]:
    assert host.node is not None
    replica = host.node.replicas[shard]
    return str(replica.applied), export_state(replica.storage)
