"""What `NodeStorage.open` checks before it trusts a data dir, and the shard states it loads.

Refusals (each a `DataDirError` naming the dir and the problem):
- the path is a file, or a dir holding files but no LevelDB (`CURRENT`);
- a LevelDB holding keys but no Confman format record (someone else's DB);
- another format version, cluster id or node id;
- a Raft record (hard state, log entry, snapshot meta or applied index) whose
  checksum or shape is wrong;
- a log with a gap, or one that starts after its snapshot + 1.

Loading reads every Raft record once (the log is bounded by compaction), so
that a damaged record is found at start, not when a follower needs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import plyvel

from confmand.storage.dbio import map_io_error
from confmand.storage.errors import DataDirError
from confmand.storage.keys import (
    APPLIED,
    HARD_STATE,
    LOG_ENTRY,
    META,
    META_CLUSTER,
    META_FORMAT,
    META_NODE,
    META_SHAPE,
    SNAPSHOT_META,
    describe_key,
    log_index_of,
    prefix_end,
    shard_of,
)
from confmand.storage.records import (
    RecordError,
    decode_applied,
    decode_entry,
    decode_hard_state,
    decode_snapshot_meta,
    seal,
    unseal,
)
from confmand.storage.state import ShardState

# 2: shards' tombstones (kind `t`, tombstones.py). A version 1 dir holds none and is upgraded in
# place when opened; a confmand that reads only 1 refuses a version 2 dir, where it would take a
# tombstone for a shard with no state and write that shard's entry 1 again.
# 3: snapshots are meta only (shard_storage.py, "Snapshots"). A version 1 or 2 dir may hold a
# snapshot data record (kind `n`) that is no longer read, and is deleted with the next snapshot;
# a confmand that reads only 2 refuses a version 3 dir, whose snapshot meta has no data to check.
FORMAT_VERSION = 3
UPGRADABLE_FORMATS = frozenset({1, 2})


def check_dir_before_open(path: Path) -> bool:
    """Whether a new LevelDB may be created here (missing or empty dir); refuses foreign content."""
    if path.exists() and not path.is_dir():
        raise DataDirError(f"data dir {path} is not a directory")
    if not path.exists():
        return True
    names = sorted(p.name for p in path.iterdir())
    if not names:
        return True
    if "CURRENT" not in names:
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise DataDirError(f"data dir {path} holds files but no LevelDB (no CURRENT file): {shown}")
    return False


def check_or_write_meta(db: Any, path: Path, cluster_id: str, node_id: int) -> None:
    """A fresh (keyless) DB gets the node metadata; an existing one must match it."""
    wanted: dict[bytes, object] = {META_FORMAT: FORMAT_VERSION, META_CLUSTER: cluster_id, META_NODE: node_id}
    found = {key: db.get(key) for key in wanted}
    if found[META_FORMAT] is None:
        if _has_any_key(db):
            raise DataDirError(
                f"data dir {path} holds a LevelDB that is not a Confman data dir (no format record)"
            )
        wb = db.write_batch(sync=True)
        for key, obj in wanted.items():
            wb.put(key, seal(key, obj))
        wb.write()
        return
    names = {META_FORMAT: "format version", META_CLUSTER: "cluster id", META_NODE: "node id"}
    for key, want in wanted.items():
        raw = found[key]
        if raw is None:
            raise DataDirError(f"data dir {path}: the {names[key]} record is missing")
        try:
            have = unseal(key, raw)
        except RecordError as exc:
            raise DataDirError(f"data dir {path}: {describe_key(key)} is corrupt: {exc}") from exc
        if key == META_FORMAT and have in UPGRADABLE_FORMATS:
            wb = db.write_batch(sync=True)
            wb.put(key, seal(key, FORMAT_VERSION))
            wb.write()
            continue
        if key == META_FORMAT and have != FORMAT_VERSION:
            raise DataDirError(
                f"data dir {path} has format version {have!r}; this confmand reads "
                f"{', '.join(map(str, sorted({*UPGRADABLE_FORMATS, FORMAT_VERSION})))}"
            )
        if have != want:
            raise DataDirError(f"data dir {path} belongs to {names[key]} {have!r}, not {want!r}")


def check_or_write_shape(db: Any, path: Path, shape: Mapping[str, object]) -> None:
    """The cluster shape this dir was created in must be `shape`; a dir without one records it.

    A dir from before shapes were recorded held one data shard: it records the shape it is
    first opened with, and a later change of shape is refused like any other.
    """
    raw = db.get(META_SHAPE)
    if raw is None:
        wb = db.write_batch(sync=True)
        wb.put(META_SHAPE, seal(META_SHAPE, dict(shape)))
        wb.write()
        return
    try:
        have = unseal(META_SHAPE, raw)
    except RecordError as exc:
        raise DataDirError(f"data dir {path}: {describe_key(META_SHAPE)} is corrupt: {exc}") from exc
    if not isinstance(have, dict):
        raise DataDirError(f"data dir {path}: {describe_key(META_SHAPE)} is not a map")
    differ = [
        f"{name} = {have.get(name)!r} (the config says {want!r})"
        for name, want in shape.items()
        if have.get(name) != want
    ]
    if differ:
        raise DataDirError(
            f"data dir {path} belongs to a cluster created with {'; '.join(differ)}: the [cluster] "
            "section and the first-membership [[peers]] are fixed when a cluster is created; "
            "start this node with the config it was created with"
        )


def _has_any_key(db: Any) -> bool:
    with db.iterator(include_value=False) as it:
        return next(it, None) is not None


def load_shard_states(db: Any, path: Path, skip: frozenset[int] = frozenset()) -> dict[int, ShardState]:
    """Every shard's cached Raft state, each record verified; DataDirError on the first bad one.

    Shards in `skip` (being deleted: tombstones.py) are passed over: some of their records are gone.
    """
    try:
        states: dict[int, ShardState] = {}
        for key, value in _items(db, HARD_STATE, skip):
            sid = shard_of(key)
            states[sid] = replace(states.get(sid, ShardState()), hard_state=_decode(path, key, value))
        for key, value in _items(db, APPLIED, skip):
            sid = shard_of(key)
            states[sid] = replace(states.get(sid, ShardState()), applied=_decode(path, key, value))
        for key, value in _items(db, SNAPSHOT_META, skip):
            sid = shard_of(key)
            stored = _decode(path, key, value)
            states[sid] = replace(states.get(sid, ShardState()), snapshot=stored)
        for sid in list(states):
            states[sid] = states[sid].with_empty_log()
        _load_logs(db, path, states, skip)
        return states
    except plyvel.Error as exc:
        raise map_io_error(exc, path, "reading the Raft records") from exc


def _load_logs(db: Any, path: Path, states: dict[int, ShardState], skip: frozenset[int]) -> None:
    expected: dict[int, int] = {}  # shard -> the index its next entry must have
    for key, value in _items(db, LOG_ENTRY, skip):
        sid = shard_of(key)
        index = log_index_of(key)
        _decode(path, key, value)
        if sid not in expected:
            state = states.get(sid, ShardState()).with_empty_log()
            if index > state.snapshot_index + 1:
                raise DataDirError(
                    f"data dir {path}: the log of shard {sid} starts at {index}, "
                    f"after its snapshot at {state.snapshot_index} + 1: entries are missing"
                )
            states[sid] = replace(state, log_first=index, log_last=index)
        elif index != expected[sid]:
            raise DataDirError(
                f"data dir {path}: the log of shard {sid} has a gap: entry {expected[sid]} is missing"
            )
        else:
            states[sid] = replace(states[sid], log_last=index)
        expected[sid] = index + 1


def _items(db: Any, kind: bytes, skip: frozenset[int]) -> Any:
    items = db.iterator(start=kind, stop=prefix_end(kind), verify_checksums=True)
    return ((k, v) for k, v in items if shard_of(k) not in skip) if skip else items


_DECODERS = {
    HARD_STATE: decode_hard_state,
    APPLIED: decode_applied,
    SNAPSHOT_META: decode_snapshot_meta,
    LOG_ENTRY: decode_entry,
}


def _decode(path: Path, key: bytes, value: bytes) -> Any:
    expected_len = 13 if key[:1] == LOG_ENTRY else 5
    if len(key) != expected_len or key[:1] == META:
        raise DataDirError(f"data dir {path}: malformed key {key.hex()} among the Raft records")
    try:
        return _DECODERS[key[:1]](key, value)
    except RecordError as exc:
        raise DataDirError(f"data dir {path}: {describe_key(key)} is corrupt: {exc}") from exc
