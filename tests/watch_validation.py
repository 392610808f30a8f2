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

from collections.abc import Iterable, Mapping

from confctl.client.types import Version, WatchBatch, WatchEvent


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
