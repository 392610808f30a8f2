"""Reads of the past: a key, or the keys under a prefix, as they were at a version of the shard.

They come from the history the state machine keeps: each key's newest `history_limit` changes
(records.py), listed in its data record, or in its history header while it is deleted. The
state of a key at version V is its newest retained change at or below V: a put's value, or
absent after a delete. When every retained change of the key is above V, the key did not exist
at V if nothing of its history was ever trimmed (fewer than `history_limit` changes kept), and
otherwise the answer is gone: `HistoryTrimmed`, which the server answers COMPACTED. (A key
whose history limit was raised after changes were trimmed may be said absent where it had a
value: the limit in force is all a replica knows of what was trimmed.)

Every replica keeps the same history, so a past read is the same on each, and a rollback
(state_machine.py) that reads the past while applying is deterministic.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from confmand.kv.queries import QueryError, prefix_end
from confmand.kv.records import (
    DATA,
    HISTORY,
    HISTORY_HEADER,
    DataRecord,
    data_key,
    decode_history,
    decode_history_header,
    history_key,
)
from confmand.kv.store import KVStore
from confmand.protocol.types import HistoryEntry, Version

# Keys a past listing looks at per page, present at the version or not: a prefix of many keys
# deleted long ago must not stall the node's loop (the page then says `more`).
PAST_SCAN_LIMIT: Final = 10_000


class HistoryTrimmed(Exception):
    """The key's changes at or below the version asked for are no longer kept."""

    def __init__(self, key: str, at: Version, oldest: Version) -> None:
        super().__init__(
            f"the history of {key!r} at {at} is trimmed: its oldest kept version is {oldest} "
            "(limits.history_limit)"
        )
        self.key = key
        self.oldest = oldest


@dataclass(frozen=True, slots=True)
class PastValue:
    key: str
    value: bytes | None  # None: absent at that version
    version: Version | None  # the key's mod version in force then (None: absent)

    def to_item(self) -> dict[str, object]:
        return {
            "key": self.key,
            "value": self.value,
            "version": None if self.version is None else str(self.version),
        }


def key_at(store: KVStore, key: str, at: Version, history_limit: int) -> PastValue:
    """`key` as it was once the entry at `at.index` was applied."""
    if not isinstance(key, str) or not key or "\x00" in key:
        raise QueryError(f"key: want a non-empty str without NUL, got {key!r}")
    dkey = data_key(key)
    raw = store.get(DATA, dkey)
    if raw is not None:
        kept = DataRecord.decode(raw).history
    else:
        header = store.get(HISTORY_HEADER, dkey)
        kept = () if header is None else decode_history_header(header)
    return _resolve(store, key, kept, at, history_limit, exists=raw is not None)


def _resolve(
    store: KVStore, key: str, kept: tuple[int, ...], at: Version, history_limit: int, *, exists: bool
) -> PastValue:
    pos = bisect.bisect_right(kept, at.index)
    if pos == 0:
        if not kept:
            if exists:  # it has a value but no history (history_limit 0): its past is unknown
                current = store.get(DATA, data_key(key))
                assert current is not None
                raise HistoryTrimmed(key, at, DataRecord.decode(current).mod_version)
            return PastValue(key, None, None)  # never written (or every trace of it is gone)
        if len(kept) < history_limit:
            return PastValue(key, None, None)  # created after `at`, nothing of it trimmed
        raise HistoryTrimmed(key, at, _entry(store, key, kept[0]).version)
    entry = _entry(store, key, kept[pos - 1])
    if entry.op == "delete" or entry.value is None:
        return PastValue(key, None, None)
    return PastValue(key, entry.value, entry.version)


def _entry(store: KVStore, key: str, index: int) -> HistoryEntry:
    raw = store.get(HISTORY, history_key(key, index))
    if raw is None:
        raise AssertionError(f"{key!r}: history {index} is listed but not stored")  # a corrupt store
    return decode_history(raw)


@dataclass(frozen=True, slots=True)
class PastPage:
    items: tuple[PastValue, ...]
    more: bool
    next: str | None

    def to_reply(self) -> dict[str, object]:
        return {"items": [i.to_item() for i in self.items], "more": self.more, "next": self.next}


def list_at(
    store: KVStore, prefix: str, *, after: str | None, limit: int, at: Version, history_limit: int
) -> PastPage:
    """The keys under `prefix` that existed at `at`, with their values then, in key order, paged."""
    if not isinstance(prefix, str) or "\x00" in prefix:
        raise QueryError(f"prefix: want a str without NUL, got {prefix!r}")
    start = prefix.encode() if prefix else b""
    if after:
        start = max(start, after.encode() + b"\x00")
    stop = prefix_end(data_key(prefix)) if prefix else None
    items: list[PastValue] = []
    last: str | None = None
    for looked, (key_bytes, exists) in enumerate(_keys_with_history(store, start, stop)):
        if len(items) == limit or looked == PAST_SCAN_LIMIT:
            return PastPage(tuple(items), True, last)
        key = key_bytes.decode("utf-8")
        last = key
        raw = store.get(DATA, key_bytes) if exists else store.get(HISTORY_HEADER, key_bytes)
        assert raw is not None
        kept = DataRecord.decode(raw).history if exists else decode_history_header(raw)
        past = _resolve(store, key, kept, at, history_limit, exists=exists)
        if past.value is not None:
            items.append(past)
    return PastPage(tuple(items), False, None)


def _keys_with_history(store: KVStore, start: bytes, stop: bytes | None) -> Iterator[tuple[bytes, bool]]:
    """Every key with a data record or a history header in [start, stop), in key order, and
    whether it exists now (a key has one of the two, never both)."""
    live = ((k, True) for k, _ in store.scan(DATA, start, stop))
    gone = ((k, False) for k, _ in store.scan(HISTORY_HEADER, start, stop))
    return heapq.merge(live, gone, key=lambda pair: pair[0])
