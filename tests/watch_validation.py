"""What a watch stream must be, checked on what a watcher received (the shapes etcd's robustness
suite checks its watches for): each function returns the violations it found, empty when none.

- ordered: within a shard, changes come in log order, by entry version;
- unique and atomic: an entry's changes come once, together, in one batch (never split between
  two, never repeated after a resume);
- bookmarked: `progress` never goes back, and nothing comes at or below a progress already told;
- reliable: every acknowledged write under the prefix at a version past the watch's start came,
  with its value (`missing_writes`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from confctl.client.types import Version, WatchBatch, WatchEvent
from tests.fault.history import Op


def stream_violations(batches: Iterable[WatchBatch]) -> list[str]:
    """Order, uniqueness, atomicity and progress of the batches received, per shard."""
    found: list[str] = []
    last_event: dict[int | None, Version] = {}
    last_progress: dict[int | None, Version] = {}
    for n, batch in enumerate(batches):
        shard = batch.shard
        told = last_progress.get(shard)
        if told is not None and batch.progress < told:
            found.append(f"batch {n} (shard {shard}): progress went back from {told} to {batch.progress}")
        previous = last_event.get(shard)
        for i, event in enumerate(batch.events):
            if event.shard != shard:
                found.append(f"batch {n}: an event of shard {event.shard} in a batch of shard {shard}")
            if told is not None and event.version <= told:
                found.append(
                    f"batch {n} (shard {shard}): {event.key} at {event.version}, at or below progress {told}"
                )
            if previous is not None:
                if event.version < previous:
                    found.append(
                        f"batch {n} (shard {shard}): {event.key} at {event.version} after {previous}"
                    )
                elif i == 0 and event.version == previous:
                    found.append(
                        f"batch {n} (shard {shard}): entry {event.version} split over two batches, "
                        "or told again"
                    )
            if event.version > batch.progress:
                found.append(f"batch {n} (shard {shard}): {event.key} at {event.version} past its progress")
            previous = event.version
        if previous is not None:
            last_event[shard] = previous
        last_progress[shard] = max(batch.progress, told) if told is not None else batch.progress
    return found


def events_of(batches: Iterable[WatchBatch]) -> list[WatchEvent]:
    return [event for batch in batches for event in batch.events]


def missing_writes(
    batches: Iterable[WatchBatch], acked: Mapping[str, tuple[bytes, str]], started_after: Version
) -> list[str]:
    """Acknowledged puts (key -> (value, version token)) past `started_after` the watch never told."""
    told = {(e.key, e.version): e.value for e in events_of(batches) if e.type == "put"}
    found = []
    for key, (value, token) in sorted(acked.items()):
        version = Version.parse(token)
        if version <= started_after:
            continue
        if (key, version) not in told:
            found.append(f"{key} at {version} was acknowledged but never told")
        elif told[(key, version)] != value:
            found.append(f"{key} at {version}: told {told[(key, version)]!r}, written {value!r}")
    return found


class Coverage:
    """The versions of one shard a watcher was there for: runs of (start, end], told whole.

    A run is one watch: it begins where the watch was opened from (`begin(after)`; None: from the
    serving replica's present, i.e. its first progress) and ends at the last progress told. A
    watch the cluster ended (COMPACTED) and the watcher opened anew starts a new run: what lies
    between two runs was not the watcher's to see.
    """

    def __init__(self) -> None:
        self.runs: list[list[Version | None]] = []

    def begin(self, after: Version | None) -> None:
        self.runs.append([after, after])

    def told(self, progress: Version) -> None:
        if not self.runs:
            self.begin(None)
        run = self.runs[-1]
        if run[0] is None:
            run[0] = progress
        run[1] = progress if run[1] is None else max(run[1], progress)

    def covers(self, version: Version) -> bool:
        return any(s is not None and e is not None and s < version <= e for s, e in self.runs)

    @property
    def end(self) -> Version | None:
        return self.runs[-1][1] if self.runs else None


RunKey = tuple[int | None, int]  # (shard, the number of the watch): one stream of batches


def watch_problems(
    runs: Mapping[RunKey, list[WatchBatch]],
    coverage: Mapping[int | None, Coverage],
    history: Iterable[Op],
    judged: Callable[[str], bool] = lambda key: True,
) -> list[str]:
    """Everything wrong with what a watcher was told, against the clients' history.

    Every run must be a good stream (`stream_violations`); a put or cas told for a `judged` key
    (whose written values are unique strings) must be a write some client made, told once per
    watch, at the version the cluster acknowledged for it; and every acknowledged write of a
    judged key at a version its shard's coverage spans must have been told.
    """
    found = [
        f"shard {shard}, watch {run}: {problem}"
        for (shard, run), batches in sorted(runs.items(), key=lambda item: (item[0][0] or 0, item[0][1]))
        for problem in stream_violations(batches)
    ]
    written: dict[str, Op] = {}
    for op in history:
        value = written_value(op)
        if value is not None and judged(op.key) and op.outcome in ("ok", "unknown"):
            written[value] = op
    told: set[str] = set()
    for batches in runs.values():
        told_in_run: set[str] = set()
        for event in (e for batch in batches for e in batch.events):
            if event.type != "put" or event.value is None or not judged(event.key):
                continue
            value = event.value.decode()
            if value in told_in_run:  # a new watch (after COMPACTED) may tell it again
                found.append(f"{event.key}={value} told twice in one watch ({event.version})")
            told_in_run.add(value)
            told.add(value)
            writer = written.get(value)
            if writer is None:
                found.append(f"{event.key}={value} at {event.version} was told but never written")
                continue
            acked = acknowledged_at(writer)
            if acked is not None and acked != event.version:
                found.append(f"{event.key}={value} told at {event.version}, acknowledged at {acked}")
    for value, op in written.items():
        acked = acknowledged_at(op)
        if acked is None or value in told:
            continue
        spans = coverage.get(op.shard)
        if spans is not None and spans.covers(acked):
            found.append(f"{op.key}={value} acknowledged at {acked} in shard {op.shard}, never told")
    return found


def written_value(op: Op) -> str | None:
    """The value a put or cas wrote (or may have), if it is one."""
    if op.kind == "put":
        return op.input if isinstance(op.input, str) else None
    if op.kind == "cas" and isinstance(op.input, tuple):
        new = op.input[1]
        return new if isinstance(new, str) else None
    return None


def acknowledged_at(op: Op) -> Version | None:
    """The version a write was acknowledged at (None: not acknowledged, refused, or answered
    after a move, whose version is the move's)."""
    if op.outcome != "ok" or op.version is None:
        return None
    if op.kind == "cas" and op.output is not True:
        return None
    return Version.parse(op.version)
