"""Which data dir a node runs from, so that its peers can tell a node that lost its state.

A node whose data dir was wiped starts again as if new: no votes cast, no log. Under its old
node id it could then vote a second time in a term it already voted in, or help elect a leader
that lacks entries it had acknowledged, which loses committed writes. Raft's safety rests on
every node remembering its votes and log, so the cluster must refuse such a node.

Each data dir draws a random id the first time a node runs from it (`META_DIR_ID`), and every
node remembers, for each peer, the dir id the peer showed first (`META_PEER_DIRS`, written
synced before anything from that peer is used). A peer that shows another dir id later is a
node that lost its state: its messages are dropped, and it is told so (docs/daemon.md,
*A node that lost its data dir*).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from confmand.storage.errors import DataDirError
from confmand.storage.keys import META_DIR_ID, META_PEER_DIRS, describe_key
from confmand.storage.records import RecordError, seal, unseal


def load_dir_id(db: Any, path: Path) -> int | None:
    raw = db.get(META_DIR_ID)
    if raw is None:
        return None
    value = _unseal(META_DIR_ID, raw, path)
    if type(value) is not int or value <= 0:
        raise DataDirError(f"data dir {path}: {describe_key(META_DIR_ID)} is not a positive integer")
    return value


def store_dir_id(db: Any, dir_id: int) -> None:
    wb = db.write_batch(sync=True)
    wb.put(META_DIR_ID, seal(META_DIR_ID, dir_id))
    wb.write()


def load_peer_dirs(db: Any, path: Path) -> dict[int, int]:
    raw = db.get(META_PEER_DIRS)
    if raw is None:
        return {}
    value = _unseal(META_PEER_DIRS, raw, path)
    if not isinstance(value, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(type(v) is int for v in pair) for pair in value
    ):
        raise DataDirError(f"data dir {path}: {describe_key(META_PEER_DIRS)} is not a list of [node, dir id]")
    return {int(pair[0]): int(pair[1]) for pair in value}


def store_peer_dirs(db: Any, dirs: dict[int, int]) -> None:
    wb = db.write_batch(sync=True)
    wb.put(META_PEER_DIRS, seal(META_PEER_DIRS, [[n, d] for n, d in sorted(dirs.items())]))
    wb.write()


def _unseal(key: bytes, raw: bytes, path: Path) -> object:
    try:
        return unseal(key, raw)
    except RecordError as exc:
        raise DataDirError(f"data dir {path}: {describe_key(key)} is corrupt: {exc}") from exc
