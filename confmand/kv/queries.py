"""Reads of the config state over any KVStore: get, list, history and audit, with their replies.

Queries read records only, never write, and work over the node's store, a `MemoryKVStore` or
an `OverlayStore` alike. Each result has `to_reply()` giving protocol.md's reply fields
(versions as "term:index" strings). Bad arguments raise `QueryError` (a ValueError) naming
the argument; the server maps it to INVALID_REQUEST.

Paging: `list_keys` returns at most `limit` items in key order; `more` says whether keys
remain, and `next` (the last key returned) is what the client passes as `after`.
`audit_records` returns records oldest first strictly after `after_hlc`; because the next page
is asked for by HLC alone, a page never splits the records that share one HLC (the changes of
one entry): it may run past `limit` to finish that group, bounded by the changes of one entry.
With a key `prefix` it keeps only records of keys under it, and looks at no more than
`AUDIT_SCAN_LIMIT` records per page (a rare prefix must not stall the node's loop): a page can
then hold fewer than `limit` records and still say `more`. `next_hlc` is where the next page
starts (pass it as `after_hlc`): the last record looked at, kept or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from confmand.kv.records import (
    AUDIT,
    DATA,
    HISTORY,
    DataRecord,
    data_key,
    decode_audit,
    decode_history,
    history_range,
    u64,
)
from confmand.kv.store import KVStore
from confmand.protocol.types import AuditRecord, HistoryEntry, Version

MAX_LIMIT: Final = 1000
AUDIT_SCAN_LIMIT: Final = 10_000  # audit records one page looks at, at most, when filtering by prefix
DEFAULT_LIMIT: Final = 100


class QueryError(ValueError):
    """A query argument is out of range or of the wrong type."""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    key: str
    value: bytes
    version: Version  # the mod version
    create_version: Version
    changes: int

    def to_reply(self, keys_only: bool = False) -> dict[str, object]:
        """`get`'s reply fields; with the key and without the value, a `list` item's (keys_only)."""
        reply: dict[str, object] = {} if keys_only else {"value": self.value}
        reply.update(version=str(self.version), create_version=str(self.create_version), changes=self.changes)
        return reply


@dataclass(frozen=True, slots=True)
class ListPage:
    items: tuple[KeyRecord, ...]
    more: bool
    next: str | None  # the last key of the page when `more`, else None
    keys_only: bool = False

    def to_reply(self) -> dict[str, object]:
        items = [{"key": r.key, **r.to_reply(self.keys_only)} for r in self.items]
        return {"items": items, "more": self.more, "next": self.next}


@dataclass(frozen=True, slots=True)
class AuditPage:
    records: tuple[AuditRecord, ...]
    more: bool
    next_hlc: int | None = None  # with `more`: the `after_hlc` of the next page

    def to_reply(self) -> dict[str, object]:
        return {"records": [r.to_wire() for r in self.records], "more": self.more, "next_hlc": self.next_hlc}


def history_reply(records: list[HistoryEntry]) -> dict[str, object]:
    """`history`'s reply fields for records from `key_history`."""
    return {"versions": [r.to_wire() for r in records]}


def _key(key: object, where: str = "key") -> bytes:
    if not isinstance(key, str) or not key or "\x00" in key:
        raise QueryError(f"{where}: want a non-empty str without NUL, got {key!r}")
    try:
        return key.encode("utf-8")
    except UnicodeEncodeError:
        raise QueryError(f"{where}: not encodable as UTF-8: {key!r}") from None


def _limit(limit: object) -> int:
    if type(limit) is not int or not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"limit: want an int in 1..{MAX_LIMIT}, got {limit!r}")
    return limit


def _record(key: str, raw: bytes) -> KeyRecord:
    data = DataRecord.decode(raw)
    return KeyRecord(key, data.value, data.mod_version, data.create_version, data.changes)


def get_key(store: KVStore, key: str) -> KeyRecord | None:
    """The key's current record, or None if it does not exist."""
    raw = store.get(DATA, _key(key))
    return None if raw is None else _record(key, raw)


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest byte string above every string starting with `prefix` (None: no bound)."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


def list_keys(
    store: KVStore,
    prefix: str = "",
    after: str | None = None,
    limit: int = DEFAULT_LIMIT,
    keys_only: bool = False,
) -> ListPage:
    """Keys starting with `prefix`, strictly after `after` (None or "": from the first), at most `limit`."""
    if not isinstance(prefix, str) or "\x00" in prefix:
        raise QueryError(f"prefix: want a str without NUL, got {prefix!r}")
    start = _key(prefix, "prefix") if prefix else b""
    if after:  # "" is below every key, as if absent
        start = max(start, _key(after, "after") + b"\x00")  # + NUL: the first key above `after`
    count = _limit(limit)
    items: list[KeyRecord] = []
    more = False
    for raw_key, raw in store.scan(DATA, start, prefix_end(data_key(prefix)) if prefix else None):
        if len(items) == count:
            more = True
            break
        items.append(_record(raw_key.decode("utf-8"), raw))
    return ListPage(tuple(items), more, items[-1].key if more else None, keys_only)


def key_history(store: KVStore, key: str, limit: int = DEFAULT_LIMIT) -> list[HistoryEntry]:
    """The key's retained versions, newest first (deletes included), at most `limit`."""
    _key(key)
    count = _limit(limit)
    start, stop = history_range(key)
    found: list[HistoryEntry] = []
    for _, raw in store.scan(HISTORY, start, stop, reverse=True):
        if len(found) == count:
            break
        found.append(decode_history(raw))
    return found


def audit_records(
    store: KVStore,
    after_hlc: int | None = None,
    limit: int = DEFAULT_LIMIT,
    prefix: str = "",
    scan_limit: int = AUDIT_SCAN_LIMIT,
) -> AuditPage:
    """Audit records oldest first with hlc > after_hlc, about `limit` (see the module docstring)."""
    if after_hlc is not None and (type(after_hlc) is not int or not 0 <= after_hlc < 2**64):
        raise QueryError(f"after_hlc: want an int in 0..2**64-1, got {after_hlc!r}")
    count = _limit(limit)
    if after_hlc == 2**64 - 1:
        return AuditPage((), False)
    start = b"" if after_hlc is None else u64(after_hlc + 1)
    records: list[AuditRecord] = []
    looked, last_hlc = 0, None
    for _, raw in store.scan(AUDIT, start):
        record = decode_audit(raw)
        at_boundary = last_hlc is not None and record.hlc != last_hlc
        if at_boundary and (len(records) >= count or looked >= scan_limit):
            return AuditPage(tuple(records), more=True, next_hlc=last_hlc)
        looked, last_hlc = looked + 1, record.hlc
        if record.key.startswith(prefix):
            records.append(record)
    return AuditPage(tuple(records), more=False)
