"""Static settings of one replica of one shard, and the test-only fault switches.

Every limit is named with its unit last (`election_ticks`, `max_append_bytes`).
Time is counted in ticks: the driver decides how long a tick is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from confmand.raft.types import NodeId, ShardId


@dataclass(frozen=True, slots=True)
class FaultSwitches:
    """Known-wrong behaviours that tests switch on to prove the simulator catches them.

    All off in production. Each is read only on a cold path (an election, a
    commit decision, a read), so leaving them off costs nothing measurable.
    """

    commit_old_term_by_counting: bool = False
    vote_without_log_check: bool = False
    vote_before_persist: bool = False
    apply_uncommitted: bool = False
    read_index_without_heartbeat: bool = False


@dataclass(frozen=True, slots=True)
class RaftConfig:
    node_id: NodeId
    shard_id: ShardId = 0
    # A follower campaigns after a random timeout in [election_ticks, 2 * election_ticks).
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    pre_vote: bool = True
    # A leader that has not heard from a quorum within election_ticks steps down,
    # and replicas that heard from a leader within election_ticks ignore votes.
    check_quorum: bool = True
    # An idle leader whose peers hold its whole log goes quiet: no ticks, no heartbeats, until a
    # request or a message wakes the shard (or the driver suspects its leader's node is gone).
    quiesce: bool = False
    max_append_entries: int = 1024
    max_append_bytes: int = 1 << 20
    max_inflight_msgs: int = 64
    max_inflight_bytes: int = 8 << 20
    snapshot_chunk_bytes: int = 64 << 10
    # Fairness between the shards of a node: one Ready hands out at most this many committed
    # entries (and this many bytes of them, but always one), so that a shard with a long backlog
    # to apply (a learner catching up) applies it over several turns and the others get theirs.
    max_apply_entries: int = 1024
    max_apply_bytes: int = 8 << 20
    # The state machine's applied index at start: committed entries up to it
    # are not handed out again.
    applied: int = 0
    # This node deleted its replica of the shard once, when the committed membership in force at
    # this index left it out (docs/raft.md, *Leaving a shard*): the replica started again grants
    # no vote until it holds a membership from after that index, which only a leader adding it
    # back can give it. None: never deleted here.
    rejoin_after: int | None = None
    faults: FaultSwitches = field(default_factory=FaultSwitches)

    def __post_init__(self) -> None:
        if self.heartbeat_ticks < 1:
            raise ValueError("heartbeat_ticks must be at least 1")
        if self.election_ticks <= self.heartbeat_ticks:
            raise ValueError("election_ticks must be greater than heartbeat_ticks")
        if self.max_append_entries < 1 or self.max_inflight_msgs < 1:
            raise ValueError("max_append_entries and max_inflight_msgs must be at least 1")
        if self.max_apply_entries < 1 or self.max_apply_bytes < 1:
            raise ValueError("max_apply_entries and max_apply_bytes must be at least 1")
        if self.snapshot_chunk_bytes < 1:
            raise ValueError("snapshot_chunk_bytes must be at least 1")
