"""`PartitionMover`: the node's part in moving partitions, as the leader of the shard they leave.

Once `move_partition` has frozen partition P in shard S (kv/partitions.py), S's leader drives
the rest, one step at a time, each sent to the leader of the shard it concerns:
    ingest (to the target shard) -> map move (to the meta shard) -> drop (to S itself).
What a task has done is not kept: every step is idempotent, so a new leader of S (or this node
after a restart) finds P still LEAVING in S's state and starts again from the ingest. A step
that fails or goes unanswered is sent again after `RETRY_S`, to the leader the error named if
it named one. The mover decides what to send and when; the node (node.py) sends it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from confmand.kv.partitions import LEAVING, Drop, Ingest, MapMove, PartitionOp, moves
from confmand.protocol.shardmap import META_SHARD
from confmand.server.replica import Replica

RETRY_S: Final = 0.2  # after an error
ANSWER_WAIT_S: Final = 2.0  # a step unanswered this long is sent again
HINT_RETRY_S: Final = 0.01  # after a refusal that names the leader (it may name itself: a hand-off)
STEPS: Final = ("ingest", "map", "drop")

Task = tuple[int, int, int]  # (source shard, partition, move gen)


@dataclass(slots=True)
class _Progress:
    to_shard: int
    step: int = 0  # index into STEPS
    waiting: bool = False  # a step is out, not yet answered
    not_before: float = 0.0
    leader_guess: dict[int, int] = field(default_factory=dict)  # shard -> the node to send to
    failed: bool = False  # the last try failed without naming a leader: try another node


@dataclass(frozen=True, slots=True)
class Send:
    task: Task
    step: str
    shard: int  # the shard whose leader must apply `op`
    op: PartitionOp
    node: int | None  # where to send it (None: the mover does not know; the node chooses)
    blind: bool = False  # the last try went unanswered: the node's own idea of the leader may be stale


class PartitionMover:
    def __init__(self) -> None:
        self._tasks: dict[Task, _Progress] = {}

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    def tasks(self) -> dict[Task, tuple[int, str]]:
        """What is under way: task -> (target shard, current step)."""
        return {t: (p.to_shard, STEPS[p.step]) for t, p in self._tasks.items()}

    def look(self, replicas: dict[int, Replica], changed: list[Replica]) -> None:
        """Find the partitions leaving the shards this node leads; forget those it no longer drives.

        Only `changed` replicas (a move step applied, a snapshot installed, leadership won) are
        read: a thousand idle shards cost nothing here.
        """
        for task in [t for t in self._tasks if not _leads(replicas, t[0])]:
            del self._tasks[task]
        for replica in changed:
            replica.moves_changed = False
            shard_id = replica.shard_id
            if shard_id == META_SHARD or not replica.is_leader:
                continue
            leaving = {
                (shard_id, p, st.gen): st.peer
                for p, st in moves(replica.storage)
                if st.state == LEAVING and st.peer is not None
            }
            for task in [t for t in self._tasks if t[0] == shard_id and t not in leaving]:
                del self._tasks[task]  # dropped: the move is done
            for task, to_shard in leaving.items():
                self._tasks.setdefault(task, _Progress(to_shard))

    def due(self, now: float, export: dict[Task, bytes]) -> list[Send]:
        """The steps to send now; `export` holds each ingest's payload, built by the caller."""
        sends = []
        for task, progress in self._tasks.items():
            if progress.waiting or now < progress.not_before:
                continue
            source, partition, gen = task
            step = STEPS[progress.step]
            op: PartitionOp
            if step == "ingest":
                if task not in export:
                    continue
                shard, op = progress.to_shard, Ingest(partition, gen, source, export[task])
            elif step == "map":
                shard, op = META_SHARD, MapMove(partition, source, progress.to_shard, gen)
            else:
                shard, op = source, Drop(partition, gen)
            progress.waiting = True
            progress.not_before = now + ANSWER_WAIT_S  # unanswered by then: `expire` sends it again
            sends.append(Send(task, step, shard, op, progress.leader_guess.get(shard), progress.failed))
        return sends

    def wants_export(self, now: float) -> list[Task]:
        return [
            t
            for t, p in self._tasks.items()
            if STEPS[p.step] == "ingest" and not p.waiting and now >= p.not_before
        ]

    def answered(
        self, task: Task, step: str, *, ok: bool, now: float, leader: int | None, shard: int
    ) -> None:
        progress = self._tasks.get(task)
        if progress is None or STEPS[progress.step] != step:
            return  # an old answer: the task moved on, or was dropped
        progress.waiting = False
        progress.failed = not ok and leader is None
        if ok:
            if progress.step + 1 < len(STEPS):
                progress.step += 1
                progress.not_before = now
            else:
                progress.not_before = now + ANSWER_WAIT_S
            return  # after the drop the next `look` finds the partition GONE and ends the task
        if leader is not None:
            progress.leader_guess[shard] = leader
            progress.not_before = now + HINT_RETRY_S
        else:
            progress.leader_guess.pop(shard, None)
            progress.not_before = now + RETRY_S

    def expire(self, now: float) -> None:
        """A step unanswered for RETRY_S is sent again (its answer, if it comes late, is ignored)."""
        for progress in self._tasks.values():
            if progress.waiting and now >= progress.not_before:
                progress.waiting = False


def _leads(replicas: dict[int, Replica], shard_id: int) -> bool:
    replica = replicas.get(shard_id)
    return replica is not None and replica.is_leader
