"""Watches in the client: one stream per shard, resumed wherever the shard can be reached.

`AsyncClient.watch(prefix)` returns a `Watch`: iterate it for `WatchBatch`es (docs/protocol.md,
*Watches*). A prefix inside one namespace is one shard's; a prefix without a `/` may match keys
of every data shard, and the watch then streams each of them and merges their batches as they
come (each batch names its shard; changes of one shard stay in its log order, and changes of
different shards are ordered by nothing but their HLC stamps).

Each shard's stream remembers `progress`, the version up to which it has been told everything.
When its node goes quiet (no message within `silence_s`, while the node promised a bookmark every
`progress_ms`), ends the watch (SLOW_WATCHER, a replica gone), or skips a message (a gap in
`seq`), the stream opens the watch again at the next replica of the shard, from that progress:
no change is told twice or missed. Replicas serve watches from the changes they keep in memory;
a replica without the changes after `progress` answers COMPACTED, and the stream tries the
others; only when none has them does the watch raise `Compacted`, as it does when a namespace
watched moved to another shard (whose versions are another log's). Retryable failures are
retried for good, with backoff: a watch outlives outages.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from confctl.client import replies
from confctl.client.errors import (
    Compacted,
    ConfmanError,
    InvalidArgument,
    ProtocolError,
    ServerError,
    WrongShard,
)
from confctl.client.replies import Reply
from confctl.client.routing import Backoff
from confctl.client.types import WatchBatch, WatchEvent
from confmand.protocol.requests import (
    DEFAULT_WATCH_PROGRESS_MS,
    MAX_WATCH_PROGRESS_MS,
    MIN_WATCH_PROGRESS_MS,
    RequestEnvelope,
)
from confmand.protocol.shardmap import NAMESPACE_SEPARATOR
from confmand.protocol.types import Version

if TYPE_CHECKING:
    from confctl.client.aio import AsyncClient

SILENT_BOOKMARKS: Final = 5  # bookmarks missed in a row before a node counts as gone
SILENCE_SLACK_S: Final = 1.0
QUEUE_BATCHES: Final = 1_024  # batches read ahead of the application, per watch

ShardKey = int | None  # None: an unsharded (older) server


def parse_batch(reply: Reply) -> tuple[int, WatchBatch]:
    """A watch message -> (its seq, the batch it carries); raises ProtocolError if malformed."""
    seq = replies.need(reply, "seq", int)
    shard = replies.shard(reply)
    events = []
    for item in replies.maps(reply, "events"):
        kind = replies.need(item, "type", str)
        if kind not in ("put", "delete"):
            raise ProtocolError(f"watch event type {kind!r}")
        value = replies.field(item, "value", bytes, optional=True)
        if (kind == "put") != (value is not None):
            raise ProtocolError("a watch event has a value exactly when it is a put")
        events.append(
            WatchEvent(
                "put" if kind == "put" else "delete",
                replies.need(item, "key", str),
                value,
                replies.need_version(item, "version"),
                replies.need(item, "hlc", int),
                shard,
            )
        )
    batch = WatchBatch(
        tuple(events), replies.need_version(reply, "progress"), shard, replies.meta(reply).node_id
    )
    return seq, batch


def _as_version(raw: Version | str) -> Version:
    if isinstance(raw, Version):
        return raw
    try:
        return Version.parse(raw)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


class Watch:
    """An open watch; `async for batch in watch` until `aclose()` (or leave an `async with`)."""

    def __init__(
        self,
        client: AsyncClient,
        prefix: str,
        from_version: Version | str | Mapping[int, Version | str] | None,
        progress_ms: int,
    ) -> None:
        if not MIN_WATCH_PROGRESS_MS <= progress_ms <= MAX_WATCH_PROGRESS_MS:
            raise InvalidArgument(
                f"progress_ms must be in [{MIN_WATCH_PROGRESS_MS}, {MAX_WATCH_PROGRESS_MS}]"
            )
        self._client = client
        self.prefix = prefix
        self.progress_ms = progress_ms
        self.silence_s = SILENT_BOOKMARKS * progress_ms / 1000 + SILENCE_SLACK_S
        self._from = from_version
        # Per shard: the version up to which every change under the prefix has been handed out.
        self.progress: dict[ShardKey, Version] = {}
        self._queue: asyncio.Queue[WatchBatch | BaseException] = asyncio.Queue(QUEUE_BATCHES)
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._closed = False
        self.resumes = 0  # times a shard's stream was opened again elsewhere

    # ------------------------------------------------------------------ the application's side

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> WatchBatch:
        if self._closed:
            raise StopAsyncIteration
        if not self._started:
            await self._start()
        item = await self._queue.get()
        if isinstance(item, BaseException):
            await self.aclose()
            raise item
        if item.shard in self.progress or item.shard is None:
            self.progress[item.shard] = item.progress
        return item

    async def aclose(self) -> None:
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def __aenter__(self) -> Watch:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ the streams

    async def _start(self) -> None:
        self._started = True
        shards = await self._shards()
        starts = self._starts(shards)
        for shard in shards:
            self._tasks.append(asyncio.get_running_loop().create_task(self._stream(shard, starts[shard])))

    async def _shards(self) -> list[ShardKey]:
        client = self._client
        directory = client.core.shards
        if directory.map is None and not directory.unsharded:
            await client.shard_map()
        if directory.map is None:
            return [None]
        if NAMESPACE_SEPARATOR in self.prefix:
            return [directory.map.shard_of(self.prefix)]
        return list(directory.map.data_shards)

    def _starts(self, shards: list[ShardKey]) -> dict[ShardKey, Version | None]:
        given = self._from
        if given is None:
            return dict.fromkeys(shards)
        if isinstance(given, Version | str):
            if len(shards) != 1:
                raise InvalidArgument(
                    f"the prefix {self.prefix!r} spans {len(shards)} shards: give from_version per shard "
                    "(a version is one shard's log position)"
                )
            return {shards[0]: _as_version(given)}
        unknown = set(given) - set(shards)
        if unknown:
            raise InvalidArgument(f"from_version names shards {sorted(unknown)} the prefix does not span")
        return {shard: None if shard not in given else _as_version(given[shard]) for shard in shards}  # type: ignore[index]

    async def _stream(self, shard: ShardKey, after: Version | None) -> None:
        """Keep one shard's stream going, from node to node, until the watch closes."""
        backoff = Backoff(max_s=2.0)
        compacted: dict[str, Compacted] = {}
        attempt = 0
        tried = 0
        try:
            while True:
                candidates = self._candidates(shard)
                endpoint = candidates[attempt % len(candidates)]
                attempt += 1
                if tried >= len(candidates):  # each was tried once since the last message: wait
                    await asyncio.sleep(backoff.delay_s(tried - len(candidates) + 1))
                tried += 1
                try:
                    after = await self._follow(endpoint, shard, after)
                except Compacted as exc:
                    compacted[endpoint] = exc
                    if exc.oldest is None or len(compacted) >= len(candidates):
                        raise
                    continue
                except WrongShard as exc:
                    if await self._moved(shard):
                        raise Compacted(
                            f"the namespace of {self.prefix!r} moved from shard {shard} to another shard: "
                            f"list it at one version and watch from there ({exc.message})"
                        ) from exc
                    continue
                except ServerError as exc:
                    if not exc.retryable:
                        raise
                    continue
                # It streamed, then stopped (silence, a gap, a retryable end): go on elsewhere.
                tried = 0
                compacted.clear()
                self.resumes += 1
        except asyncio.CancelledError:
            raise
        except ConfmanError as exc:
            await self._queue.put(exc)

    async def _follow(self, endpoint: str, shard: ShardKey, after: Version | None) -> Version | None:
        """Stream from `endpoint` until it stops; the progress reached. Raises a server's error
        when the watch could not start there (or ended with one worth telling apart)."""
        client = self._client
        socket_endpoint = client._endpoint(endpoint)
        request_id = client.core.request_id()
        queue: asyncio.Queue[Reply | None] = asyncio.Queue()
        socket_endpoint.streams[request_id] = queue
        fields: dict[str, object] = {"prefix": self.prefix, "progress_ms": self.progress_ms}
        if after is not None:
            fields["from_version"] = str(after)
        envelope = RequestEnvelope(request_id, "watch", principal=client.core.principal, shard=shard)
        expected_seq = 1
        try:
            await socket_endpoint.socket.send(envelope.encode(fields))
            while True:
                try:
                    reply = await asyncio.wait_for(queue.get(), self.silence_s)
                except TimeoutError:
                    return after  # the node went quiet: resume elsewhere
                if reply is None:
                    return after  # the client reset that endpoint
                if not replies.is_ok(reply):
                    error = replies.error(reply)
                    if expected_seq > 1 and error.retryable:
                        return after  # it streamed, then ended (SLOW_WATCHER, a replica gone)
                    raise error
                seq, batch = parse_batch(reply)
                if seq != expected_seq:
                    return after  # a message lost on the way: resume from what was told
                expected_seq += 1
                if batch.shard != shard:
                    raise ProtocolError(f"a watch of shard {shard} got a message of shard {batch.shard}")
                after = batch.progress
                await self._queue.put(batch)
        finally:
            socket_endpoint.streams.pop(request_id, None)
            if expected_seq > 1:  # it was open there: tell the node to stop
                await self._cancel(endpoint, request_id)

    async def _cancel(self, endpoint: str, watch_id: int) -> None:
        """Tell the node to stop sending (best effort: a node gone needs no telling)."""
        client = self._client
        if client._closed or endpoint not in client._endpoints:
            return
        envelope = RequestEnvelope(client.core.request_id(), "cancel_watch", principal=client.core.principal)
        with contextlib.suppress(Exception):
            await client._endpoints[endpoint].socket.send(envelope.encode({"watch_id": watch_id}))

    def _candidates(self, shard: ShardKey) -> tuple[str, ...]:
        core = self._client.core
        fallback = core.router.endpoints
        if shard is None:
            return tuple(fallback)
        return core.shards.candidates(shard, fallback)

    async def _moved(self, shard: ShardKey) -> bool:
        """After WRONG_SHARD: whether the watched namespace now lives in another shard."""
        with contextlib.suppress(ConfmanError):
            await self._client.shard_map()
        shard_map = self._client.core.shards.map
        if shard_map is None or NAMESPACE_SEPARATOR not in self.prefix:
            return False
        return shard_map.shard_of(self.prefix) != shard


__all__ = ["DEFAULT_WATCH_PROGRESS_MS", "Watch", "parse_batch"]
