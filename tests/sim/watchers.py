"""A simulated watcher: the client's own `ShardStream`s (confctl/client/watch_stream.py) over the
simulated network, one per data shard, watching every sim key (prefix "").

It runs beside the clients through every fault of the run, and what it was told is judged at
the end (`watch_problems`):
- each shard's batches are ordered, unique, atomic and bookmarked (tests/watch_validation.py);
- every change told is a write some client made (sim values are unique), at the version the
  cluster acknowledged for it, and no value is told twice;
- every write acknowledged at a version its shard's stream covered was told, with its value;
- once healed, every stream catches up with its shard's applied version (`caught_up`).

A stream the cluster ends for good (COMPACTED at every replica: they all restarted, or
installed snapshots, past its progress) starts again from the replica's present, and what it
could not see is left out of "covered": the protocol's answer to that is a fresh listing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from confctl.client import replies
from confctl.client.call import ClientCore
from confctl.client.errors import Compacted
from confctl.client.routing import Backoff, Router
from confctl.client.session import Session
from confctl.client.shards import ShardDirectory
from confctl.client.types import Version, WatchBatch
from confctl.client.watch_stream import Action, Cancel, Ended, Open, ShardStream, Told
from tests.fault.history import Op
from tests.sim.world import World
from tests.watch_validation import Coverage, watch_problems

SendFrame = Callable[[str, list[bytes], bytes], None]
PROGRESS_MS = 200
RESTART_AFTER_S = 0.5  # a stream ended for good opens again from the present after this


class SimWatcher:
    def __init__(
        self,
        world: World,
        number: int,
        *,
        endpoints: list[str],
        send: SendFrame,
        shards: Callable[[], list[int]],
    ) -> None:
        self.world = world
        self.envelope = [b"watcher-%d" % number]
        self.core = ClientCore(
            Session(b"sim-watcher-%d" % number),
            Router(tuple(endpoints)),
            backoff=Backoff(rng=world.scenario.rng(f"watcher/{number}/backoff")),
            shards=ShardDirectory(),
        )
        self._send = send
        self._shards = shards
        self.streams: dict[int, ShardStream] = {}
        self.runs: dict[tuple[int | None, int], list[WatchBatch]] = {}  # (shard, run): a run is one watch
        self.coverage: dict[int | None, Coverage] = {}
        self.ended: list[str] = []
        self._silence_due: dict[int, float] = {}
        self.running = True

    # ------------------------------------------------------------------ driving the streams

    def start(self) -> None:
        self._look_for_shards()

    def _look_for_shards(self) -> None:
        """Watch each data shard the cluster has (shards are added during a run), once a second."""
        if not self.running:
            return
        for shard in self._shards():
            if shard not in self.coverage:  # a shard added since: all of it
                self._open(shard, Version(0, 0) if self.coverage else None)
        self.world.at(self.world.now + 1.0, self._look_for_shards)

    def _open(self, shard: int, after: Version | None) -> None:
        stream = ShardStream(self.core, "", shard, after, PROGRESS_MS)
        self.streams[shard] = stream
        self.coverage.setdefault(shard, Coverage()).begin(after)
        self._act(shard, stream.start(self.world.now))

    def _act(self, shard: int, actions: list[Action]) -> None:
        stream = self.streams[shard]
        for action in actions:
            if isinstance(action, Told):
                self.runs.setdefault((shard, len(self.coverage[shard].runs)), []).append(action.batch)
                self.coverage[shard].told(action.batch.progress)
                self.world.count("watch_batches")
                self.world.count("watch_events", len(action.batch.events))
            elif isinstance(action, Cancel):
                self._send(action.endpoint, self.envelope, action.frame)
            elif isinstance(action, Ended):
                self._ended(shard, action.error)
                return
            else:
                assert isinstance(action, Open)
                self._send_later(shard, action, stream)
                return  # its silence counts from the send
        self._arm_silence(shard, stream)

    def _send_later(self, shard: int, action: Open, stream: ShardStream) -> None:
        def send() -> None:
            if self.streams.get(shard) is stream and stream.request_id == action.request_id:
                self._send(action.endpoint, self.envelope, action.frame)
                self._arm_silence(shard, stream)

        self.world.at(self.world.now + action.delay_s, send)

    def _arm_silence(self, shard: int, stream: ShardStream) -> None:
        due = self.world.now + stream.silence_s
        self._silence_due[shard] = due
        request_id = stream.request_id

        def silent() -> None:
            if self.streams.get(shard) is not stream or stream.request_id != request_id:
                return
            if self._silence_due.get(shard) != due:
                return  # a message came since: a later timer watches
            before = stream.resumes
            self._act(shard, stream.on_silence(self.world.now))
            self.world.count("watch_resumes", stream.resumes - before)

        self.world.at(due, silent)

    def on_reply(self, frame: bytes) -> None:
        reply = replies.decode(frame)
        if reply is None:
            return
        for shard, stream in self.streams.items():
            if stream.request_id == reply["id"]:
                before = stream.resumes
                self._act(shard, stream.on_reply(reply, self.world.now))
                self.world.count("watch_resumes", stream.resumes - before)
                return

    def _ended(self, shard: int, error: Any) -> None:
        self.ended.append(f"shard {shard}: {error}")
        if not isinstance(error, Compacted):
            return  # judged in watch_problems: only COMPACTED may end a watch of every key
        self.world.count("watch_compacted")
        del self.streams[shard]

        def again() -> None:
            if self.running and shard not in self.streams:
                self._open(shard, None)

        self.world.at(self.world.now + RESTART_AFTER_S, again)

    # ------------------------------------------------------------------ judging

    def caught_up(self, applied: Mapping[int, Version]) -> bool:
        """Whether every stream was told at least as far as its shard's `applied`."""
        for shard, version in applied.items():
            end = self.coverage.get(shard, Coverage()).end
            if shard in self.streams and (end is None or end < version):
                return False
        return True

    def problems(self, history: list[Op]) -> list[str]:
        name = self.envelope[0].decode()
        # The lease holders' keys are theirs, not the history's (tests/sim/leaseholders.py).
        judged = watch_problems(
            self.runs, self.coverage, history, judged=lambda key: not key.startswith("lh")
        )
        return [f"{name}: {p}" for p in judged]
