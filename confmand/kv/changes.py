"""`KeyChanges`: how one entry changes keys, keeping data, history and audit records in step.

Every change of a key made by an entry writes, through the overlay:
- the data record (or its deletion);
- a history record at `key + NUL + entry index`, then trims the key's history to the newest
  `history_limit` versions;
- an audit record at `hlc + index + ordinal`, the ordinal counting the entry's changes, so a txn
  touching three keys leaves three records in the order it made them.

History is trimmed by a reverse scan of the key's own range through the overlay, newest first,
deleting whatever lies beyond the limit. Because every write trims, a key holds at most
`history_limit + 1` history records when the scan runs, so the scan is bounded (after lowering
the limit, the first write of a key trims its excess once). This needs no second record
listing the retained indexes that would have to be kept consistent with the history itself,
and a scan of one key's contiguous range is one seek in LevelDB.

Two changes of one key by one entry (a txn) share a version: the history record of that
version is the key's state after the entry; the audit log keeps both changes.
"""

from __future__ import annotations

from typing import Final

from confmand.kv.overlay import OverlayStore
from confmand.kv.records import (
    AUDIT,
    DATA,
    HISTORY,
    AuditRecord,
    DataRecord,
    HistoryRecord,
    audit_key,
    data_key,
    history_key,
    history_range,
)
from confmand.kv.version import Version

MAX_CHANGES_PER_ENTRY: Final = 2**16  # the audit ordinal is 2 bytes


class KeyChanges:
    """The changes of one entry at `version`, stamped `hlc` and `principal`, audited as `op`."""

    __slots__ = ("_history_limit", "_hlc", "_op", "_ordinal", "_overlay", "_principal", "_version")

    def __init__(
        self,
        overlay: OverlayStore,
        *,
        history_limit: int,
        version: Version,
        hlc: int,
        principal: str,
        op: str,
    ) -> None:
        self._overlay = overlay
        self._history_limit = history_limit
        self._version = version
        self._hlc = hlc
        self._principal = principal
        self._op = op
        self._ordinal = 0

    def read(self, key: str) -> DataRecord | None:
        raw = self._overlay.get(DATA, data_key(key))
        return None if raw is None else DataRecord.decode(raw)

    def put(self, key: str, value: bytes) -> Version | None:
        """Create or overwrite `key`; returns its previous mod version (None if it was absent)."""
        old = self.read(key)
        new = DataRecord(
            value=value,
            create_version=self._version if old is None else old.create_version,
            mod_version=self._version,
            changes=1 if old is None else old.changes + 1,
        )
        self._overlay.put(DATA, data_key(key), new.encode())
        prev = None if old is None else old.mod_version
        self._record(key, "put", value, prev, self._version)
        return prev

    def delete(self, key: str) -> Version | None:
        """Delete `key`; returns its previous mod version, or None (and writes nothing) if absent."""
        old = self.read(key)
        if old is None:
            return None
        self._overlay.delete(DATA, data_key(key))
        self._record(key, "delete", None, old.mod_version, None)
        return old.mod_version

    def _record(
        self, key: str, op: str, value: bytes | None, prev: Version | None, new: Version | None
    ) -> None:
        history = HistoryRecord(self._version, op, value, self._hlc, self._principal)
        self._overlay.put(HISTORY, history_key(key, self._version.index), history.encode())
        self._trim_history(key)
        if self._ordinal >= MAX_CHANGES_PER_ENTRY:
            # The codec caps a txn branch at 65,535 ops, so this is a bug, not a bad input.
            raise AssertionError(f"more than {MAX_CHANGES_PER_ENTRY} changes in one entry")
        audit = AuditRecord(self._hlc, self._version, self._principal, self._op, key, prev, new)
        self._overlay.put(AUDIT, audit_key(self._hlc, self._version.index, self._ordinal), audit.encode())
        self._ordinal += 1

    def _trim_history(self, key: str) -> None:
        start, stop = history_range(key)
        newest_first = [k for k, _ in self._overlay.scan(HISTORY, start, stop, reverse=True)]
        for stale in newest_first[self._history_limit :]:
            self._overlay.delete(HISTORY, stale)
