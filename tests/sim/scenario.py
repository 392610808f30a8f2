"""One seed -> one whole scenario: cluster shape, fault rates, schedules, workload, per-node config.

Everything here is derived from `random.Random(seed)` in a fixed order, so
the same seed (and the same overrides) always yields the same `Scenario`.
Rates are per step (one step = one tick of simulated time); durations are
in steps; names carry their unit last.

A scenario draws a *profile* first. The profile only shifts the mix of
faults (every profile runs the same engine and the same checker):
- `balanced`: a bit of everything;
- `flaky_net`: heavy drop/duplicate/reorder/delay;
- `leader_churn`: leaders crash and get isolated often, appends carry one
  entry and disk writes lag, so that leaders change with partial
  replication (the Figure-8 pattern of the Raft paper);
- `stale_leader`: leaders get cut off while clients keep reading from them
  and a new leader commits on the other side;
- `crash_vote`: replicas crash right after granting a vote and come back
  fast, while vote requests arrive late or twice;
- `membership`: frequent learner adds, promotions, removals (the leader
  included) and leadership transfers, under traffic.

The last phase of every run heals everything (see engine.py): the cluster
must then elect a leader, commit a fresh proposal and answer a fresh read
within `liveness_ticks`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from confmand.raft import FaultSwitches, RaftConfig

PROFILES: tuple[tuple[str, int], ...] = (
    ("balanced", 30),
    ("flaky_net", 14),
    ("leader_churn", 20),
    ("stale_leader", 14),
    ("crash_vote", 10),
    ("membership", 12),
)

PARTITION_KINDS = ("split", "one_way", "isolate_leader", "bridge")

FAULT_NAMES = (
    "commit_old_term_by_counting",
    "vote_without_log_check",
    "vote_before_persist",
    "apply_uncommitted",
    "read_index_without_heartbeat",
)

MAX_JOINS = 4  # new replica ids a run may add, beyond the initial ones
# Clients hold back while a replica has this many entries it has not seen committed, as a
# server bounds its uncommitted log (etcd's MaxUncommittedEntriesSize): a leader that cannot
# commit must not grow a backlog no follower could ever catch up with.
MAX_UNCOMMITTED_ENTRIES = 48
COMMAND_BYTES_MAX = 12  # b"k11=123456": what the clients propose


def faults_from_names(names: list[str] | tuple[str, ...]) -> FaultSwitches:
    unknown = sorted(set(names) - set(FAULT_NAMES))
    if unknown:
        raise ValueError(f"unknown fault switches {unknown}; known: {', '.join(FAULT_NAMES)}")
    return FaultSwitches(**dict.fromkeys(names, True))


def fault_names(faults: FaultSwitches) -> list[str]:
    return [name for name in FAULT_NAMES if getattr(faults, name)]


@dataclass(frozen=True, slots=True)
class NetworkPlan:
    drop_rate: float
    duplicate_rate: float
    reorder_rate: float  # chance a message gets an extra delay of 1..reorder_max_ticks
    delay_min_ticks: int
    delay_max_ticks: int
    reorder_max_ticks: int
    hold_rate: float  # chance a message on a blocked link is held until the heal, not lost


@dataclass(frozen=True, slots=True)
class PartitionPlan:
    """A partition of `kind` from `start_step` for `duration_steps`.

    The sides are resolved when it starts, from the live cluster (who is up,
    who leads) with `random.Random(seed)`: deterministic, yet aimed.
    """

    start_step: int
    duration_steps: int
    kind: str
    seed: int


@dataclass(frozen=True, slots=True)
class Scenario:
    seed: int
    profile: str
    node_count: int
    steps: int
    net: NetworkPlan
    partitions: tuple[PartitionPlan, ...]
    # configs[i] is the config of node id i + 1; ids past node_count are joiners.
    configs: tuple[RaftConfig, ...]
    tick_rates: tuple[float, ...]  # clock skew: ticks per step, per node id - 1
    crash_rate: float
    crash_leader_share: float  # of crashes, the share aimed at a leader
    crash_after_vote_rate: float  # chance a replica crashes right after sending a granted vote
    crash_before_send_rate: float  # chance a leader crashes between persisting new entries and sending
    downtime_min_steps: int
    downtime_max_steps: int
    max_down: int
    persist_delay_rate: float  # chance a Ready waits in the write queue
    persist_delay_max_steps: int
    snapshot_rate: float  # per node per step
    membership_rate: float
    transfer_rate: float
    propose_rate: float
    batch_max: int
    read_rate: float
    key_count: int
    liveness_ticks: int
    faults: FaultSwitches = field(default_factory=FaultSwitches)
    steps_override: int | None = None  # set when `steps` was given, not drawn (the replay repeats it)

    @staticmethod
    def from_seed(seed: int, steps: int | None = None, faults: FaultSwitches | None = None) -> Scenario:
        return _derive(seed, steps, faults or FaultSwitches())

    @property
    def max_nodes(self) -> int:
        return len(self.configs)

    def summary(self) -> str:
        """The one line a replay prints first."""
        cfg = self.configs[: self.node_count]
        base = cfg[0]
        net = self.net
        faults = ",".join(fault_names(self.faults)) or "none"
        return (
            f"seed={self.seed} profile={self.profile} nodes={self.node_count} steps={self.steps}"
            f" election_ticks={[c.election_ticks for c in cfg]} heartbeat_ticks={base.heartbeat_ticks}"
            f" pre_vote={base.pre_vote} check_quorum={base.check_quorum}"
            f" append={base.max_append_entries}e/{base.max_append_bytes}B"
            f" inflight={base.max_inflight_msgs}m/{base.max_inflight_bytes}B"
            f" chunk={base.snapshot_chunk_bytes}B"
            f" net(drop={net.drop_rate:.3f} dup={net.duplicate_rate:.3f} reorder={net.reorder_rate:.3f}"
            f" delay={net.delay_min_ticks}..{net.delay_max_ticks} hold={net.hold_rate:.1f})"
            f" partitions={len(self.partitions)}"
            f"[{','.join(sorted({p.kind for p in self.partitions}))}]"
            f" crash={self.crash_rate:.4f}(leader {self.crash_leader_share:.2f},"
            f" after_vote {self.crash_after_vote_rate:.2f}, before_send {self.crash_before_send_rate:.3f},"
            f" down {self.downtime_min_steps}"
            f"..{self.downtime_max_steps}, max {self.max_down})"
            f" persist_delay={self.persist_delay_rate:.2f}..{self.persist_delay_max_steps}"
            f" snapshot={self.snapshot_rate:.3f} membership={self.membership_rate:.4f}"
            f" transfer={self.transfer_rate:.4f} propose={self.propose_rate:.2f}x{self.batch_max}"
            f" read={self.read_rate:.2f} liveness_ticks={self.liveness_ticks} faults={faults}"
        )


def _pick_profile(rng: random.Random) -> str:
    names = [name for name, _ in PROFILES]
    weights = [weight for _, weight in PROFILES]
    return rng.choices(names, weights)[0]


def _derive(seed: int, steps: int | None, faults: FaultSwitches) -> Scenario:
    rng = random.Random(seed)
    profile = _pick_profile(rng)
    node_count = rng.choice((3, 5))
    if profile == "leader_churn" and rng.random() < 0.6:
        node_count = 5
    drawn_steps = rng.randrange(1500, 3000)
    net = _network(rng, profile)
    configs = _configs(rng, profile, node_count, faults, net)
    tick_rates = tuple(
        1.0 if rng.random() < 0.5 else rng.uniform(0.8, 1.2) for _ in range(node_count + MAX_JOINS)
    )
    total_steps = steps if steps is not None else drawn_steps
    # Its own generator: a --steps override changes the schedule's length, not the other draws.
    partitions = _partitions(random.Random(rng.getrandbits(64)), profile, total_steps)

    rates = _rates(rng, profile)
    node_total = node_count + MAX_JOINS
    key_count = rng.randrange(2, 12)
    max_election = max(c.election_ticks for c in configs)
    return Scenario(
        seed=seed,
        profile=profile,
        node_count=node_count,
        steps=total_steps,
        net=net,
        partitions=partitions,
        configs=configs,
        tick_rates=tick_rates[:node_total],
        crash_rate=rates.crash_rate,
        crash_leader_share=rates.crash_leader_share,
        crash_after_vote_rate=rates.crash_after_vote_rate,
        crash_before_send_rate=rates.crash_before_send_rate,
        downtime_min_steps=rates.downtime_min_steps,
        downtime_max_steps=max(rates.downtime_min_steps, rates.downtime_max_steps),
        max_down=node_count // 2 if rng.random() < 0.7 else node_count - 1,
        persist_delay_rate=rates.persist_delay_rate,
        persist_delay_max_steps=rates.persist_delay_max_steps,
        snapshot_rate=rates.snapshot_rate,
        membership_rate=rates.membership_rate,
        transfer_rate=rates.transfer_rate,
        propose_rate=rates.propose_rate,
        batch_max=rng.randrange(1, 5),
        read_rate=rates.read_rate,
        key_count=key_count,
        liveness_ticks=_liveness_ticks(configs[0], max_election, net, key_count),
        faults=faults,
        steps_override=steps,
    )


@dataclass(slots=True)
class _Rates:
    """The per-step rates of a scenario, before the profile shifts them."""

    crash_rate: float
    crash_leader_share: float
    crash_after_vote_rate: float
    crash_before_send_rate: float
    downtime_min_steps: int
    downtime_max_steps: int
    persist_delay_rate: float
    persist_delay_max_steps: int
    snapshot_rate: float
    membership_rate: float
    transfer_rate: float
    propose_rate: float
    read_rate: float


def _rates(rng: random.Random, profile: str) -> _Rates:
    rates = _Rates(
        crash_rate=rng.choice((0.0, 0.002, 0.005, 0.01)),
        crash_leader_share=rng.uniform(0.2, 0.6),
        crash_after_vote_rate=0.0,
        crash_before_send_rate=rng.choice((0.0, 0.0, 0.002, 0.01)),
        downtime_min_steps=5,
        downtime_max_steps=rng.randrange(20, 200),
        persist_delay_rate=rng.choice((0.0, 0.1, 0.3)),
        persist_delay_max_steps=rng.randrange(1, 4),
        snapshot_rate=rng.choice((0.002, 0.01, 0.03)),
        membership_rate=rng.choice((0.0, 0.002, 0.005)),
        transfer_rate=rng.choice((0.0, 0.001, 0.004)),
        propose_rate=rng.uniform(0.2, 0.9),
        read_rate=rng.uniform(0.05, 0.5),
    )
    if profile == "leader_churn":
        rates.crash_rate = rng.uniform(0.01, 0.03)
        rates.crash_leader_share = rng.uniform(0.6, 0.9)
        rates.downtime_min_steps, rates.downtime_max_steps = 2, rng.randrange(10, 60)
        rates.persist_delay_rate = rng.uniform(0.3, 0.7)
        rates.persist_delay_max_steps = rng.randrange(2, 6)
        rates.propose_rate = rng.uniform(0.5, 1.0)
        rates.crash_before_send_rate = rng.uniform(0.05, 0.2)
    elif profile == "stale_leader":
        rates.read_rate = rng.uniform(0.6, 1.0)
        rates.propose_rate = rng.uniform(0.6, 1.0)
    elif profile == "crash_vote":
        rates.crash_rate = rng.uniform(0.005, 0.015)
        rates.crash_leader_share = rng.uniform(0.6, 0.9)
        rates.crash_after_vote_rate = rng.uniform(0.3, 0.8)
        rates.downtime_min_steps, rates.downtime_max_steps = 1, rng.randrange(1, 4)
    elif profile == "membership":
        rates.membership_rate = rng.uniform(0.01, 0.03)
        rates.transfer_rate = rng.uniform(0.005, 0.02)
    return rates


def _network(rng: random.Random, profile: str) -> NetworkPlan:
    if profile == "flaky_net":
        return NetworkPlan(
            drop_rate=rng.uniform(0.05, 0.25),
            duplicate_rate=rng.uniform(0.02, 0.15),
            reorder_rate=rng.uniform(0.05, 0.3),
            delay_min_ticks=1,
            delay_max_ticks=rng.randrange(1, 6),
            reorder_max_ticks=rng.randrange(2, 12),
            hold_rate=rng.choice((0.0, 0.3, 1.0)),
        )
    quiet = rng.random() < 0.2
    return NetworkPlan(
        drop_rate=0.0 if quiet else rng.uniform(0.0, 0.06),
        duplicate_rate=0.0 if quiet else rng.uniform(0.0, 0.04),
        reorder_rate=0.0 if quiet else rng.uniform(0.0, 0.08),
        delay_min_ticks=1,
        delay_max_ticks=rng.randrange(1, 4),
        reorder_max_ticks=rng.randrange(2, 8),
        hold_rate=rng.choice((0.0, 0.0, 0.2, 1.0)),
    )


def _configs(
    rng: random.Random, profile: str, node_count: int, faults: FaultSwitches, net: NetworkPlan
) -> tuple[RaftConfig, ...]:
    # Raft needs an election timeout well above the round trip, or elections never settle.
    shortest = max(4, 3 * net.delay_max_ticks)
    election = rng.randrange(shortest, shortest + 9)
    heartbeat = 1 if election < 6 or rng.random() < 0.7 else 2
    pre_vote = rng.random() < 0.75
    # Without both, a removed replica that never hears of its removal can disrupt forever.
    check_quorum = rng.random() < 0.75 or not pre_vote
    small = profile == "leader_churn" or rng.random() < 0.5
    template = RaftConfig(
        node_id=1,
        election_ticks=election,
        heartbeat_ticks=heartbeat,
        pre_vote=pre_vote,
        check_quorum=check_quorum,
        max_append_entries=1 if profile == "leader_churn" else rng.choice((1, 2, 4, 16, 1024)),
        max_append_bytes=rng.choice((8, 32, 128)) if small else 1 << 20,
        max_inflight_msgs=rng.choice((1, 2, 4)) if small else 64,
        max_inflight_bytes=rng.choice((16, 64, 256)) if small else 8 << 20,
        snapshot_chunk_bytes=rng.choice((7, 16, 40, 128)),
        faults=faults,
    )
    skewed = rng.random() < 0.3
    configs = []
    for node_id in range(1, node_count + MAX_JOINS + 1):
        ticks = election + (rng.randrange(-1, 2) if skewed else 0)
        configs.append(replace(template, node_id=node_id, election_ticks=max(ticks, heartbeat + 2)))
    return tuple(configs)


def _partitions(rng: random.Random, profile: str, steps: int) -> tuple[PartitionPlan, ...]:
    plans: list[PartitionPlan] = []
    gap = {"balanced": 250, "flaky_net": 400, "leader_churn": 150, "stale_leader": 80}.get(profile, 300)
    weights = (3, 2, 6, 2) if profile == "stale_leader" else (3, 2, 3, 2)
    step = rng.randrange(20, gap)
    while step < steps:
        kind = rng.choices(PARTITION_KINDS, weights)[0]
        duration = rng.randrange(10, 120)
        plans.append(PartitionPlan(step, min(duration, steps - step), kind, rng.getrandbits(32)))
        step += duration + rng.randrange(10, gap)
    return tuple(plans)


def _liveness_ticks(config: RaftConfig, max_election: int, net: NetworkPlan, key_count: int) -> int:
    """How long a healed cluster may take to commit a fresh proposal on a majority.

    Electing a leader: 20 election timeouts (the usual bound). Then the leader
    may have to bring a majority over its uncommitted backlog, one window of
    appends per round trip, and a follower may need the snapshot, one chunk per
    round trip: with one-entry appends and 7-byte chunks that is what dominates.
    """
    round_trip = 2 * net.delay_max_ticks + 2
    per_append = max(1, min(config.max_append_entries, config.max_append_bytes // COMMAND_BYTES_MAX))
    backlog = -(-(MAX_UNCOMMITTED_ENTRIES + 8) // per_append)
    snapshot_bytes = 24 + key_count * (COMMAND_BYTES_MAX + 1)
    chunks = -(-snapshot_bytes // config.snapshot_chunk_bytes)
    return 20 * max_election + (backlog + chunks) * round_trip
