"""Opening the LevelDB and turning plyvel's exceptions into storage's typed errors.

Why every failed write reopens the DB (see docs/storage.md, "Full disk"):
LevelDB records a failed background compaction or a failed log sync as a
*background error* and then fails every later write until it is reopened;
and a log append that failed half-way leaves a torn record that later
appends would follow. Reopening replays the log up to its last whole record
and starts a fresh log file, so both are cleared.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path
from typing import Any

import plyvel

from confmand.storage.errors import DataDirError, StorageError, StorageFullError

# Opens the LevelDB at a path (creating it when the flag says so). Tests pass a fake to inject faults.
DbOpener = Callable[[Path, bool], Any]


def open_plyvel(path: Path, create: bool) -> Any:
    # No block compression: Snappy cost a quarter to a third of all CPU per write (compaction
    # compresses every block again at each level) to shrink config data that is small anyway.
    # etcd's bbolt does not compress either. Blocks already compressed stay readable: LevelDB
    # records the compression of each block, so data dirs written before this open unchanged.
    return plyvel.DB(str(path), create_if_missing=create, paranoid_checks=True, compression=None)


def error_text(exc: BaseException) -> str:
    """plyvel puts LevelDB's status as bytes in args[0]; show it as text."""
    if exc.args and isinstance(exc.args[0], bytes):
        return exc.args[0].decode(errors="replace")
    return str(exc)


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    return "No space left" in error_text(exc)


def map_io_error(exc: BaseException, path: Path, action: str) -> StorageError:
    """The typed error for a failed read or write of the LevelDB at `path`."""
    text = error_text(exc)
    if is_disk_full(exc):
        return StorageFullError(f"data dir {path}: {action} failed, the disk is full ({text})")
    if isinstance(exc, plyvel.CorruptionError):
        return DataDirError(f"data dir {path}: {action} failed, LevelDB reports corruption ({text})")
    return StorageError(f"data dir {path}: {action} failed ({text})")


def map_open_error(exc: BaseException, path: Path) -> DataDirError:
    """The typed refusal for a LevelDB that would not open."""
    text = error_text(exc)
    if "LOCK" in text and ("already held" in text or "temporarily unavailable" in text):
        return DataDirError(f"data dir {path} is in use by another process (LevelDB LOCK is held: {text})")
    if isinstance(exc, plyvel.CorruptionError):
        return DataDirError(f"data dir {path}: LevelDB reports corruption ({text})")
    if is_disk_full(exc):
        return DataDirError(f"data dir {path}: cannot open, the disk is full ({text})")
    return DataDirError(f"data dir {path}: cannot open the LevelDB ({text})")


def open_db(opener: DbOpener, path: Path, create: bool) -> Any:
    try:
        return opener(path, create)
    except (plyvel.Error, OSError) as exc:
        raise map_open_error(exc, path) from exc
