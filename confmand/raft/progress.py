"""The leader's view of one follower: how much of the log it holds, and what is in flight.

States (as in etcd's tracker):
- PROBE: the leader does not know where the follower's log matches. It sends
  one append at a time and waits for the answer (`paused`) or the next
  heartbeat before sending another.
- REPLICATE: the follower is known to match through `match`; the leader
  streams appends optimistically, several in flight, bounded by
  `max_inflight_msgs` messages and `max_inflight_bytes` bytes.
- SNAPSHOT: the entries the follower needs are compacted away; the leader
  streams the snapshot in chunks, one in flight at a time.

Invariant: `match < next_index`.
"""

from __future__ import annotations

import enum
from collections import deque

from confmand.raft.types import Snapshot


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Progress:
    __slots__ = (
        "appended",
        "inflight",
        "inflight_bytes",
        "match",
        "next_index",
        "paused",
        "read_seq",
        "recent_active",
        "snapshot",
        "snapshot_offset",
        "stall_ticks",
        "state",
    )

    def __init__(self, next_index: int) -> None:
        self.match = 0
        self.next_index = next_index
        self.state = ProgressState.PROBE
        self.paused = False
        # (last index of the append, its bytes), oldest first
        self.inflight: deque[tuple[int, int]] = deque()
        self.inflight_bytes = 0
        self.recent_active = False
        self.read_seq = 0  # highest ReadIndex round this follower confirmed
        self.snapshot: Snapshot | None = None
        self.snapshot_offset = 0  # bytes of `snapshot` the follower has acknowledged
        # Ticks since the follower last acknowledged anything while something was in
        # flight: messages can be lost without notice, so a stall means resend.
        self.stall_ticks = 0
        # An append left for this follower since the last heartbeat tick: it did a heartbeat's job.
        self.appended = False

    def window_full(self, max_msgs: int, max_bytes: int) -> bool:
        return len(self.inflight) >= max_msgs or self.inflight_bytes >= max_bytes

    def can_send(self, max_msgs: int, max_bytes: int) -> bool:
        if self.state is ProgressState.PROBE:
            return not self.paused
        if self.state is ProgressState.REPLICATE:
            return not self.window_full(max_msgs, max_bytes)
        return False

    def sent(self, last_index: int, size_bytes: int) -> None:
        """An append through `last_index` left for this follower."""
        if self.state is ProgressState.REPLICATE:
            self.next_index = last_index + 1
            self.inflight.append((last_index, size_bytes))
            self.inflight_bytes += size_bytes
        elif self.state is ProgressState.PROBE:
            self.paused = True

    def acknowledged(self, index: int) -> bool:
        """The follower matches through `index`; returns whether that was news."""
        inflight = self.inflight
        while inflight and inflight[0][0] <= index:
            self.inflight_bytes -= inflight.popleft()[1]
        self.paused = False
        self.stall_ticks = 0
        if index <= self.match:
            return False
        self.match = index
        self.next_index = max(self.next_index, index + 1)
        return True

    def forget_match(self, index: int) -> None:
        """The follower holds less than `match` said (it was replaced): believe `index` instead.
        Lowering it is always safe: the commit index never goes back, and less is sent as held."""
        self.match = min(self.match, index)

    def become_probe(self, next_index: int) -> None:
        self.state = ProgressState.PROBE
        self.next_index = max(self.match + 1, next_index)
        self.paused = False
        self.snapshot = None
        self._clear_inflight()

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next_index = self.match + 1
        self.paused = False
        self._clear_inflight()

    def become_snapshot(self, snapshot: Snapshot) -> None:
        self.state = ProgressState.SNAPSHOT
        self.snapshot = snapshot
        self.snapshot_offset = 0
        self.paused = False
        self._clear_inflight()

    def awaiting_answer(self) -> bool:
        if self.state is ProgressState.REPLICATE:
            return bool(self.inflight)
        return self.paused

    def _clear_inflight(self) -> None:
        self.stall_ticks = 0
        self.inflight.clear()
        self.inflight_bytes = 0
