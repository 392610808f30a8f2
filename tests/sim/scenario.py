"""One seed -> one whole-daemon scenario: the cluster, its faults, its clients, and their rates.

Everything a run does is drawn from generators seeded by the scenario's seed
(one per concern: `Scenario.rng(name)`), so the same seed replays the same
history. `summary()` prints the scenario as one line, first in every trace.

Profiles spread the seeds over different worlds: a calm network, a lossy
one, crash-heavy, pause-heavy, partition-heavy, a bad disk, skewed clocks,
one where the membership changes under load, and two aimed at elections:
- `membership`: the operator adds nodes (empty disks, as learners), promotes
  them, removes voters (the leader included) and learners, and transfers
  leadership, while the usual faults go on;
- `elections`: nodes lose power right after they grant a vote and come back
  fast, while partitions (bridges, one-way loss) keep two candidates from
  hearing each other, so a vote that was not durable gets granted twice;
- `churn`: leaders lose power often and come back fast, appends carry one
  entry and fsyncs are slow, so leaders change with entries half replicated
  (the Figure-8 pattern of the Raft paper).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from confmand.server.faults import NO_FAULTS, DriverFaults

PROFILES = (
    "calm",
    "lossy",
    "crashes",
    "pauses",
    "partitions",
    "disk",
    "clocks",
    "mixed",
    "elections",
    "churn",
    "membership",
    "stale_leaders",
)


@dataclass(frozen=True, slots=True)
class Scenario:
    seed: int
    profile: str
    node_count: int  # the first membership
    joins: int  # how many more nodes the operator may add (ids node_count+1 ..)
    membership_rate: float  # membership changes proposed per second
    transfer_rate: float  # leadership transfers asked per second
    move_rate: float  # partition moves started per second (with more than one data shard)
    place_rate: float  # replicas moved to another node through the map, per second
    add_rate: float  # data shards added per second (up to MAX_ADDED_SHARDS), partitions then moving in
    duration_s: float  # the faulty part; then everything heals for the final phase
    clients: int
    keys: int
    data_shards: int  # the cluster's shape: how many data shards, on how many nodes each
    replication: int
    quiet_shards: bool  # idle shards stop ticking (raft.quiet_shards)
    # network
    delay_min_s: float
    delay_max_s: float
    drop_rate: float
    duplicate_rate: float
    reorder_rate: float
    late_max_s: float  # how late a reordered (or duplicated) message may arrive
    # faults, each a rate per second of simulated time
    crash_rate: float
    leader_crash_share: float  # of the crashes, how many are aimed at the leader
    restart_min_s: float
    restart_max_s: float
    pause_rate: float
    pause_leader_share: float  # of pauses, how many hit the node leading the most shards
    pause_isolate_share: float  # of pauses, how many leave the node cut off when it resumes
    partition_rate: float
    disk_full_rate: float
    clock_step_rate: float
    # per write: a synced write that crashes the node before it lands; a write that fails (EIO)
    crash_in_write_rate: float
    crash_after_log_switch_rate: float  # per log switch: power lost before the old file is flushed
    crash_after_vote_rate: float  # per vote granted: power lost right after the turn that granted it
    crash_after_first_commit_rate: float  # per term led: power lost right after the leader's first commit
    crash_after_leader_write_rate: float  # per leader's synced log write: power lost before it sends
    write_error_rate: float
    fsync_min_s: float
    fsync_max_s: float
    slow_fsync_rate: float  # a synced write that takes 0.1-1 s
    clock_rates: tuple[float, ...]  # each node's monotonic clock speed
    snapshot_interval_entries: int
    log_retain_entries: int
    request_timeout_ms: int
    max_append_entries: int
    max_apply_entries: int  # small in churn runs: backlogs are applied over several turns
    tick_ms: int  # a short tick packs many more elections into a run
    election_ticks: int  # few ticks: candidates' timeouts often fall on the same tick (split votes)
    pre_vote: bool
    check_quorum: bool
    log_bytes_max: int  # LevelDB's write_buffer_size on every simulated disk
    flush_after_writes: int  # how long a closed log file waits for its flush to a table
    faults: DriverFaults = field(default=NO_FAULTS)
    duration_override: float | None = None
    # Of the crashes, how many come back without their data volume (an empty data dir under the
    # old node id) until the operator mounts it again. Decided by its own generator.
    unmount_share: float = 0.0

    @classmethod
    def from_seed(
        cls, seed: int, faults: DriverFaults = NO_FAULTS, duration_s: float | None = None
    ) -> Scenario:
        rng = random.Random(f"{seed}/scenario")
        profile = PROFILES[seed % len(PROFILES)]
        node_count = 5 if rng.random() < (0.7 if profile == "elections" else 0.25) else 3
        joins = 3 if profile == "membership" else 0
        drawn_s = rng.uniform(6.0, 10.0)  # drawn even when overridden: the rest stays the same

        def on(name: str, base: float) -> float:
            return base * (3.0 if profile in (name, "mixed") else 1.0) if profile != "calm" else 0.0

        elections, churn, membership = profile == "elections", profile == "churn", profile == "membership"
        stale = profile == "stale_leaders"
        # The shape has its own generator: the draws above and below stay those of earlier versions.
        shape = random.Random(f"{seed}/shape")
        data_shards = shape.choice((1, 1, 2, 3, 4))
        replication = 3 if node_count == 5 and shape.random() < 0.5 else node_count
        quiet_shards = shape.random() < 0.7

        return cls(
            seed=seed,
            profile=profile,
            node_count=node_count,
            joins=joins,
            membership_rate=2.0 if membership else 0.0,
            transfer_rate=0.5 if membership else 0.0,
            move_rate=0.0 if profile == "calm" or data_shards == 1 else 2.0,
            place_rate=0.0 if profile in ("calm", "membership") or replication == node_count else 1.0,
            add_rate=0.0 if profile == "calm" or data_shards == 1 else 0.3,
            duration_s=drawn_s if duration_s is None else duration_s,
            clients=rng.randint(3, 6) + (4 if stale else 0),  # more clients, fewer keys: more
            keys=2 if stale else rng.randint(2, 6),  # reads of a key a new leader has written
            data_shards=data_shards,
            replication=replication,
            quiet_shards=quiet_shards,
            delay_min_s=0.0002,
            delay_max_s=rng.choice((0.02, 0.04) if profile == "elections" else (0.001, 0.003, 0.02)),
            drop_rate=0.05 if profile in ("lossy", "mixed") else 0.002 if profile != "calm" else 0.0,
            duplicate_rate=0.03 if profile in ("lossy", "mixed") else 0.2 if elections else 0.0,
            reorder_rate=0.05 if profile in ("lossy", "mixed") else 0.3 if elections else 0.0,
            late_max_s=0.5 if elections else 0.05,
            crash_rate=1.0 if churn else 0.5 if elections else on("crashes", 0.12),
            leader_crash_share=0.9 if churn or elections else 0.5,
            restart_min_s=0.001 if elections else 0.02 if churn else 0.2,
            restart_max_s=0.03 if elections else 0.4 if churn else 2.0,
            # stale_leaders: leaders paused and cut off often, clients still asking them after
            pause_rate=1.0 if stale else on("pauses", 0.1),
            pause_leader_share=0.9 if stale else 0.5,
            pause_isolate_share=0.8 if stale else 0.4,
            partition_rate=0.6 if elections else on("partitions", 0.1),
            disk_full_rate=on("disk", 0.03),
            clock_step_rate=on("clocks", 0.05),
            crash_in_write_rate=on("crashes", 0.002),
            crash_after_log_switch_rate=on("crashes", 0.1),
            crash_after_vote_rate=0.3 if elections else 0.0,
            crash_after_first_commit_rate=0.5 if churn else 0.0,
            crash_after_leader_write_rate=0.2 if churn else 0.0,
            write_error_rate=on("disk", 0.002),
            fsync_min_s=0.0002,
            fsync_max_s=0.03 if churn else rng.choice((0.001, 0.005, 0.02)),
            slow_fsync_rate=0.01 if profile in ("disk", "mixed") else 0.0,
            clock_rates=tuple(
                rng.uniform(0.9, 1.1) if profile in ("clocks", "mixed") else rng.uniform(0.99, 1.01)
                for _ in range(node_count + joins)
            ),
            snapshot_interval_entries=rng.choice((40, 150, 10_000)),
            log_retain_entries=rng.choice((5, 30)),
            request_timeout_ms=rng.choice((1_000, 2_000)),
            max_append_entries=1 if churn else 1024,
            max_apply_entries=4 if churn else 1024,
            tick_ms=10 if churn else 50,
            election_ticks=3 if elections else 10,
            pre_vote=not elections or rng.random() < 0.5,
            check_quorum=not elections or rng.random() < 0.5,
            log_bytes_max=rng.choice((4 << 10, 16 << 10, 4 << 20)),
            flush_after_writes=rng.choice((2, 10)),
            faults=faults,
            duration_override=duration_s,
            unmount_share=1.0 if profile in ("crashes", "mixed") else 0.3 if elections or churn else 0.0,
        )

    def rng(self, concern: str) -> random.Random:
        return random.Random(f"{self.seed}/{concern}")

    def summary(self) -> str:
        faults = ",".join(self.faults.on()) or "none"
        return (
            f"seed {self.seed}: {self.profile}, {self.node_count} nodes (+{self.joins} may join), "
            f"{self.data_shards} data shards x {self.replication}{' quiet when idle' * self.quiet_shards}, "
            f"{self.duration_s:.1f}s, "
            f"{self.clients} clients on {self.keys} keys; delay {self.delay_min_s * 1000:.1f}-"
            f"{self.delay_max_s * 1000:.1f}ms drop {self.drop_rate} dup {self.duplicate_rate}; "
            f"per s: crash {self.crash_rate:.2f} pause {self.pause_rate:.2f} partition "
            f"{self.partition_rate:.2f} full-disk {self.disk_full_rate:.2f} clock-step "
            f"{self.clock_step_rate:.2f}; "
            f"fsync {self.fsync_min_s * 1000:.1f}-{self.fsync_max_s * 1000:.1f}ms; "
            f"snapshot every {self.snapshot_interval_entries}; pre-vote {self.pre_vote} check-quorum "
            f"{self.check_quorum}; fault switches: {faults}"
        )
