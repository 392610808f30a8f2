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
`ttl_ms / 8` ahead), examines at most `SWEEP_BATCH` sessions and deletes at most
`sweep_results` (default `SWEEP_RESULTS`) cached results per entry, and resumes from a
cursor on the next entry. Its position is a record (kind `e`) written in the same WriteSet,
so replicas that split the log into different batches, or restarted, still sweep alike.

Layout (records.py): a small header per session (kind `c`) and one record per cached result
(kind `r`, by seq), so a write costs O(1) in the number of cached results: the header, a
point get for a retry, point deletes of the seqs the ack releases (walked from `low` up to the
floor or `top`, whichever comes first: nothing is cached above `top`; without a lookup when
`count` says every seq from `low` to `top` holds a result), and one point delete when the cap
is exceeded. Where seqs are sparse (a client skipping seqs, a large ack jump, a lowered
cap) the walk falls back to one bounded scan of the session's own range. Every choice depends
only on the records, never on the batching.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Final

from confmand.kv.commands import Session
from confmand.kv.overlay import OverlayStore
from confmand.kv.records import (
    RESULT,
    SESSION,
    SWEEP,
    SWEEP_KEY,
    SessionHeader,
    SweepState,
    decode_result,
    encode_result,
    result_bound,
    result_key,
    result_prefix,
)
from confmand.kv.results import SESSION_EXPIRED, WriteResult
from confmand.protocol.types import Version

SWEEP_BATCH: Final = 256
SWEEP_RESULTS: Final = 4096  # cached results the sweep deletes per entry, at most
HLC_LOGICAL_BITS: Final = 16
_PROBE: Final = 4  # point gets tried before a walk over the seqs falls back to a scan


def hlc_ms(hlc: int) -> int:
    """The physical time of an HLC stamp, in ms."""
    return hlc >> HLC_LOGICAL_BITS


class SessionTable:
    """The sessions of one batch, read and written through its overlay."""

    __slots__ = ("_dirty", "_max_results", "_overlay", "_sweep", "_sweep_results", "_ttl_ms")

    def __init__(
        self, overlay: OverlayStore, ttl_ms: int, max_results: int, sweep_results: int = SWEEP_RESULTS
    ) -> None:
        self._overlay = overlay
        self._ttl_ms = ttl_ms
        self._max_results = max_results
        self._sweep_results = sweep_results
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
        client_id = session.client_id
        raw = self._overlay.get(SESSION, client_id)
        header = None if raw is None else SessionHeader.decode(raw)
        if header is not None and self._expired(header, hlc_ms(hlc)):
            # Idle too long: a fresh session, whether or not swept yet; its cache goes now.
            self._delete_results(client_id, None)
            header = None
        if header is not None:
            cached = (
                None
                if session.seq > header.top
                else self._overlay.get(RESULT, result_key(client_id, session.seq))
            )
            if cached is not None:
                return decode_result(cached)
            if session.seq < header.floor:
                return WriteResult.failure(
                    op,
                    version,
                    SESSION_EXPIRED,
                    f"seq {session.seq} is below {header.floor}, the oldest this session remembers",
                )
        result = apply()
        self._overlay.put(SESSION, client_id, self._remember(header, session, hlc, result).encode())
        return result

    def _remember(
        self, header: SessionHeader | None, session: Session, hlc: int, result: WriteResult
    ) -> SessionHeader:
        """Cache `result`, forget what the ack releases, respect the cap; the new header."""
        client_id = session.client_id
        if header is None:
            floor, count, low, last_hlc = max(1, session.ack), 0, max(1, session.ack), hlc
            top = session.seq
        else:
            floor, count, low = max(header.floor, session.ack), header.count, header.low
            last_hlc, top = max(hlc, header.last_hlc), max(session.seq, header.top)
            if floor > low and count:  # results below the (raised) floor are forgotten
                count -= self._release(client_id, low, floor, header.top, count)
            low = floor
        # Written after the ack's deletes: an ack above its own seq must not delete this result.
        self._overlay.put(RESULT, result_key(client_id, session.seq), encode_result(result))
        low = min(low, session.seq)  # an ack above its own seq: this result stays till next time
        count += 1
        excess = count - self._max_results
        if excess > 0:
            dropped = self._lowest(client_id, low, excess)
            for seq in dropped:
                self._overlay.delete(RESULT, result_key(client_id, seq))
            count -= len(dropped)
            low = dropped[-1] + 1
            floor = max(floor, low)
        return SessionHeader(last_hlc, floor, count, min(low, floor), top)

    def _release(self, client_id: bytes, low: int, floor: int, top: int, count: int) -> int:
        """Delete the session's results below `floor`, all `count` of them lying in [low, top]; how many.

        Nothing is cached above `top`, so the walk stops there: a client writing to many shards
        leaves each one sparse seqs, and the range up to `floor` alone would need a scan.
        """
        stop = min(floor, top + 1)
        if top + 1 - low != count:
            return self._delete_below(client_id, low, stop, count)
        # Every seq in [low, top] holds a result, so no lookup: the common write, whose ack
        # releases the seq before it.
        for seq in range(low, stop):
            self._overlay.delete(RESULT, result_key(client_id, seq))
        return max(0, stop - low)

    def _delete_below(self, client_id: bytes, low: int, floor: int, count: int) -> int:
        """Delete the session's results with `low <= seq < floor`; how many there were (looked up)."""
        if floor - low <= count + _PROBE:
            found = 0
            for seq in range(low, floor):
                key = result_key(client_id, seq)
                if self._overlay.get(RESULT, key) is not None:
                    self._overlay.delete(RESULT, key)
                    found += 1
            return found
        stop = result_bound(client_id, floor)
        keys = [k for k, _ in self._overlay.scan(RESULT, result_key(client_id, low), stop)]
        for key in keys:
            self._overlay.delete(RESULT, key)
        return len(keys)

    def _lowest(self, client_id: bytes, low: int, n: int) -> list[int]:
        """The `n` lowest seqs >= `low` with a cached result (the caller knows there are n)."""
        found: list[int] = []
        for seq in range(low, low + _PROBE):
            if len(found) == n:
                return found
            if self._overlay.get(RESULT, result_key(client_id, seq)) is not None:
                found.append(seq)
        start = result_bound(client_id, low + _PROBE)
        stop = result_bound(client_id, 1 << 64)
        width = len(result_prefix(client_id))
        for key, _ in itertools.islice(self._overlay.scan(RESULT, start, stop), n - len(found)):
            found.append(int.from_bytes(key[width:], "big"))
        return found

    def _delete_results(self, client_id: bytes, budget: int | None) -> int | None:
        """Delete the session's results, all or up to `budget`; how many, or None if some remain."""
        start, stop = result_bound(client_id, 0), result_bound(client_id, 1 << 64)
        window = self._overlay.scan(RESULT, start, stop)
        keys = [k for k, _ in (window if budget is None else itertools.islice(window, budget + 1))]
        done = budget is None or len(keys) <= budget
        for key in keys if done else keys[:budget]:
            self._overlay.delete(RESULT, key)
        return len(keys) if done else None

    def _expired(self, header: SessionHeader, now_ms: int) -> bool:
        return now_ms - hlc_ms(header.last_hlc) > self._ttl_ms

    def sweep(self, now_ms: int) -> None:
        """Delete up to SWEEP_BATCH expired sessions if a sweep is due or under way."""
        state = self._sweep
        if state.cursor is None and now_ms < state.next_sweep_ms:
            return
        start = b"" if state.cursor is None else state.cursor
        window = list(itertools.islice(self._overlay.scan(SESSION, start), SWEEP_BATCH + 1))
        budget = self._sweep_results
        for client_id, raw in window[:SWEEP_BATCH]:
            header = SessionHeader.decode(raw)
            if not self._expired(header, now_ms):
                continue
            deleted = self._delete_results(client_id, budget)
            if deleted is None:  # out of budget: the next entry resumes at this session
                self._sweep = SweepState(state.next_sweep_ms, cursor=client_id)
                self._dirty = True
                return
            budget -= deleted
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
