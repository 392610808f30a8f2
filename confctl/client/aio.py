"""`AsyncClient`: the asyncio shell around the sans-I/O core, on zmq.asyncio DEALER sockets.

Same methods and rules as `Client` (see sync.py), awaitable, and safe to call
concurrently from many tasks of one event loop. Each endpoint has one DEALER
(`linger=0`) and one reader task that hands each reply to the future awaiting
its id; replies with unknown ids are dropped. An endpoint that stays silent
for an attempt's wait is reset: its socket closed, its reader stopped, and
every request still waiting on it told "silence" at once so their calls move
on; the next use makes a fresh socket.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import zmq
import zmq.asyncio

from confctl.client import operations as ops
from confctl.client import replies
from confctl.client.cache import LastGoodCache, instead_of_failure
from confctl.client.call import MAX_REQUEST_BYTES, Call, Done, Fail, Send
from confctl.client.errors import ConfmanError, InvalidArgument, Unavailable
from confctl.client.replies import Reply
from confctl.client.requests import Request
from confctl.client.sync import new_core, unreachable_status
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
    WriteResult,
)
from confctl.client.watch import DEFAULT_WATCH_PROGRESS_MS, Watch

T = TypeVar("T")


class _Endpoint:
    """One endpoint's socket, its reader task and the requests awaiting replies on it."""

    def __init__(self, ctx: zmq.asyncio.Context, address: str) -> None:
        self.socket = ctx.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        try:
            self.socket.connect(address)
        except zmq.ZMQError as exc:
            self.socket.close(linger=0)
            raise InvalidArgument(f"cannot connect to endpoint {address!r}: {exc}") from exc
        self.pending: dict[int, asyncio.Future[Reply | None]] = {}
        self.streams: dict[int, asyncio.Queue[Reply | None]] = {}  # open watches: every message of each
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(zmq.ZMQError, asyncio.CancelledError):
            while True:
                frames = await self.socket.recv_multipart()
                reply = replies.decode(frames[-1])
                if reply is None:
                    continue
                stream = self.streams.get(reply["id"])
                if stream is not None:
                    stream.put_nowait(reply)
                    continue
                fut = self.pending.get(reply["id"])
                if fut is not None and not fut.done():
                    fut.set_result(reply)

    def close(self) -> None:
        self.reader.cancel()
        self.socket.close(linger=0)
        for fut in self.pending.values():
            if not fut.done():
                fut.set_result(None)  # silence: the socket that would carry the reply is gone
        for stream in self.streams.values():
            stream.put_nowait(None)


class AsyncClient:
    """An asyncio Confman client. See docs/protocol.md for the rules it follows."""

    def __init__(
        self,
        endpoints: Sequence[str],
        timeout_s: float = 5.0,
        *,
        attempt_timeout_s: float | None = None,
        principal: str | None = None,
        read_your_writes: bool = True,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        context: zmq.asyncio.Context | None = None,
        cache: str | Path | None = None,
    ) -> None:
        self.core = new_core(endpoints, timeout_s, attempt_timeout_s, principal, read_your_writes)
        # The last good value of each key read, on local disk, for `get(..., allow_cached=True)`.
        self.cache = None if cache is None else LastGoodCache(cache)
        self.served_from_cache = 0
        self.core.max_request_bytes = max_request_bytes
        self._ctx = context or zmq.asyncio.Context.instance()
        self._endpoints: dict[str, _Endpoint] = {}
        self._closed = False

    # ------------------------------------------------------------------ public API

    async def put(self, key: str, value: bytes | str, *, lease: int = 0) -> WriteResult:
        """Write `key`; with `lease`, attached to that lease of its namespace's shard (it goes
        when the lease does)."""
        return await self._run(*ops.put(key, value, lease))

    async def lease_grant(self, key: str, ttl_ms: int) -> LeaseResult:
        """A lease of `ttl_ms` in the shard of `key`'s namespace (for keys of that namespace)."""
        return await self._run(*ops.lease_grant(key, ttl_ms))

    async def lease_keepalive(self, key: str, lease: int) -> LeaseResult:
        """Restart the lease's TTL; it holds for `ttl_ms` from when this call was sent. NotFound:
        the lease expired or was revoked (its keys are gone)."""
        return await self._run(*ops.lease_keepalive(key, lease))

    async def lease_revoke(self, key: str, lease: int) -> WriteResult:
        """End the lease now: its keys are deleted."""
        return await self._run(*ops.lease_revoke(key, lease))

    async def get(
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
            result = await self._run(*ops.get(key, consistency, min_version))
        except ConfmanError as exc:
            served = instead_of_failure(self.cache, key, exc, allow_cached)  # or raises exc
            self.served_from_cache += 1
            return served
        if self.cache is not None:
            self.cache.remember(result)
        return result

    async def rollback(
        self, key: str, to_version: Version | str, expected_version: Version | str | None = None
    ) -> WriteResult:
        """Write `key` back to its value at `to_version` (a delete if it was absent then), from its
        kept history; with `expected_version`, only if the key is still at that version."""
        return await self._run(*ops.rollback(key, to_version, expected_version))

    async def get_at(self, key: str, at_version: Version | str) -> PastValue:
        """`key` as it was at `at_version`; NotFound if it was absent then, Compacted if its
        history that far back is no longer kept."""
        return await self._run(*ops.get_at(key, at_version))

    async def list_at(
        self, prefix: str, at_version: Version | str, *, after: str | None = None, limit: int = 100
    ) -> PastListResult:
        """The keys under `prefix` (within one namespace) that existed at `at_version`, paged."""
        return await self._run(*ops.list_at(prefix, at_version, after=after, limit=limit))

    async def delete(self, key: str) -> WriteResult:
        return await self._run(*ops.delete(key))

    async def cas(
        self,
        key: str,
        value: bytes | str,
        expected_version: Version | str | None = None,
        expected_value: bytes | str | None = None,
        *,
        lease: int = 0,
    ) -> WriteResult:
        return await self._run(*ops.cas(key, value, expected_version, expected_value, lease))

    async def list(
        self,
        prefix: str,
        *,
        after: str | None = None,
        limit: int = 100,
        keys_only: bool = False,
        consistency: Consistency = "linearizable",
        min_version: Version | str | None = None,
    ) -> ListResult:
        return await self._run(
            *ops.list_(
                prefix,
                after=after,
                limit=limit,
                keys_only=keys_only,
                consistency=consistency,
                min_version=min_version,
            )
        )

    async def txn(
        self, compare: Sequence[Compare], success: Sequence[TxnOp], failure: Sequence[TxnOp] = ()
    ) -> TxnResult:
        return await self._run(*ops.txn(compare, success, failure))

    async def history(
        self, key: str, limit: int = 100, consistency: Consistency = "linearizable"
    ) -> HistoryResult:
        return await self._run(*ops.history(key, limit, consistency))

    async def audit(self, after_hlc: int | None = None, limit: int = 100, prefix: str = "") -> AuditResult:
        """One page of every shard's audit records in HLC order; go on with `after_hlc=result.next_hlc`."""
        return await self._run(*ops.audit(after_hlc, limit, prefix))

    def watch(
        self,
        prefix: str = "",
        *,
        from_version: Version | str | Mapping[int, Version | str] | None = None,
        progress_ms: int = DEFAULT_WATCH_PROGRESS_MS,
    ) -> Watch:
        """The changes of keys under `prefix` after `from_version` (None: from now), as they are
        applied: `async for batch in client.watch("app/")`. See watch.py and docs/protocol.md."""
        return Watch(self, prefix, from_version, progress_ms)

    async def shard_map(self) -> ShardMapResult:
        """The cluster's shard map as the first node to answer knows it (and the client routes by it)."""
        return await self._run(*ops.shard_map())

    async def status(self, endpoint: str | None = None) -> NodeStatus:
        request, parse = ops.status(endpoint or "")
        call = self.core.call(request, parse, self._now(), endpoint=endpoint)
        result: NodeStatus = await self._drive(call)
        return dataclasses.replace(result, endpoint=call.endpoint)

    async def status_all(self) -> builtins.list[NodeStatus]:
        now = self._now()
        calls = [
            self.core.call(*ops.status(ep), now, endpoint=ep, timeout_s=self.core.attempt_timeout_s)
            for ep in self.core.router.endpoints
        ]
        outcomes = await asyncio.gather(*(self._drive(c) for c in calls), return_exceptions=True)
        statuses: builtins.list[NodeStatus] = []
        for call, outcome in zip(calls, outcomes, strict=True):
            if isinstance(outcome, ConfmanError):
                statuses.append(unreachable_status(call.pinned or "", outcome))
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                statuses.append(outcome)
        return statuses

    def close(self) -> None:
        if self.cache is not None:
            self.cache.flush()
        for endpoint in self._endpoints.values():
            endpoint.close()
        self._endpoints.clear()
        self._closed = True

    async def aclose(self) -> None:
        """close(), then wait for the reader tasks to finish."""
        readers = [e.reader for e in self._endpoints.values()]
        self.close()
        await asyncio.gather(*readers, return_exceptions=True)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ driving calls

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    async def _run(self, request: Request, parse: Callable[[Reply], T]) -> T:
        return await self._drive(self.core.call(request, parse, self._now()))

    async def _drive(self, call: Call[T]) -> T:
        if self._closed:
            raise Unavailable("the client is closed")
        step: Send | Done[T] | Fail = call.start(self._now())
        try:
            while isinstance(step, Send):
                if step.delay_s > 0:
                    await asyncio.sleep(step.delay_s)  # backoff between attempts
                reply = await self._exchange(step)
                now = self._now()
                step = call.on_silence(now) if reply is None else call.on_reply(reply, now)
        except BaseException:
            call.abandon()
            raise
        if isinstance(step, Fail):
            raise step.error
        return step.value

    async def _exchange(self, send: Send) -> Reply | None:
        """Send one attempt; its reply, or None after `wait_s` of silence (the endpoint is then reset)."""
        endpoint = self._endpoint(send.endpoint)
        fut: asyncio.Future[Reply | None] = asyncio.get_running_loop().create_future()
        endpoint.pending[send.request_id] = fut
        try:
            await endpoint.socket.send(send.frame)
            reply = await asyncio.wait_for(fut, send.wait_s)
        except TimeoutError:
            reply = None
        finally:
            endpoint.pending.pop(send.request_id, None)
        if reply is None and self._endpoints.get(send.endpoint) is endpoint:
            del self._endpoints[send.endpoint]
            endpoint.close()
        return reply

    def _endpoint(self, address: str) -> _Endpoint:
        endpoint = self._endpoints.get(address)
        if endpoint is None:
            endpoint = self._endpoints[address] = _Endpoint(self._ctx, address)
        return endpoint
