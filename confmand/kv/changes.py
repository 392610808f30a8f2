"""`KeyChanges`: how one entry changes keys, keeping data, history and audit records in step.

Every change of a key made by an entry writes, through the overlay:
- the data record (or its deletion);
- a history record at `key + NUL + entry index`, then trims the key's history to the newest
  `history_limit` versions;
- an audit record at `hlc + index + ordinal`, the ordinal counting the entry's changes, so a txn
  touching three keys leaves three records in the order it made them.

History is trimmed without a scan: the indexes of a key's retained history records live in its
data record (or, while the key is deleted, in its history header, kind `w`), so trimming is
point deletes of the indexes beyond the newest `history_limit` (after lowering the limit, the
first write of a key trims its excess at once). The list and the history records change in the
same WriteSet, so they cannot disagree; a key has a data record or a history header, never both.

Two changes of one key by one entry (a txn) share a version: the history record of that
version is the key's state after the entry; the audit log keeps both changes.
"""

from __future__ import annotations

from typing import Final

from confmand.kv.leases import ATTACHED, attachment_key
from confmand.kv.overlay import OverlayStore
from confmand.kv.records import (
    AUDIT,
    DATA,
    HISTORY,
    HISTORY_HEADER,
    DataRecord,
    audit_key,
    data_key,
    decode_history_header,
    encode_audit,
    encode_history,
    encode_history_header,
    history_key,
)
from confmand.protocol.types import AuditRecord, HistoryEntry, Version

MAX_CHANGES_PER_ENTRY: Final = 2**16  # the audit ordinal is 2 bytes


class KeyChanges:
    """The changes of one entry at `version`, stamped `hlc` and `principal`, audited as `op`."""

    __slots__ = (
        "_history_limit",
        "_hlc",
        "_op",
        "_ordinal",
        "_overlay",
        "_principal",
        "_restored",
        "_version",
    )

    def __init__(
        self,
        overlay: OverlayStore,
        *,
        history_limit: int,
        version: Version,
        hlc: int,
        principal: str,
        op: str,
        restored: Version | None = None,
    ) -> None:
        self._overlay = overlay
        self._history_limit = history_limit
        self._version = version
        self._hlc = hlc
        self._principal = principal
        self._op = op
        self._restored = restored  # a rollback: the version whose value it writes back
        self._ordinal = 0

    @property
    def store(self) -> OverlayStore:
        """What the entry reads and writes through (the lease records are written there directly)."""
        return self._overlay

    def read(self, key: str) -> DataRecord | None:
        raw = self._overlay.get(DATA, data_key(key))
        return None if raw is None else DataRecord.decode(raw)

    def put(self, key: str, value: bytes, lease: int = 0) -> Version | None:
        """Create or overwrite `key` (attached to `lease`, or to none); returns its previous mod
        version (None if it was absent). The caller checked that the lease exists."""
        dkey = data_key(key)
        old = self.read(key)
        if old is None:
            kept = self._deleted_history(dkey)
            prev = None
            new = DataRecord(value, self._version, self._version, 1, self._history(key, kept), lease)
        else:
            prev = old.mod_version
            history = self._history(key, old.history)
            new = DataRecord(value, old.create_version, self._version, old.changes + 1, history, lease)
        if old is not None and old.lease and old.lease != lease:
            self._overlay.delete(ATTACHED, attachment_key(old.lease, key))
        if lease and (old is None or old.lease != lease):
            self._overlay.put(ATTACHED, attachment_key(lease, key), b"")
        self._overlay.put(DATA, dkey, new.encode())
        self._record(key, "put", value, prev, self._version)
        return prev

    def delete(self, key: str) -> Version | None:
        """Delete `key`; returns its previous mod version, or None (and writes nothing) if absent."""
        old = self.read(key)
        if old is None:
            return None
        dkey = data_key(key)
        self._overlay.delete(DATA, dkey)
        if old.lease:
            self._overlay.delete(ATTACHED, attachment_key(old.lease, key))
        self._overlay.put(HISTORY_HEADER, dkey, encode_history_header(self._history(key, old.history)))
        self._record(key, "delete", None, old.mod_version, None)
        return old.mod_version

    def _deleted_history(self, dkey: bytes) -> tuple[int, ...]:
        """The retained history of a key about to be created; its history header goes."""
        raw = self._overlay.get(HISTORY_HEADER, dkey)
        if raw is None:
            return ()
        self._overlay.delete(HISTORY_HEADER, dkey)
        return decode_history_header(raw)

    def _history(self, key: str, kept: tuple[int, ...]) -> tuple[int, ...]:
        """`kept` plus this entry's index, trimmed to the limit; deletes the trimmed records."""
        index = self._version.index
        if not kept or kept[-1] != index:  # a txn's second change of a key shares the version
            kept = (*kept, index)
        excess = len(kept) - self._history_limit
        if excess > 0:
            for stale in kept[:excess]:
                self._overlay.delete(HISTORY, history_key(key, stale))
            kept = kept[excess:]
        return kept

    def _record(
        self, key: str, op: str, value: bytes | None, prev: Version | None, new: Version | None
    ) -> None:
        history = HistoryEntry(self._version, op, value, self._hlc, self._principal)
        self._overlay.put(HISTORY, history_key(key, self._version.index), encode_history(history))
        if self._ordinal >= MAX_CHANGES_PER_ENTRY:
            # The codec caps a txn branch at 65,535 ops, so this is a bug, not a bad input.
            raise AssertionError(f"more than {MAX_CHANGES_PER_ENTRY} changes in one entry")
        version = self._version
        self._overlay.writes.events.append((version.index, version.term, op, key, value, self._hlc))
        audit = AuditRecord(
            self._hlc, self._version, self._principal, self._op, key, prev, new, self._restored
        )
        audit_at = audit_key(self._hlc, self._version.index, self._ordinal)
        self._overlay.put(AUDIT, audit_at, encode_audit(audit))
        self._ordinal += 1
