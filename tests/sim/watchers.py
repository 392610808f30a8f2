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
from tests.watch_validation import stream_violations

SendFrame = Callable[[str, list[bytes], bytes], None]
PROGRESS_MS = 200
RESTART_AFTER_S = 0.5  # a stream ended for good opens again from the present after this


class _Coverage:
    """The versions of one shard a stream was there for: runs of (start, end], told whole."""

    def __init__(self) -> None:
        self.runs: list[list[Version | None]] = []

    def begin(self, after: Version | None) -> None:
        """A stream opens from `after` (None: from the replica's present, its first progress)."""
        self.runs.append([after, after])

    def told(self, progress: Version) -> None:
        run = self.runs[-1]
        if run[0] is None:
            run[0] = progress
        run[1] = progress if run[1] is None else max(run[1], progress)

    def covers(self, version: Version) -> bool:
        return any(s is not None and e is not None and s < version <= e for s, e in self.runs)

    @property
    def end(self) -> Version | None:
        return self.runs[-1][1] if self.runs else None


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
        self.runs: dict[tuple[int, int], list[WatchBatch]] = {}  # (shard, run): a run is one watch
        self.coverage: dict[int, _Coverage] = {}
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
        self.coverage.setdefault(shard, _Coverage()).begin(after)
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
            end = self.coverage.get(shard, _Coverage()).end
            if shard in self.streams and (end is None or end < version):
                return False
        return True

    def problems(self, history: list[Op]) -> list[str]:
        found = [
            f"watcher {self.envelope[0].decode()}, shard {shard}, watch {run}: {problem}"
            for (shard, run), batches in sorted(self.runs.items())
            for problem in stream_violations(batches)
        ]
        found += [f"a watch ended: {e}" for e in self.ended if "COMPACTED" not in e]
        written = _writes_by_value(history)
        told: dict[str, Version] = {}
        for run in self.runs.values():
            told_in_run: set[str] = set()
            for event in (e for batch in run for e in batch.events):
                if event.type != "put" or event.value is None:
                    continue
                value = event.value.decode()
                if value in told_in_run:  # a new watch (after COMPACTED) may tell it again
                    found.append(f"{event.key}={value} told twice in one watch ({event.version})")
                told_in_run.add(value)
                told[value] = event.version
                op = written.get(value)
                if op is None:
                    found.append(f"{event.key}={value} at {event.version} was told but never written")
                    continue
                acked = _acknowledged_at(op)
                if acked is not None and acked != event.version:
                    found.append(f"{event.key}={value} told at {event.version}, acknowledged at {acked}")
        for value, op in written.items():
            acked = _acknowledged_at(op)
            if acked is None or op.shard is None or value in told:
                continue
            coverage = self.coverage.get(op.shard)
            if coverage is not None and coverage.covers(acked):
                found.append(f"{op.key}={value} acknowledged at {acked} in shard {op.shard}, never told")
        return found


def _written_value(op: Op) -> str | None:
    """The value a put or cas wrote (or may have), if it is one."""
    if op.kind == "put":
        return op.input if isinstance(op.input, str) else None
    if op.kind == "cas" and isinstance(op.input, tuple):
        new = op.input[1]
        return new if isinstance(new, str) else None
    return None


def _writes_by_value(history: list[Op]) -> dict[str, Op]:
    """Every write that was (or may have been) applied, by its value: sim values are unique."""
    written = {}
    for op in history:
        value = _written_value(op)
        if value is not None and op.outcome in ("ok", "unknown"):
            written[value] = op
    return written


def _acknowledged_at(op: Op) -> Version | None:
    """The version a write was acknowledged at (None: not acknowledged, refused, or answered
    after a move, whose version is the move's)."""
    if op.outcome != "ok" or op.version is None:
        return None
    if op.kind == "cas" and op.output is not True:
        return None
    return Version.parse(op.version)
