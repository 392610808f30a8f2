"""A fault-injecting TCP proxy for the peer links: partitions without root, all on loopback.

One `ProxyNetwork` runs one asyncio loop in one background thread and owns
any number of `Link`s. A link listens on a free 127.0.0.1 port and forwards
every connection to one upstream port (a node's real peer port). The fault
cluster gives every *directed* node pair (i, j) its own link, and lists the
link's port as j's peer address in i's config, so each direction of each
pair can be cut on its own.

Invariants:
- While a link is cut, no byte flows through it in either direction: `cut()`
  aborts every forwarded connection before it returns, and a connection
  accepted while cut is *held* (accepted, never read, no upstream) until
  `heal()`. Holding rather than refusing keeps ZeroMQ's reconnect backoff
  (up to 2 s) out of the picture: on heal the held connection is simply
  forwarded, its greeting still in the kernel buffer, and the link works at
  once. ZeroMQ queues nothing on a connection whose handshake has not
  finished (IMMEDIATE), so what the sender sends meanwhile is lost, as on a
  real partition.
- Bytes forwarded in the link's direction keep their order; with `delay_ms`
  each chunk is written no sooner than `delay_ms` after it was read.
- Either side closing closes both sides; no error in one connection reaches
  another connection or the caller.
- `close()` stops every listener, connection and the thread, and is safe to
  call twice. Methods are called from any thread and return once the loop has
  done the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

CHUNK_BYTES = 64 * 1024
QUEUE_CHUNKS_MAX = 256  # per connection: a slow receiver pushes back on the sender
CALL_TIMEOUT_S = 5.0
HOST = "127.0.0.1"


class ProxyError(RuntimeError):
    """The proxy could not do what was asked (closed, or its loop did not answer)."""


class _Connection:
    """One accepted downstream connection and, once forwarded, its upstream twin."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.down_reader = reader
        self.down_writer = writer
        self.up_writer: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []

    def abort(self) -> None:
        """Drop both sides at once (RST), and stop the pumps; idempotent."""
        for writer in (self.down_writer, self.up_writer):
            if writer is not None:
                writer.transport.abort()
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()


class Link:
    """One directed link: connections to `port` are forwarded to `upstream_port` unless cut."""

    def __init__(self, network: ProxyNetwork, name: str, upstream_port: int) -> None:
        self.name = name
        self.upstream_port = upstream_port
        self.port = 0  # set once listening
        self._network = network
        self._server: asyncio.Server | None = None
        self._cut = False
        self._cuts = 0  # how many times cut: a connection made across a cut is dropped
        self._healed = asyncio.Event()
        self._healed.set()
        self._delay_s = 0.0
        self._connections: set[_Connection] = set()
        self._held: set[asyncio.Task[None]] = set()

    # ---------------------------------------------------------------- called from any thread

    @property
    def is_cut(self) -> bool:
        return self._cut

    @property
    def delay_ms(self) -> int:
        return round(self._delay_s * 1000)

    def cut(self) -> None:
        """Nothing flows through this link until `heal()`; open connections are dropped now."""
        self._network.call(self._cut_now())

    def heal(self) -> None:
        """Forward again, including connections held while cut."""
        self._network.call(self._heal_now())

    def set_delay(self, delay_ms: int) -> None:
        """Delay every later chunk in the link's direction by `delay_ms` (0: none)."""
        if delay_ms < 0:
            raise ValueError(f"delay_ms must be >= 0 (got {delay_ms})")
        self._network.call(self._set_delay_now(delay_ms / 1000))

    def connection_count(self) -> int:
        """Connections currently forwarded (not held)."""
        return self._network.call(self._count_now())

    # ---------------------------------------------------------------- on the loop

    async def _count_now(self) -> int:
        return len(self._connections)

    async def _set_delay_now(self, delay_s: float) -> None:
        self._delay_s = delay_s

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _cut_now(self) -> None:
        self._cut = True
        self._cuts += 1
        self._healed.clear()
        for connection in list(self._connections):
            connection.abort()
        self._connections.clear()

    async def _heal_now(self) -> None:
        self._cut = False
        self._healed.set()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        pumps = [task for connection in self._connections for task in connection.tasks]
        await self._cut_now()
        held = list(self._held)
        for task in held:
            task.cancel()
        await asyncio.gather(*pumps, *held, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(reader, writer)
        task = asyncio.current_task()
        assert task is not None
        self._held.add(task)
        try:
            while self._cut:  # hold: the sender's bytes wait unread in the kernel
                await self._healed.wait()
            generation = self._cuts
            up_reader, up_writer = await asyncio.open_connection(HOST, self.upstream_port)
        except OSError:
            connection.abort()  # upstream down (a killed node): the sender reconnects later
            return
        except asyncio.CancelledError:
            connection.abort()  # the network is closing
            raise
        finally:
            self._held.discard(task)
        connection.up_writer = up_writer
        if self._cuts != generation:  # cut again while connecting
            connection.abort()
            return
        self._connections.add(connection)
        forward: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUE_CHUNKS_MAX)
        connection.tasks = [
            asyncio.create_task(self._read_into(connection, reader, forward)),
            asyncio.create_task(self._write_from(connection, forward, up_writer)),
            asyncio.create_task(self._pipe(connection, up_reader, writer)),
        ]

    async def _read_into(
        self, connection: _Connection, reader: asyncio.StreamReader, queue: asyncio.Queue[tuple[float, bytes]]
    ) -> None:
        """Downstream to the queue, stamped with when each chunk may be delivered."""
        try:
            while data := await reader.read(CHUNK_BYTES):
                await queue.put((time.monotonic() + self._delay_s, data))
        except OSError:
            pass
        await queue.put((0.0, b""))  # end of stream, after whatever is queued

    async def _write_from(
        self, connection: _Connection, queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                deliver_at, data = await queue.get()
                if not data:
                    break
                wait_s = deliver_at - time.monotonic()
                if wait_s > 0:
                    await asyncio.sleep(wait_s)
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        self._finish(connection)

    async def _pipe(
        self, connection: _Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Upstream back to downstream (ZeroMQ's handshake and heartbeats), undelayed."""
        try:
            while data := await reader.read(CHUNK_BYTES):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        self._finish(connection)

    def _finish(self, connection: _Connection) -> None:
        self._connections.discard(connection)
        connection.abort()


class ProxyNetwork:
    """The loop thread and its links; see the module docstring."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        self._closed = False
        self.links: list[Link] = []

    def add_link(self, upstream_port: int, name: str = "") -> Link:
        """A new listening link to 127.0.0.1:`upstream_port`; its `port` is where to connect."""
        link = Link(self, name or f"->{upstream_port}", upstream_port)
        self.call(link._listen())
        self.links.append(link)
        return link

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the loop and return its result (from any thread but the loop's)."""
        if self._closed:
            coroutine.close()
            raise ProxyError("the proxy network is closed")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(CALL_TIMEOUT_S)
        except TimeoutError as exc:
            future.cancel()
            raise ProxyError(f"the proxy loop did not answer within {CALL_TIMEOUT_S} s") from exc

    def close(self) -> None:
        """Stop every link, connection and the loop thread; safe to call twice."""
        if self._closed:
            return
        with contextlib.suppress(ProxyError):
            self.call(self._close_all())
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CALL_TIMEOUT_S)
        if not self._thread.is_alive():
            self._loop.close()

    async def _close_all(self) -> None:
        for link in self.links:
            await link._close()
        # Let aborted transports run their connection_lost callbacks before the loop stops.
        await asyncio.sleep(0)

    def __enter__(self) -> ProxyNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
