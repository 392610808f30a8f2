"""`SessionTable`: exactly-once writes, and the deterministic expiry of idle sessions.

A command carrying `Session(client_id, seq, ack)` is answered so:
1. a cached result for `seq`: that result again, and nothing is written;
2. `seq` below the session's floor (acknowledged by the client, or its cached result dropped
   by the cap): SESSION_EXPIRED, nothing written, because it may already have been applied;
3. otherwise the op is applied, its result cached under `seq`, results below `ack` forgotten
   (the floor rises to `ack`), and if more than `max_results` remain the oldest are dropped
   (the floor rises past them).

Time is the command's HLC physical part (`hlc >> 16`, in ms), which the entry carries, so
every replica ages sessions alike. A session unused for more than `ttl_ms` is expired: when
next used it starts afresh (its cache is gone), whether or not a sweep has deleted it yet.
The sweep only reclaims space: it starts when the HLC time reaches `next_sweep_ms` (then set
`ttl_ms / 8` ahead), examines at most `SWEEP_BATCH` sessions per entry, and resumes from a
cursor on the next entry. Its position is a record (kind `e`) written in the same WriteSet,
so replicas that split the log into different batches, or restarted, still sweep alike.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable
from typing import Final

from confmand.kv.commands import Session
from confmand.kv.overlay import OverlayStore
from confmand.kv.records import SESSION, SWEEP, SWEEP_KEY, SessionRecord, SweepState
from confmand.kv.results import SESSION_EXPIRED, WriteResult
from confmand.kv.version import Version

SWEEP_BATCH: Final = 256
HLC_LOGICAL_BITS: Final = 16


def hlc_ms(hlc: int) -> int:
    """The physical time of an HLC stamp, in ms."""
    return hlc >> HLC_LOGICAL_BITS


class SessionTable:
    """The sessions of one batch, read and written through its overlay."""

    __slots__ = ("_dirty", "_max_results", "_overlay", "_sweep", "_ttl_ms")

    def __init__(self, overlay: OverlayStore, ttl_ms: int, max_results: int) -> None:
        self._overlay = overlay
        self._ttl_ms = ttl_ms
        self._max_results = max_results
        raw = overlay.get(SWEEP, SWEEP_KEY)
        self._sweep = SweepState() if raw is None else SweepState.decode(raw)
        self._dirty = False

    def run(
        self,
        session: Session,
        hlc: int,
        op: str,
        version: Version,
        apply: Callable[[], WriteResult],
    ) -> WriteResult:
        """The result of the op for this session's `seq`: cached, refused, or `apply()`'d once."""
        raw = self._overlay.get(SESSION, session.client_id)
        record = None if raw is None else SessionRecord.decode(raw)
        if record is not None and self._expired(record, hlc_ms(hlc)):
            record = None  # idle too long: a fresh session, whether or not swept yet
        if record is not None:
            cached = record.cached(session.seq)
            if cached is not None:
                return cached
            if session.seq < record.floor:
                return WriteResult.failure(
                    op,
                    version,
                    SESSION_EXPIRED,
                    f"seq {session.seq} is below {record.floor}, the oldest this session remembers",
                )
        result = apply()
        self._overlay.put(SESSION, session.client_id, self._remember(record, session, hlc, result).encode())
        return result

    def _remember(
        self, record: SessionRecord | None, session: Session, hlc: int, result: WriteResult
    ) -> SessionRecord:
        floor = max(1 if record is None else record.floor, session.ack)
        results = [] if record is None else [r for r in record.results if r[0] >= floor]
        bisect.insort(results, (session.seq, result.to_wire()), key=lambda r: r[0])
        excess = len(results) - self._max_results
        if excess > 0:
            floor = max(floor, results[excess - 1][0] + 1)
            results = results[excess:]
        last_hlc = hlc if record is None else max(hlc, record.last_hlc)
        return SessionRecord(last_hlc=last_hlc, floor=floor, results=tuple(results))

    def _expired(self, record: SessionRecord, now_ms: int) -> bool:
        return now_ms - hlc_ms(record.last_hlc) > self._ttl_ms

    def sweep(self, now_ms: int) -> None:
        """Delete up to SWEEP_BATCH expired sessions if a sweep is due or under way."""
        state = self._sweep
        if state.cursor is None and now_ms < state.next_sweep_ms:
            return
        start = b"" if state.cursor is None else state.cursor
        window = list(itertools.islice(self._overlay.scan(SESSION, start), SWEEP_BATCH + 1))
        for client_id, raw in window[:SWEEP_BATCH]:
            if self._expired(SessionRecord.decode(raw), now_ms):
                self._overlay.delete(SESSION, client_id)
        if len(window) > SWEEP_BATCH:
            self._sweep = SweepState(state.next_sweep_ms, cursor=window[SWEEP_BATCH][0])
        else:
            self._sweep = SweepState(next_sweep_ms=now_ms + max(1, self._ttl_ms // 8), cursor=None)
        self._dirty = True

    def flush(self) -> None:
        """Write the sweep position if it moved during the batch."""
        if self._dirty:
            self._overlay.put(SWEEP, SWEEP_KEY, self._sweep.encode())
            self._dirty = False
