"""The seeded whole-cluster simulator: one seed -> one reproducible history, checked all along.

`run_seed(seed)` derives a `Scenario` (scenario.py), builds the cluster
(replicas 1..n bootstrapped with one membership, joiners later with empty
disks) and runs it step by step. One step is one tick of simulated time:

1. faults and the operator: restarts that are due, partitions that start or
   heal, crashes, membership changes and leadership transfers;
2. the network hands over the messages arriving now (network.py);
3. every replica's clock ticks (at its own rate: clock skew);
4. clients propose batches and ask for linearizable reads;
5. every replica's driver takes its Readies and persists those whose turn
   has come (driver.py), which is when their messages leave;
6. now and then a replica snapshots its state machine and compacts its log.

The checker (invariants.py) is told every fact as it happens and raises
`Violation` at the first broken invariant. After the scenario's steps, the
final phase heals everything (no partitions, loss, duplication or crashes;
every replica up, disks fast again): a leader must then commit a fresh proposal on a majority
of its voters, and answer a fresh ReadIndex read, within `liveness_ticks` (liveness.py), or
that is a violation too.

Determinism: every random draw comes from a `random.Random` seeded from the
scenario's seed (one per concern), replicas are visited in id order, and
nothing depends on set or dict order of unsorted ids, on `id()` or `hash()`.
"""

from __future__ import annotations

import random
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from confmand.raft import (
    FaultSwitches,
    Membership,
    MembershipChange,
    MembershipChangeKind,
    MemoryStorage,
    NodeId,
    NotLeader,
    ProposalRejected,
    Role,
)
from tests.sim.driver import DiskFaults, Shared, SimNode
from tests.sim.invariants import Checker, Violation
from tests.sim.liveness import LivenessProbe
from tests.sim.network import Network
from tests.sim.scenario import MAX_UNCOMMITTED_ENTRIES, PartitionPlan, Scenario, fault_names

__all__ = [
    "Checker",
    "RunResult",
    "Scenario",
    "SimNode",
    "Simulation",
    "Violation",
    "replay_command",
    "run_seed",
]

_LEADER = Role.LEADER
_SHAPE_CHECK_STEPS = 256
MIN_VOTERS = 3


def replay_command(scenario: Scenario) -> str:
    """The one command that replays `scenario` exactly."""
    parts = [".venv/bin/python -m tests.sim.run --seed", str(scenario.seed)]
    if scenario.steps_override is not None:
        parts += ["--steps", str(scenario.steps_override)]
    names = fault_names(scenario.faults)
    if names:
        parts += ["--faults", ",".join(names)]
    return " ".join(parts)


@dataclass(slots=True)
class RunResult:
    scenario: Scenario
    violation: Violation | None
    steps_run: int
    stats: dict[str, int]
    trace: list[str] | None

    @property
    def ok(self) -> bool:
        return self.violation is None

    def fingerprint(self) -> tuple[object, ...]:
        """What two runs of one seed must agree on, bit for bit."""
        return (self.steps_run, str(self.violation), tuple(self.stats.items()))


def run_seed(
    seed: int, steps: int | None = None, faults: FaultSwitches | None = None, trace: bool = False
) -> RunResult:
    return Simulation(Scenario.from_seed(seed, steps, faults), trace).run()


class Simulation:
    def __init__(self, scenario: Scenario, trace: bool = False) -> None:
        self.scenario = scenario
        seed = scenario.seed
        self.checker = Checker()
        self.stats: Counter[str] = Counter()
        self.trace: list[str] | None = [] if trace else None
        self.network = Network(scenario.net, random.Random(f"{seed}/network"))
        self.fault_rng = random.Random(f"{seed}/faults")
        self.snapshot_rng = random.Random(f"{seed}/snapshots")
        self.operator_rng = random.Random(f"{seed}/operator")
        self.client_rng = random.Random(f"{seed}/clients")
        self.disk_faults = DiskFaults(
            random.Random(f"{seed}/disk"),
            scenario.persist_delay_rate,
            scenario.persist_delay_max_steps,
            scenario.crash_after_vote_rate,
            scenario.crash_before_send_rate,
        )
        self.shared = Shared(self.checker, self.network, self.disk_faults, self.stats, self.trace)
        self.nodes: dict[NodeId, SimNode] = {}
        self.order: list[SimNode] = []  # by id: ids only grow
        self.next_id = scenario.node_count + 1
        self.now = 0
        self._plans = list(scenario.partitions)
        self._partition_end: int | None = None
        self._counter = 0
        first = scenario.configs[: scenario.node_count]
        membership_ids = frozenset(c.node_id for c in first)
        bootstrap = Membership(membership_ids)
        for config in first:
            self._add_node(config.node_id, MemoryStorage.bootstrap(bootstrap))

    # ------------------------------------------------------------------ running

    def run(self) -> RunResult:
        scenario = self.scenario
        violation: Violation | None = None
        if self.trace is not None:
            self.trace.append(scenario.summary())
        try:
            for now in range(1, scenario.steps + 1):
                self._step(now, final=False)
            self._final_phase()
        except Violation as exc:
            violation = exc
        except AssertionError as exc:  # the core's own assertions (or the driver's) count as violations
            where = traceback.extract_tb(exc.__traceback__)[-1]
            place = f"{Path(where.filename).name}:{where.lineno}"
            violation = Violation("assertion", self.now, f"{exc or 'assert'} ({place}: {where.line})")
        if violation is not None:
            violation.replay = replay_command(scenario)
            if self.trace is not None:
                self.trace.append(f"{self.now} VIOLATION {violation.invariant}: {violation.details}")
        self._collect_stats()
        return RunResult(scenario, violation, self.now, dict(sorted(self.stats.items())), self.trace)

    def _step(self, now: int, final: bool) -> None:
        self.now = now
        self.checker.step = now
        if not final:
            self._faults(now)
            self._operator()
        nodes = self.nodes
        for msg in self.network.arrivals(now):
            sn = nodes.get(msg.dst)
            if sn is None or sn.raft is None:
                self.stats["msg_to_down_node"] += 1
                continue
            sn.raft.step(msg)
            sn.observe()
        up = [sn for sn in self.order if sn.raft is not None]
        for sn in up:
            sn.tick()
        if not final:
            self._clients()
        scenario = self.scenario
        for sn in up:
            if sn.raft is not None and sn.pump(now):
                self._schedule_restart(sn, now)
        rng = self.snapshot_rng
        for sn in up:
            if sn.raft is not None and rng.random() < scenario.snapshot_rate:
                sn.snapshot()
        if now % _SHAPE_CHECK_STEPS == 0:
            for sn in up:
                if sn.raft is not None:
                    self.checker.log_shape(sn.id, sn.raft.log)

    def _final_phase(self) -> None:
        """Heal everything; a leader must commit a fresh proposal on a majority in time."""
        scenario = self.scenario
        self.network.heal(self.now)
        self.network.calm()
        self._partition_end = None
        self.disk_faults.calm()
        for sn in self.order:
            if not sn.up:
                self._start(sn)
        if self.trace is not None:
            self.trace.append(f"{self.now} final phase: all healed, all up")
        first = scenario.steps + 1
        probe = LivenessProbe(self.checker, self.nodes)
        for now in range(first, first + scenario.liveness_ticks):
            self._step(now, final=True)
            leaders = self._leaders()
            probe.tick(now, leaders[-1] if leaders else None)
            if probe.done:
                self.stats["liveness_ticks"] = now - first + 1
                if self.trace is not None:
                    self.trace.append(f"{now} a fresh write committed and a fresh read answered")
                return
        self.checker.fail(
            "liveness",
            f"{scenario.liveness_ticks} ticks after healing: {probe.describe()}; {self._describe_nodes()}",
        )

    # ------------------------------------------------------------------ nodes

    def _add_node(self, node_id: NodeId, storage: MemoryStorage) -> SimNode:
        scenario = self.scenario
        sn = SimNode(scenario.configs[node_id - 1], storage, scenario.tick_rates[node_id - 1], self.shared)
        self.nodes[node_id] = sn
        self.order.append(sn)
        self._start(sn)
        return sn

    def _start(self, sn: SimNode) -> None:
        sn.start(random.Random(f"{self.scenario.seed}/node/{sn.id}/{sn.incarnation}"))
        if sn.incarnation > 1:
            self.stats["restart"] += 1
            if self.trace is not None:
                self.trace.append(f"{self.now} node {sn.id} restarts (term {sn.node.term})")

    def _schedule_restart(self, sn: SimNode, now: int) -> None:
        scenario = self.scenario
        sn.restart_step = now + self.fault_rng.randint(
            scenario.downtime_min_steps, scenario.downtime_max_steps
        )

    def _leaders(self) -> list[SimNode]:
        """Up replicas that believe they lead, by term (the newest last)."""
        found = [sn for sn in self.order if sn.raft is not None and sn.raft.role is _LEADER]
        found.sort(key=lambda sn: (sn.node.term, sn.id))
        return found

    def _describe_nodes(self) -> str:
        parts = []
        for sn in self.order:
            raft = sn.raft
            if raft is None:
                parts.append(f"{sn.id}:down")
                continue
            members = raft.membership
            voters = sorted(members.voters) if members else None
            parts.append(
                f"{sn.id}:{raft.role.value} t{raft.term} commit {raft.log.commit} last {raft.log.last_index}"
                f" voters {voters}"
            )
        return "; ".join(parts)

    # ------------------------------------------------------------------ faults

    def _faults(self, now: int) -> None:
        for sn in self.order:
            if sn.raft is None and sn.restart_step <= now:
                self._start(sn)
        if self._partition_end is not None and now >= self._partition_end:
            self.network.heal(now)
            self._partition_end = None
            if self.trace is not None:
                self.trace.append(f"{now} partition healed")
        if self._plans and self._plans[0].start_step <= now:
            plan = self._plans.pop(0)
            self._start_partition(plan, now)
        scenario = self.scenario
        rng = self.fault_rng
        if scenario.crash_rate and rng.random() < scenario.crash_rate:
            up = [sn for sn in self.order if sn.raft is not None]
            if len(self.order) - len(up) < scenario.max_down and len(up) > 1:
                leaders = self._leaders()
                if leaders and rng.random() < scenario.crash_leader_share:
                    victim = leaders[-1]
                else:
                    victim = up[rng.randrange(len(up))]
                if self.trace is not None:
                    self.trace.append(f"{now} node {victim.id} crashes ({len(victim.queue)} writes lost)")
                victim.crash()
                self._schedule_restart(victim, now)

    def _start_partition(self, plan: PartitionPlan, now: int) -> None:
        rng = random.Random(plan.seed)
        ids = [sn.id for sn in self.order]
        rng.shuffle(ids)
        kind = plan.kind
        if kind == "isolate_leader":
            leaders = self._leaders()
            alone = leaders[-1].id if leaders else ids[0]
            side_a, side_b = [alone], [i for i in ids if i != alone]
        elif kind == "bridge" and len(ids) >= 3:
            rest = ids[1:]
            cut = rng.randrange(1, len(rest))
            side_a, side_b = rest[:cut], rest[cut:]
        else:
            cut = rng.randrange(1, len(ids))
            side_a, side_b = ids[:cut], ids[cut:]
        links = [(a, b) for a in side_a for b in side_b]
        if kind != "one_way":
            links += [(b, a) for a, b in links]
        self.network.block(links)
        self._partition_end = now + plan.duration_steps
        self.stats[f"partition_{kind}"] += 1
        if self.trace is not None:
            arrow = "->" if kind == "one_way" else "<->"
            self.trace.append(
                f"{now} partition {kind}: {sorted(side_a)} {arrow} {sorted(side_b)}"
                f" blocked for {plan.duration_steps} steps"
            )

    # ------------------------------------------------------------------ operator and clients

    def _operator(self) -> None:
        scenario = self.scenario
        rng = self.operator_rng
        if scenario.membership_rate and rng.random() < scenario.membership_rate:
            self._change_membership(rng)
        if scenario.transfer_rate and rng.random() < scenario.transfer_rate:
            leaders = self._leaders()
            if leaders:
                leader = leaders[-1]
                membership = leader.node.membership
                assert membership is not None
                others = sorted(membership.voters - {leader.id})
                if others:
                    target = others[rng.randrange(len(others))]
                    self._try(leader, "transfer", lambda: leader.node.transfer_leadership(target))

    def _change_membership(self, rng: random.Random) -> None:
        leaders = self._leaders()
        if not leaders:
            return
        leader = leaders[-1]
        raft = leader.node
        membership = raft.membership
        assert membership is not None
        voters, learners = sorted(membership.voters), sorted(membership.learners)
        roll = rng.random()
        kind = MembershipChangeKind
        if learners and roll < 0.6:
            change = MembershipChange(kind.PROMOTE, learners[rng.randrange(len(learners))])
        elif len(voters) > MIN_VOTERS and roll < 0.8:
            target = leader.id if rng.random() < 0.4 else voters[rng.randrange(len(voters))]
            change = MembershipChange(kind.REMOVE, target)
        elif learners:
            change = MembershipChange(kind.REMOVE, learners[rng.randrange(len(learners))])
        elif self.next_id <= self.scenario.max_nodes:
            change = MembershipChange(kind.ADD_LEARNER, self.next_id)
        else:
            return
        what = f"membership_{change.kind.value}" + ("_self" if change.node == leader.id else "")
        if not self._try(leader, what, lambda: raft.propose_membership(change)):
            return
        if self.trace is not None:
            self.trace.append(f"{self.now} node {leader.id} proposes {change.kind.value} {change.node}")
        if change.kind is kind.ADD_LEARNER:
            self._add_node(self.next_id, MemoryStorage())
            self.next_id += 1

    def _try(self, sn: SimNode, what: str, call: Callable[[], object]) -> bool:
        try:
            call()
        except NotLeader:
            self.stats[f"{what}_not_leader"] += 1
            return False
        except ProposalRejected:
            self.stats[f"{what}_rejected"] += 1
            return False
        finally:
            sn.observe()
        self.stats[what] += 1
        return True

    def _clients(self) -> None:
        scenario = self.scenario
        rng = self.client_rng
        if rng.random() < scenario.propose_rate:
            target = self._client_target(rng)
            if (
                target is not None
                and target.node.last_index - target.node.commit_index > MAX_UNCOMMITTED_ENTRIES
            ):
                self.stats["propose_backpressure"] += 1
            elif target is not None:
                count = 1 + rng.randrange(scenario.batch_max)
                batch = []
                for _ in range(count):
                    self._counter += 1
                    batch.append(b"k%d=%d" % (rng.randrange(scenario.key_count), self._counter))
                raft = target.node
                self._try(target, "propose", lambda: raft.propose_batch(batch))
        if rng.random() < scenario.read_rate:
            target = self._client_target(rng)
            if target is not None:
                self._counter += 1
                context = b"r%d" % self._counter
                raft = target.node
                self.checker.read_started(context)  # what is committed as the read arrives
                if not self._try(target, "read", lambda: raft.read_index(context)):
                    self.checker.read_refused(context)

    def _client_target(self, rng: random.Random) -> SimNode | None:
        """Mostly a replica that believes it leads (any of them: an old one may not know yet)."""
        leaders = self._leaders()
        if leaders and rng.random() < 0.9:
            return leaders[rng.randrange(len(leaders))]
        up = [sn for sn in self.order if sn.raft is not None]
        return up[rng.randrange(len(up))] if up else None

    def _collect_stats(self) -> None:
        net = self.network
        stats = self.stats
        stats["msg_sent"] = net.sent
        stats["msg_dropped"] = net.dropped
        stats["msg_duplicated"] = net.duplicated
        stats["msg_delivered"] = net.delivered
        stats["msg_partitioned"] = net.partitioned
        stats["msg_held"] = net.held
        stats["commit_max"] = self.checker.commit_max
        stats["terms_with_leader"] = len(self.checker.leaders)
        stats["nodes"] = len(self.order)
        for sn in self.order:
            if sn.raft is not None:
                for reason, count in sn.raft.dropped.items():
                    stats[f"core_dropped_{reason}"] += count
