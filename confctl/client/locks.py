"""Locks and leader election on leases, with fencing tokens (docs/protocol.md, *Locks*).

A lock is a key (`locks/deploy`) that exists while its holder's lease does: `acquire` grants a
lease in the key's namespace and creates the key with it, as a `cas` that the key is absent, so
one holder at a time has it. The version that create got is the holder's **fencing token**:
versions of a key only grow, so a later holder's token is larger. A holder that stops keeping
its lease alive (a pause, a crash, a partition) loses the key when the lease runs out, whether
or not it knows. So a resource the lock guards must check the token, not trust the holder:
`fenced_put` writes a key only if the lock key is still at the writer's token, in one txn (the
lock key and the guarded keys in one namespace); a resource outside Confman compares the token
with the largest it has seen. An election is a lock whose key holds the leader's name: who leads
is `get(key)`.

The holder keeps its lease alive (`keep_alive`, every third of the TTL or so): the lock is good
for the TTL from when the last answered keepalive was *sent* (`good_until`, on this process's
monotonic clock), and no longer once that passes unanswered.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from confctl.client.errors import CasFailed, NotFound, Unavailable
from confctl.client.types import ABSENT, Compare, LeaseResult, TxnOp, TxnResult, Version, WriteResult

POLL_S = 0.1


class LockClient(Protocol):
    """The part of `Client` a lock uses."""

    def lease_grant(self, key: str, ttl_ms: int) -> LeaseResult: ...
    def lease_keepalive(self, key: str, lease: int) -> LeaseResult: ...
    def lease_revoke(self, key: str, lease: int) -> WriteResult: ...
    def cas(
        self,
        key: str,
        value: bytes | str,
        expected_version: Version | str | None = ...,
        expected_value: bytes | str | None = ...,
        *,
        lease: int = ...,
    ) -> WriteResult: ...
    def txn(
        self, compare: Sequence[Compare], success: Sequence[TxnOp], failure: Sequence[TxnOp] = ...
    ) -> TxnResult: ...


@dataclass(slots=True)
class HeldLock:
    key: str
    lease: int
    token: Version  # the lock key's version when this holder created it
    ttl_ms: int
    good_until: float  # monotonic seconds: the lease holds at least until then


class LockTimeout(Unavailable):
    """Another holder kept the lock for the whole wait."""


def acquire(
    client: LockClient, key: str, owner: bytes | str, *, ttl_ms: int = 10_000, wait_s: float | None = None
) -> HeldLock:
    """Take the lock `key`, waiting (up to `wait_s`; None: for good) while another holds it."""
    deadline = None if wait_s is None else time.monotonic() + wait_s
    sent = time.monotonic()
    lease = client.lease_grant(key, ttl_ms)
    try:
        while True:
            try:
                made = client.cas(key, owner, expected_version=ABSENT, lease=lease.lease)
            except CasFailed:
                if deadline is not None and time.monotonic() >= deadline:
                    raise LockTimeout(f"{key} stayed held for {wait_s} s") from None
                # Keep our own lease alive while waiting for the holder's to end.
                sent = keep_alive_at(client, key, lease.lease, sent, ttl_ms)
                time.sleep(POLL_S)
                continue
            return HeldLock(key, lease.lease, made.version, ttl_ms, sent + ttl_ms / 1000)
    except BaseException:
        _revoke_quietly(client, key, lease.lease)
        raise


def keep_alive(client: LockClient, held: HeldLock) -> None:
    """Restart the lock's lease; NotFound: the lock is lost (its lease ended, its key is gone)."""
    sent = time.monotonic()
    client.lease_keepalive(held.key, held.lease)
    held.good_until = sent + held.ttl_ms / 1000


def keep_alive_at(client: LockClient, key: str, lease: int, last_sent: float, ttl_ms: int) -> float:
    """A keepalive if a third of the TTL passed since `last_sent`; the send time now counted from."""
    now = time.monotonic()
    if now - last_sent < ttl_ms / 3000:
        return last_sent
    client.lease_keepalive(key, lease)
    return now


def release(client: LockClient, held: HeldLock) -> None:
    """Give the lock up: its lease is revoked, and with it the key (a lock lost already is fine)."""
    _revoke_quietly(client, held.key, held.lease)


def fenced_put(client: LockClient, lock_key: str, token: Version, key: str, value: bytes | str) -> bool:
    """Write `key` only while the lock key is still at `token` (one txn, so `key` must be of the
    lock key's namespace); whether it was written. A holder whose lock was taken over cannot."""
    data = value.encode() if isinstance(value, str) else value
    result = client.txn([Compare(lock_key, "version", version=token)], [TxnOp("put", key, data)])
    return result.succeeded


def _revoke_quietly(client: LockClient, key: str, lease: int) -> None:
    with contextlib.suppress(NotFound):  # it ran out already: its key is gone
        client.lease_revoke(key, lease)


def lock_key(name: str) -> str:
    """A lock's key: NAME as given when it names a namespace (`jobs/deploy`), else `locks/NAME`."""
    return name if "/" in name else f"locks/{name}"
