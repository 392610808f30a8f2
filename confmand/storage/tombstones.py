"""Deleting a shard's replica from the node's DB, in steps, so that a crash at any point is safe.

A replica that left its shard (docs/raft.md, *Leaving a shard*) is deleted:
1. its tombstone `t|sid` is written, marked DESTROYING (synced);
2. its records of every kind go, a bounded number per step (each step synced);
3. the last step marks the tombstone DESTROYED.

Invariants:
- While the tombstone says DESTROYING, loading ignores every record of the
  shard (some are gone, so what is left may look corrupt) and the node only
  goes on deleting: a crash in between resumes at step 2 on the next start.
- Every step is synced: LevelDB does not sync an old log file when it starts a
  new one (google/leveldb#193), so a later synced write does not make an
  earlier unsynced delete durable, and a DESTROYED mark must never outlive a
  record it claims is gone.
- The tombstone stays once DESTROYED, and keeps what the replica must not
  forget: its term and vote (a replica started again without them could
  acknowledge a deposed leader, or vote twice in a term), and `removed_at`,
  the index where the committed membership left it out (started again, it
  grants no vote until it holds a membership from after that: an old one may
  still count it). It also tells the node never to write the shard's entry 1
  again (only the first replicas do, with no state; a deleted one has none).
  A replica of the shard started again later (a leader adding this node back)
  begins from that term and vote, and leaves the tombstone as it is.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Any

from confmand.storage.keys import META, TOMBSTONE, prefix_end, shard_of, shard_prefix
from confmand.storage.records import RecordError, seal, unseal


class TombstoneState(enum.IntEnum):
    DESTROYING = 1
    DESTROYED = 2


@dataclass(frozen=True, slots=True)
class Tombstone:
    state: TombstoneState
    removed_at: int  # the index where the committed membership left this node out
    term: int  # the replica's term and vote when it was deleted
    vote: int | None

    def deleted(self) -> Tombstone:
        return replace(self, state=TombstoneState.DESTROYED)


def tombstone_key(shard_id: int) -> bytes:
    return shard_prefix(TOMBSTONE, shard_id)


def encode_tombstone(shard_id: int, tombstone: Tombstone) -> bytes:
    t = tombstone
    return seal(tombstone_key(shard_id), [int(t.state), t.removed_at, t.term, t.vote])


def decode_tombstone(key: bytes, value: bytes) -> Tombstone:
    payload = unseal(key, value)
    if not (isinstance(payload, list) and len(payload) == 4):
        raise RecordError(f"a tombstone is [state, removed_at, term, vote], got {payload!r}")
    state, removed_at, term, vote = payload
    if type(state) is not int or state not in {t.value for t in TombstoneState}:
        raise RecordError(f"a tombstone's state is 1 or 2, got {state!r}")
    if not all(type(x) is int and x >= 0 for x in (removed_at, term)):
        raise RecordError(f"a tombstone's index and term are non-negative integers: {payload!r}")
    if vote is not None and (type(vote) is not int or vote < 1):
        raise RecordError(f"a tombstone's vote is a node id or nil, got {vote!r}")
    return Tombstone(TombstoneState(state), removed_at, term, vote)


def load_tombstones(db: Any) -> dict[int, Tombstone]:
    """Every shard's tombstone (RecordError on a bad one)."""
    found = {}
    with db.iterator(start=TOMBSTONE, stop=prefix_end(TOMBSTONE), verify_checksums=True) as it:
        for key, value in it:
            found[shard_of(key)] = decode_tombstone(key, value)
    return found


def shard_record_keys(db: Any, shard_id: int, limit: int) -> list[bytes]:
    """Up to `limit` keys of the shard's records, of every kind but its tombstone.

    Seeks from kind to kind (a kind byte, then the shard's prefix within it), so the cost is the
    number of kinds in the DB plus the keys returned, never a scan of other shards' records.
    """
    keys: list[bytes] = []
    target: bytes | None = b""
    with db.iterator(include_value=False) as it:
        while target is not None and len(keys) < limit:
            it.seek(target)
            key = next(it, None)
            if key is None:
                break
            kind = key[:1]
            if kind in (META, TOMBSTONE):
                target = prefix_end(kind)
                continue
            prefix = shard_prefix(kind, shard_id)
            if key < prefix:
                target = prefix
                continue
            if key.startswith(prefix):
                keys.append(key)
                for key in it:
                    if not key.startswith(prefix) or len(keys) >= limit:
                        break
                    keys.append(key)
            target = prefix_end(kind)
    return keys
