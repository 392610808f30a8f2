"""What the core hands the driver after a batch of inputs, and the order rules for it.

The driver takes a `Ready`, then, in this order:
1. persists `snapshot` (if any), then `entries` (truncating its log from
   `entries[0].index` first) and `hard_state` (if any), in one synced write;
2. sends `messages` (never before step 1 is durable: they may promise a vote
   or acknowledge entries);
3. installs `snapshot` into the state machine, then applies
   `committed_entries` in order, and serves `read_states` once applied has
   reached their index;
4. reports `outcomes` to the proposers;
5. calls `advance(ready)`.

Readies are numbered; the numbers only go up, and each Ready comes back to
`advance()` exactly once, in the order handed out (checked: `ReadyOrderError`, errors.py).
Between `ready()` and `advance()` the driver may keep calling
`step`/`tick`/`propose`; the next Ready carries only what is new.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from confmand.raft.messages import Message
from confmand.raft.types import Entry, HardState, NodeId, ProposalOutcome, ReadState, Role, Snapshot


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile facts the driver may want to show (not persisted)."""

    role: Role
    leader_id: NodeId | None

    def __init__(self, role: Role, leader_id: NodeId | None) -> None:
        object.__setattr__(self, "role", role)
        object.__setattr__(self, "leader_id", leader_id)


@dataclass(slots=True)
class Ready:
    number: int
    soft_state: SoftState
    hard_state: HardState | None = None
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    committed_entries: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    outcomes: list[ProposalOutcome] = field(default_factory=list)

    # Written out for the reason messages.py gives: one Ready per shard per loop turn.
    def __init__(  # noqa: PLR0917 (the fields, in order, as the generated one)
        self,
        number: int,
        soft_state: SoftState,
        hard_state: HardState | None = None,
        snapshot: Snapshot | None = None,
        entries: list[Entry] | None = None,
        messages: list[Message] | None = None,
        committed_entries: list[Entry] | None = None,
        read_states: list[ReadState] | None = None,
        outcomes: list[ProposalOutcome] | None = None,
    ) -> None:
        self.number = number
        self.soft_state = soft_state
        self.hard_state = hard_state
        self.snapshot = snapshot
        self.entries = [] if entries is None else entries
        self.messages = [] if messages is None else messages
        self.committed_entries = [] if committed_entries is None else committed_entries
        self.read_states = [] if read_states is None else read_states
        self.outcomes = [] if outcomes is None else outcomes

    def is_empty(self) -> bool:
        return not (
            self.hard_state
            or self.snapshot
            or self.entries
            or self.messages
            or self.committed_entries
            or self.read_states
            or self.outcomes
        )
