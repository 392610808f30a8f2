"""Backup files on disk, written durably and read back whole (format: confmand/protocol/backup_file.py)."""

from __future__ import annotations

import os
from pathlib import Path

from confmand.protocol.backup_file import Backup, BackupError, decode_backup, encode_backup


def write_backup(path: Path, backup: Backup) -> int:
    """Write `backup` to `path` durably (a temporary file beside it, fsync, rename), read it back
    and check it; returns its size in bytes."""
    data = encode_backup(backup)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)
    read_backup(path)
    return len(data)


def read_backup(path: Path) -> Backup:
    """The backup in `path`, checked; BackupError saying what is wrong (an unreadable file too)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BackupError(f"cannot read {path}: {exc.strerror or exc}") from None
    return decode_backup(data)
