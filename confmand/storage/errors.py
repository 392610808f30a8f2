"""The typed errors of node storage: every failure of the data dir or the disk is one of these.

`StorageError` is the root, so a caller can catch everything storage raises
with one clause. `DataDirError` refuses a data dir at open (or a record found
corrupt later); `StorageFullError` is a write that failed for lack of space
and may succeed once space is freed; `StorageUsageError` is a caller bug
(bad arguments, batches out of order) and is also a `ValueError`, as the
in-memory twin `MemoryStorage` raises ValueError for the same mistakes.
"""

from __future__ import annotations


class StorageError(Exception):
    """Node storage failed; the message says what and where."""


class StorageFullError(StorageError):
    """A write failed because the disk is full; retry the same batch once space is freed."""


class DataDirError(StorageError):
    """The data dir cannot be used as it is: foreign, corrupt, in use, or of another node or cluster."""


class StorageUsageError(StorageError, ValueError):
    """The caller asked for something storage must refuse (a gap in the log, batches out of order, ...)."""
