"""ReadIndex (Raft thesis §6.4): linearizable reads without writing to the log.

A read arriving at the leader records the commit index at that moment and
waits for a heartbeat round that *starts after it* to be acknowledged by a
majority: that proves no other leader had been elected when the read
arrived, so nothing committed before the read can be missing from that
commit index. Rounds are numbered (`read_seq`); a read registered now needs
round `read_seq + 1`, and one round confirms every read that waits for it.

Until the leader has committed an entry of its own term its commit index
may lag what its predecessors committed, so reads wait for that first.
"""

from __future__ import annotations

from collections import deque

from confmand.raft.types import ReadState


class ReadTracker:
    __slots__ = ("_before_commit", "_pending", "read_seq", "ready")

    def __init__(self) -> None:
        self._pending: deque[tuple[bytes, int, int]] = deque()  # (context, index, round needed)
        self._before_commit: list[bytes] = []
        self.read_seq = 0
        self.ready: list[ReadState] = []

    @property
    def waiting(self) -> bool:
        """Whether any read awaits its round or the leader's first commit."""
        return bool(self._pending or self._before_commit or self.ready)

    def clear(self) -> None:
        """Leadership lost: pending reads are abandoned (the driver fails them on the role change)."""
        self._pending.clear()
        self._before_commit.clear()

    def wait_for_commit(self, context: bytes) -> None:
        self._before_commit.append(context)

    def take_waiting_for_commit(self) -> list[bytes]:
        waiting, self._before_commit = self._before_commit, []
        return waiting

    def serve_now(self, context: bytes, commit: int) -> None:
        self.ready.append(ReadState(context, commit))

    def register(self, context: bytes, commit: int) -> None:
        self._pending.append((context, commit, self.read_seq + 1))

    def next_round(self) -> int:
        """The number for the heartbeat round about to leave: a new one only if a read waits."""
        if self._pending and self._pending[-1][2] > self.read_seq:
            self.read_seq += 1
        return self.read_seq

    def confirm(self, confirmed_seq: int) -> None:
        """A majority acknowledged rounds through `confirmed_seq`."""
        pending = self._pending
        while pending and pending[0][2] <= confirmed_seq:
            context, index, _ = pending.popleft()
            self.ready.append(ReadState(context, index))

    def take_ready(self) -> list[ReadState]:
        out, self.ready = self.ready, []
        return out
