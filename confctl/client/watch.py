"""Watches in the client, asyncio shell: one `ShardStream` (watch_stream.py) per shard, merged.

`AsyncClient.watch(prefix)` returns a `Watch`: iterate it for `WatchBatch`es (docs/protocol.md,
*Watches*). A prefix inside one namespace is one shard's; a prefix without a `/` may match keys
of every data shard, and the watch then streams each of them and merges their batches as they
come (each batch names its shard; changes of one shard stay in its log order, and changes of
different shards are ordered by nothing but their HLC stamps). Each shard's stream resumes at
another replica from the last progress it was told when its node goes away (watch_stream.py
says when and how), so a watch outlives outages; it raises `Compacted` only when no replica has
the changes after its progress, or when the namespace it watches moved to another shard.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import zmq

from confctl.client.errors import ConfmanError, InvalidArgument
from confctl.client.replies import Reply
from confctl.client.types import WatchBatch
from confctl.client.watch_stream import Cancel, Ended, ShardStream, Told
from confmand.protocol.requests import (
    DEFAULT_WATCH_PROGRESS_MS,
    MAX_WATCH_PROGRESS_MS,
    MIN_WATCH_PROGRESS_MS,
)
from confmand.protocol.shardmap import NAMESPACE_SEPARATOR
from confmand.protocol.types import Version

if TYPE_CHECKING:
    from confctl.client.aio import AsyncClient

QUEUE_BATCHES: Final = 1_024  # batches read ahead of the application, per watch
NEW_SHARD_LOOK_S: Final = 5.0  # how often a watch across namespaces looks for shards added since

ShardKey = int | None  # None: an unsharded (older) server


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
        self._from = from_version
        # Per shard: the version up to which every change under the prefix has been handed out.
        self.progress: dict[ShardKey, Version] = {}
        self._queue: asyncio.Queue[WatchBatch | BaseException] = asyncio.Queue(QUEUE_BATCHES)
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._closed = False
        self._streams: list[ShardStream] = []
        self._watched: set[ShardKey] = set()

    def closed(self) -> bool:
        """Whether `aclose` was called (a call: read afresh after every await)."""
        return self._closed

    @property
    def resumes(self) -> int:
        """Times a shard's stream opened again (elsewhere, or after a lost message) once it had streamed."""
        return sum(stream.resumes for stream in self._streams)

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
        shards = await self._shards()
        starts = self._starts(shards)
        # Only now: a first __anext__ cancelled while it fetched the map starts again next time.
        self._started = True
        loop = asyncio.get_running_loop()
        for shard in shards:
            self._watched.add(shard)
            self._tasks.append(loop.create_task(self._stream(shard, starts[shard])))
        if NAMESPACE_SEPARATOR not in self.prefix and shards != [None]:
            self._tasks.append(loop.create_task(self._follow_new_shards()))

    async def _follow_new_shards(self) -> None:
        """A prefix across namespaces spans shards added later too (`confctl split`, `add_shard`):
        their partitions move in without a change, so a shard the map names anew is watched from
        its beginning (`0:0`: every change it applied), or, if its replicas no longer keep that,
        the watch raises Compacted. Never silently less."""
        while not self.closed():
            await asyncio.sleep(NEW_SHARD_LOOK_S)
            try:
                await self._client.shard_map()
            except ConfmanError:
                continue  # the streams say it if the cluster stays unreachable
            shard_map = self._client.core.shards.map
            for shard in [] if shard_map is None else shard_map.data_shards:
                if shard not in self._watched:
                    self._watched.add(shard)
                    task = asyncio.get_running_loop().create_task(self._stream(shard, Version(0, 0)))
                    self._tasks.append(task)

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
        return {s: _as_version(given[s]) if s is not None and s in given else None for s in shards}

    async def _stream(self, shard: ShardKey, after: Version | None) -> None:
        """Drive one shard's stream until the watch closes; an error ends the whole watch."""
        client = self._client
        stream = ShardStream(client.core, self.prefix, shard, after, self.progress_ms)
        self._streams.append(stream)
        inbox: asyncio.Queue[Reply | None] = asyncio.Queue()
        listening: tuple[str, int] | None = None  # (endpoint, request id) the inbox gets messages of
        actions = stream.start(asyncio.get_running_loop().time())
        try:
            while not self.closed():  # also ends a cancel that wait_for swallowed (3.11)
                for action in actions:
                    if isinstance(action, Told):
                        if self.closed():
                            return
                        await self._queue.put(action.batch)
                    elif isinstance(action, Ended):
                        await self._queue.put(action.error)
                        return
                    elif isinstance(action, Cancel):
                        await self._send(action.endpoint, action.frame)
                    else:
                        self._stop_listening(listening)
                        if action.delay_s > 0:
                            await asyncio.sleep(action.delay_s)
                        endpoint = client._endpoint(action.endpoint)
                        endpoint.streams[action.request_id] = inbox
                        listening = (action.endpoint, action.request_id)
                        await self._send(action.endpoint, action.frame)
                try:
                    reply = await asyncio.wait_for(inbox.get(), stream.silence_s)
                except TimeoutError:
                    reply = None
                now = asyncio.get_running_loop().time()
                if reply is None or listening is None or reply.get("id") != listening[1]:
                    actions = stream.on_silence(now) if reply is None else []
                else:
                    actions = stream.on_reply(reply, now)
        finally:
            self._stop_listening(listening)
            for cancel in stream.close():
                assert isinstance(cancel, Cancel)
                await self._send(cancel.endpoint, cancel.frame)

    def _stop_listening(self, listening: tuple[str, int] | None) -> None:
        if listening is None:
            return
        endpoint = self._client._endpoints.get(listening[0])
        if endpoint is not None:
            endpoint.streams.pop(listening[1], None)

    async def _send(self, address: str, frame: bytes) -> None:
        """Send on the endpoint's socket (best effort: a closed client or socket sends nothing)."""
        client = self._client
        if client._closed:
            return
        with contextlib.suppress(zmq.ZMQError):
            await client._endpoint(address).socket.send(frame)


__all__ = ["DEFAULT_WATCH_PROGRESS_MS", "Watch"]
