"""`Client`: the synchronous shell around the sans-I/O core, on zmq DEALER sockets.

One DEALER per endpoint, created on first use, `linger=0`. When an endpoint
stays silent for an attempt's wait, its socket is closed and a fresh one is
made on the next use, so requests queued for a dead node do not pile up and
are not delivered late. Replies whose id is not awaited are dropped. One
`Client` is for one thread (zmq sockets are not thread-safe); use one per
thread, or `AsyncClient` for concurrency.
"""

from __future__ import annotations

import builtins
import dataclasses
import math
import os
import random
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import zmq

from confctl.client import operations as ops
from confctl.client import replies
from confctl.client.cache import LastGoodCache, instead_of_failure
from confctl.client.call import MAX_REQUEST_BYTES, Call, ClientCore, Done, Fail, Send
from confctl.client.errors import (
    ConfmanError,
    InvalidArgument,
    NoQuorum,
    NotLeader,
    RequestTimeout,
    Unavailable,
)
from confctl.client.replies import Reply
from confctl.client.requests import Request
from confctl.client.routing import Backoff, Router, unique
from confctl.client.session import CLIENT_ID_BYTES, Session
from confctl.client.shards import ShardDirectory
from confctl.client.types import (
    AuditResult,
    Compare,
    Consistency,
    GetResult,
    HistoryResult,
    LeaseResult,
    ListResult,
    NodeStatus,
    PastListResult,
    PastValue,
    ShardMapResult,
    TxnOp,
    TxnResult,
    Version,
    WatchBatch,
    WriteResult,
)

T = TypeVar("T")


def new_core(
    endpoints: Sequence[str],
    timeout_s: float,
    attempt_timeout_s: float | None,
    principal: str | None,
    read_your_writes: bool,
) -> ClientCore:
    """The core both shells share; the shell supplies what the pure core may not make (random bytes)."""
    if isinstance(endpoints, str):
        raise InvalidArgument("endpoints must be a list of addresses, not one string")
    if not timeout_s > 0 or (attempt_timeout_s is not None and not attempt_timeout_s > 0):
        raise InvalidArgument("timeouts must be positive")
    session = Session(os.urandom(CLIENT_ID_BYTES), read_your_writes=read_your_writes)
    # By default a silent endpoint gets its share of the budget, so every endpoint is tried at least once.
    share_s = max(timeout_s / max(2, len(endpoints)), 0.05)
    attempt_s = attempt_timeout_s if attempt_timeout_s is not None else share_s
    return ClientCore(
        session,
        Router(unique(endpoints)),
        timeout_s=timeout_s,
        attempt_timeout_s=min(attempt_s, timeout_s),
        principal=principal,
        backoff=Backoff(rng=random.Random(os.urandom(8))),
        shards=ShardDirectory(discover=True),
    )


@dataclasses.dataclass(slots=True)
class _InFlight:
    call: Call[Any]
    send: Send
    send_at: float
    expires_at: float = 0.0
    sent: bool = False


@dataclasses.dataclass(slots=True)
class _Drive:
    """The calls one `_drive` runs: those still in flight, and the outcomes of those done."""

    flights: dict[int, _InFlight] = dataclasses.field(default_factory=dict)
    outcomes: dict[int, Any] = dataclasses.field(default_factory=dict)

    def advance(self, i: int, call: Call[Any], step: Send | Done[Any] | Fail, now: float) -> None:
        if isinstance(step, Send):
            self.flights[i] = _InFlight(call, step, send_at=now + step.delay_s)
            return
        self.flights.pop(i, None)
        self.outcomes[i] = step.value if isinstance(step, Done) else step.error


class Client:
    """A synchronous Confman client. See docs/protocol.md for the rules it follows."""

    def __init__(
        self,
        endpoints: Sequence[str],
        timeout_s: float = 5.0,
        *,
        attempt_timeout_s: float | None = None,
        principal: str | None = None,
        read_your_writes: bool = True,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        context: zmq.Context[Any] | None = None,
        cache: str | Path | None = None,
    ) -> None:
        self.core = new_core(endpoints, timeout_s, attempt_timeout_s, principal, read_your_writes)
        # The last good value of each key read, on local disk, for `get(..., allow_cached=True)`.
        self.cache = None if cache is None else LastGoodCache(cache)
        self.served_from_cache = 0
        self.core.max_request_bytes = max_request_bytes
        self._ctx: zmq.Context[Any] = context or zmq.Context.instance()
        self._sockets: dict[str, zmq.Socket[bytes]] = {}
        self._closed = False

    # ------------------------------------------------------------------ public API

    def put(self, key: str, value: bytes | str, *, lease: int = 0) -> WriteResult:
        """Write `key`; with `lease`, attached to that lease of its namespace's shard (it goes
        when the lease does)."""
        return self._run(*ops.put(key, value, lease))

    def lease_grant(self, key: str, ttl_ms: int) -> LeaseResult:
        """A lease of `ttl_ms` in the shard of `key`'s namespace (for keys of that namespace)."""
        return self._run(*ops.lease_grant(key, ttl_ms))

    def lease_keepalive(self, key: str, lease: int) -> LeaseResult:
        """Restart the lease's TTL; it holds for `ttl_ms` from when this call was sent. NotFound:
        the lease expired or was revoked (its keys are gone)."""
        return self._run(*ops.lease_keepalive(key, lease))

    def lease_revoke(self, key: str, lease: int) -> WriteResult:
        """End the lease now: its keys are deleted."""
        return self._run(*ops.lease_revoke(key, lease))

    def get(
        self,
        key: str,
        consistency: Consistency = "linearizable",
        min_version: Version | str | None = None,
        *,
        allow_cached: bool = False,
    ) -> GetResult:
        """Read `key`. With a `cache` and `allow_cached`, a read no node could answer returns the
        value last read instead, marked `meta.from_cache` with its age (cache.py)."""
        try:
            result = self._run(*ops.get(key, consistency, min_version))
        except ConfmanError as exc:
            served = instead_of_failure(self.cache, key, exc, allow_cached)  # or raises exc
            self.served_from_cache += 1
            return served
        if self.cache is not None:
            self.cache.remember(result)
        return result

    def rollback(
        self, key: str, to_version: Version | str, expected_version: Version | str | None = None
    ) -> WriteResult:
        """Write `key` back to its value at `to_version` (a delete if it was absent then), from its
        kept history; with `expected_version`, only if the key is still at that version."""
        return self._run(*ops.rollback(key, to_version, expected_version))

    def get_at(self, key: str, at_version: Version | str) -> PastValue:
        """`key` as it was at `at_version`; NotFound if it was absent then, Compacted if its
        history that far back is no longer kept."""
        return self._run(*ops.get_at(key, at_version))

    def list_at(
        self, prefix: str, at_version: Version | str, *, after: str | None = None, limit: int = 100
    ) -> PastListResult:
        """The keys under `prefix` (within one namespace) that existed at `at_version`, paged."""
        return self._run(*ops.list_at(prefix, at_version, after=after, limit=limit))

    def delete(self, key: str) -> WriteResult:
        return self._run(*ops.delete(key))

    def cas(
        self,
        key: str,
        value: bytes | str,
        expected_version: Version | str | None = None,
        expected_value: bytes | str | None = None,
        *,
        lease: int = 0,
    ) -> WriteResult:
        return self._run(*ops.cas(key, value, expected_version, expected_value, lease))

    def list(
        self,
        prefix: str,
        *,
        after: str | None = None,
        limit: int = 100,
        keys_only: bool = False,
        consistency: Consistency = "linearizable",
        min_version: Version | str | None = None,
    ) -> ListResult:
        return self._run(
            *ops.list_(
                prefix,
                after=after,
                limit=limit,
                keys_only=keys_only,
                consistency=consistency,
                min_version=min_version,
            )
        )

    def txn(
        self, compare: Sequence[Compare], success: Sequence[TxnOp], failure: Sequence[TxnOp] = ()
    ) -> TxnResult:
        return self._run(*ops.txn(compare, success, failure))

    def history(self, key: str, limit: int = 100, consistency: Consistency = "linearizable") -> HistoryResult:
        return self._run(*ops.history(key, limit, consistency))

    def audit(self, after_hlc: int | None = None, limit: int = 100, prefix: str = "") -> AuditResult:
        """One page of every shard's audit records in HLC order; go on with `after_hlc=result.next_hlc`."""
        return self._run(*ops.audit(after_hlc, limit, prefix))

    def watch(
        self,
        prefix: str = "",
        *,
        from_version: Version | str | Mapping[int, Version | str] | None = None,
        progress_ms: int = 1_000,
    ) -> Generator[WatchBatch, None, None]:
        """The changes of keys under `prefix` after `from_version` (None: from now), as they are
        applied; iterate until done, then `close()` the iterator. The streams run on an asyncio
        loop of their own in this thread (watch.py), with this client's endpoints and principal."""
        import asyncio  # noqa: PLC0415 - only a watch needs asyncio (see __init__.py)

        from confctl.client.aio import AsyncClient  # noqa: PLC0415

        loop = asyncio.new_event_loop()
        core = self.core
        client = AsyncClient(
            core.router.endpoints,
            core.timeout_s,
            attempt_timeout_s=core.attempt_timeout_s,
            principal=core.principal,
        )
        watch = client.watch(prefix, from_version=from_version, progress_ms=progress_ms)
        try:
            while True:
                try:
                    yield loop.run_until_complete(watch.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            loop.run_until_complete(watch.aclose())
            loop.run_until_complete(client.aclose())
            loop.close()

    def shard_map(self) -> ShardMapResult:
        """The cluster's shard map as the first node to answer knows it (and the client routes by it)."""
        return self._run(*ops.shard_map())

    def move_partition(self, partition: int, to_shard: int) -> Version:
        """Start moving `partition` to data shard `to_shard`; the cluster finishes it by itself.

        Returns the version of the freeze in the partition's shard. Watch `shard_map()` until its
        `owners[partition]` is `to_shard` (docs/sharding.md, *Moving a partition*).
        """
        return self._run(*ops.move_partition(partition, to_shard))

    def set_replicas(self, shard: int, nodes: Sequence[int]) -> Version:
        """Place shard `shard` (0: the meta shard) on `nodes` (the first its preferred leader), through
        the map.

        The shard's leader then adds the new nodes as learners, promotes them once caught up and
        removes the others, one step at a time (docs/sharding.md, *Moving a replica*).
        """
        return self._run(*ops.set_replicas(shard, nodes))

    def add_shard(self, shard: int, nodes: Sequence[int]) -> Version:
        """Add data shard `shard` (a new id) on `nodes`, owning no partition until one moves to it.

        The nodes named start it once they learn the new map; move partitions to it with
        `move_partition` (docs/sharding.md, *Adding and splitting shards*).
        """
        return self._run(*ops.add_shard(shard, nodes))

    def status(self, endpoint: str | None = None) -> NodeStatus:
        """One node's own view: `endpoint`'s, or whichever node the client reaches first."""
        request, parse = ops.status(endpoint or "")
        call = self.core.call(request, parse, time.monotonic(), endpoint=endpoint)
        result: NodeStatus = self._drive([call])[0]
        return dataclasses.replace(result, endpoint=call.endpoint)

    def status_all(self, endpoints: Sequence[str] | None = None) -> builtins.list[NodeStatus]:
        """Every endpoint's view (the client's, or `endpoints`), asked at once; a node that does not
        answer is `reachable=False`."""
        now = time.monotonic()
        calls = [
            self.core.call(*ops.status(ep), now, endpoint=ep, timeout_s=self.core.attempt_timeout_s)
            for ep in (self.core.router.endpoints if endpoints is None else endpoints)
        ]
        outcomes = self._drive(calls, raise_first=False)
        return [
            unreachable_status(c.pinned or "", o) if isinstance(o, ConfmanError) else o
            for c, o in zip(calls, outcomes, strict=True)
        ]

    def shard_map_all(self, sizes: bool = False) -> builtins.list[ShardMapResult]:
        """The map as every node of the map knows it, asked at once (those that answer).

        Each node names the leader and members only of the shards it holds: merge them to see
        every shard's (`confctl` waits on them after a placement change).
        """
        first = self.shard_map()
        now = time.monotonic()
        endpoints = sorted(set(first.addresses.values()))
        calls = [
            self.core.call(*ops.shard_map(sizes), now, endpoint=ep, timeout_s=self.core.attempt_timeout_s)
            for ep in endpoints
        ]
        outcomes = self._drive(calls, raise_first=False)
        return [*([] if sizes else [first]), *(o for o in outcomes if isinstance(o, ShardMapResult))]

    def backup_shard(self, shard: int) -> dict[str, Any]:
        """Shard `shard`'s whole state (0: the meta shard) as its leader applied it: the `backup`
        reply's fields (docs/protocol.md). Only the leader answers one: asked first where the map
        says it leads, then where each refusal's hint points, then at the shard's other replicas."""
        views = self.shard_map_all()
        addresses = {n: a for view in views for n, a in view.addresses.items()}
        leaders = [i.leader for view in views for i in view.shards if i.id == shard and i.leader is not None]
        replicas = list(views[0].map.replicas.get(shard, ()))
        queue = [addresses[n] for n in [*leaders, *replicas] if n in addresses]
        tried: set[str] = set()
        last: ConfmanError | None = None
        while queue:
            endpoint = queue.pop(0)
            if endpoint in tried:
                continue
            tried.add(endpoint)
            request, parse = ops.backup(shard)
            try:
                fields: dict[str, Any] = self._drive(
                    [self.core.call(request, parse, time.monotonic(), endpoint=endpoint)]
                )[0]
            except (NotLeader, NoQuorum, Unavailable, RequestTimeout) as exc:
                last = exc
                hint = getattr(exc, "leader", None)
                if hint is not None:
                    queue.insert(0, hint.address)
                continue
            return fields
        if last is not None:
            raise last
        raise Unavailable(f"no node is known to hold shard {shard}")

    def close(self) -> None:
        if self.cache is not None:
            self.cache.flush()
        for sock in self._sockets.values():
            sock.close(linger=0)
        self._sockets.clear()
        self._closed = True

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ driving calls

    def _run(self, request: Request, parse: Callable[[Reply], T]) -> T:
        result: T = self._drive([self.core.call(request, parse, time.monotonic())])[0]
        return result

    def _drive(self, calls: builtins.list[Call[Any]], raise_first: bool = True) -> builtins.list[Any]:
        """Run calls side by side to completion: each outcome is a result, or a raised / returned error."""
        if self._closed:
            raise Unavailable("the client is closed")
        drive = _Drive()
        now = time.monotonic()
        for i, call in enumerate(calls):
            drive.advance(i, call, call.start(now), now)
        try:
            while drive.flights:
                self._turn(drive)
        finally:
            for flight in drive.flights.values():
                flight.call.abandon()
        ordered = [drive.outcomes[i] for i in range(len(calls))]
        if raise_first:
            for outcome in ordered:
                if isinstance(outcome, ConfmanError):
                    raise outcome
        return ordered

    def _turn(self, drive: _Drive) -> None:
        """One loop turn: send what is due, wait for replies or the next due time, handle both."""
        now = time.monotonic()
        for flight in drive.flights.values():
            if not flight.sent and flight.send_at <= now:
                self._socket(flight.send.endpoint).send(flight.send.frame)
                flight.sent, flight.expires_at = True, now + flight.send.wait_s
        next_due = min(f.expires_at if f.sent else f.send_at for f in drive.flights.values())
        waiting = {f.send.endpoint for f in drive.flights.values() if f.sent}
        if waiting:
            poller = zmq.Poller()
            for endpoint in waiting:
                poller.register(self._socket(endpoint), zmq.POLLIN)
            ready = dict(poller.poll(math.ceil(max(0.0, next_due - now) * 1000)))
        else:
            time.sleep(max(0.0, next_due - now))  # only backoff delays are pending
            ready = {}
        now = time.monotonic()
        for endpoint in waiting:
            if self._sockets[endpoint] in ready:
                self._drain(endpoint, drive, now)
        for i, flight in list(drive.flights.items()):
            if flight.sent and flight.expires_at <= now:
                self._reset(flight.send.endpoint)
                drive.advance(i, flight.call, flight.call.on_silence(now), now)

    def _drain(self, endpoint: str, drive: _Drive, now: float) -> None:
        sock = self._sockets[endpoint]
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            reply = replies.decode(frames[-1])
            if reply is None:
                continue
            for i, flight in list(drive.flights.items()):
                if flight.sent and flight.send.endpoint == endpoint and flight.send.request_id == reply["id"]:
                    drive.advance(i, flight.call, flight.call.on_reply(reply, now), now)

    def _socket(self, endpoint: str) -> zmq.Socket[bytes]:
        sock = self._sockets.get(endpoint)
        if sock is None:
            sock = self._ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            try:
                sock.connect(endpoint)
            except zmq.ZMQError as exc:
                sock.close(linger=0)
                raise InvalidArgument(f"cannot connect to endpoint {endpoint!r}: {exc}") from exc
            self._sockets[endpoint] = sock
        return sock

    def _reset(self, endpoint: str) -> None:
        sock = self._sockets.pop(endpoint, None)
        if sock is not None:
            sock.close(linger=0)


def unreachable_status(endpoint: str, error: ConfmanError) -> NodeStatus:
    return NodeStatus(endpoint=endpoint, reachable=not isinstance(error, Unavailable), error=str(error))
