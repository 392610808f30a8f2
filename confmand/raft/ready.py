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
`advance()` exactly once, in the order handed out (checked: `ReadyOrderError`).
Between `ready()` and `advance()` the driver may keep calling
`step`/`tick`/`propose`; the next Ready carries only what is new.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from confmand.raft.messages import Message
from confmand.raft.types import Entry, HardState, NodeId, ProposalOutcome, ReadState, Role, Snapshot


class ReadyOrderError(RuntimeError):
    """A Ready advanced twice, skipped, or out of order: a driver bug."""


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile facts the driver may want to show (not persisted)."""

    role: Role
    leader_id: NodeId | None


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
