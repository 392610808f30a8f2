"""`WatchHub`: the node's watches, each streaming one shard's key changes to one client.

A watch (docs/protocol.md, *Watches*) is served by the replica the client reached, from the
changes that replica applied (its `EventWindow`), in log order: every replica applies the same
log, so whichever one serves a watch tells the same story, and a client that loses its node
resumes at another from the last version it was told about.

Each loop turn, after the turn's apply batch is durable (the changes are then as good as what
a read would see), `deliver` sends every watch of a shard that applied something its new
changes under the watch's prefix. One message never splits an entry (a txn's changes arrive
together), carries at most `CHUNK_EVENTS` changes or about `CHUNK_BYTES` (a watch far behind
catches up over several turns, one chunk a turn, so it cannot stall the loop), and says how far
the watch is complete: `progress`, a version at or below which nothing under the prefix is
still to come. A watch that was sent nothing for its `progress_ms` is sent its progress alone
(a bookmark), which also finds out a client that went away: the client socket refuses a message
to a vanished peer, or to one whose queue is full (a slow watcher), and either ends the watch.

A watch ends with an error message under its id when it cannot go on here: `COMPACTED` (the
replica no longer has the changes after its version, e.g. after installing a snapshot),
`WRONG_SHARD` (its namespace moved to another shard, or this node's replica of the shard went),
`SLOW_WATCHER` (its client did not take messages as fast as they came). The client goes on from
the last `progress` it was sent (docs/protocol.md says how).
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Final, Protocol

from confmand.kv.store import ChangeEvent
from confmand.protocol.errors import ErrorCode
from confmand.protocol.types import Version
from confmand.server.errors import RequestError
from confmand.server.pending import ClientSink, Reply
from confmand.server.requests import WatchRequest
from confmand.server.watch_window import EventWindow

log = logging.getLogger(__name__)

CHUNK_EVENTS: Final = 1_000
CHUNK_BYTES: Final = 1024 * 1024
FAREWELL_S: Final = 5.0  # how long the last message of a watch dropped for slowness is tried again

WatchKey = tuple[tuple[bytes, ...], int]  # (the client's routing envelope, the watch request's id)


class WatchedReplica(Protocol):
    """What a watch needs of a replica (server/replica.py)."""

    shard_id: int
    window: EventWindow

    def token_mismatch(self, token: Version) -> str | None: ...

    def refuse_unowned(self, keys: Iterable[str]) -> None: ...


@dataclass(slots=True)
class _Watch:
    sink: ClientSink
    request_id: int
    shard_id: int
    prefix: str
    namespaced: bool  # within one namespace: it ends when that namespace leaves the shard
    after: Version  # everything under the prefix up to here was sent (or predates the watch)
    progress_s: float
    next_progress: float  # when a bookmark is due if nothing else was sent
    seq: int = 0  # messages sent
    recheck_owner: bool = False  # a partition move stepped in the shard since the last check

    @property
    def key(self) -> WatchKey:
        return (self.sink.envelope, self.request_id)


class WatchHub:
    def __init__(
        self,
        max_watches: int,
        send: Callable[[Reply], bool],
        counters: MutableMapping[str, int],
    ) -> None:
        self.max_watches = max_watches
        self._send = send
        self.counters = counters
        self._watches: dict[WatchKey, _Watch] = {}
        self._by_shard: dict[int, dict[WatchKey, _Watch]] = {}
        self._due: set[int] = set()  # shards to look at this turn
        self._bookmarks: list[tuple[float, int, WatchKey]] = []  # (due, tie-break, watch)
        self._pushes = 0
        self._farewells: list[tuple[Reply, float]] = []

    def __len__(self) -> int:
        return len(self._watches)

    def has_due(self) -> bool:
        """Whether a watch has more to send at once (it is catching up a chunk a turn)."""
        return bool(self._due)

    def watching(self, shard_id: int) -> int:
        return len(self._by_shard.get(shard_id, ()))

    # ------------------------------------------------------------------ requests

    def open(self, replica: WatchedReplica, request: WatchRequest, sink: ClientSink, now: float) -> None:
        """Start a watch; its first message (`created`) goes out with this turn's deliveries."""
        key: WatchKey = (sink.envelope, request.common.request_id)
        if key in self._watches:
            raise RequestError(
                ErrorCode.INVALID_REQUEST, f"watch {request.common.request_id} is open on this connection"
            )
        if len(self._watches) >= self.max_watches:
            self.counters["watch_refused_overloaded"] += 1
            raise RequestError(
                ErrorCode.OVERLOADED, f"this node serves {self.max_watches} watches (requests.max_watches)"
            )
        namespaced = request.routing_key is not None
        if namespaced:
            replica.refuse_unowned([request.prefix])
        window = replica.window
        after = request.from_version
        if after is None:
            after = window.top
        else:
            if not window.serves(after.index):
                raise _compacted(replica.shard_id, after, window.floor)
            if after.index <= window.top.index:
                mismatch = replica.token_mismatch(after)
                if mismatch is not None:
                    raise RequestError(ErrorCode.UNKNOWN_VERSION, mismatch)
        progress_s = request.progress_ms / 1000
        watch = _Watch(
            sink, request.common.request_id, replica.shard_id, request.prefix, namespaced, after,
            progress_s, next_progress=now + progress_s,
        )  # fmt: skip
        self._watches[key] = watch
        self._by_shard.setdefault(replica.shard_id, {})[key] = watch
        self._due.add(replica.shard_id)
        self._schedule(watch)
        self.counters["watches_opened"] += 1

    def cancel(self, sink: ClientSink, watch_id: int) -> bool:
        """End the watch `watch_id` of this client; whether there was one."""
        watch = self._watches.get((sink.envelope, watch_id))
        if watch is None:
            return False
        self._forget(watch)
        self.counters["watches_cancelled"] += 1
        return True

    # ------------------------------------------------------------------ the loop's calls

    def applied(self, shard_id: int) -> None:
        """The shard's replica applied entries (or installed a snapshot) this turn."""
        if shard_id in self._by_shard:
            self._due.add(shard_id)

    def moves_changed(self, shard_id: int) -> None:
        """A partition move stepped in the shard: namespaced watches check they still belong."""
        for watch in self._by_shard.get(shard_id, {}).values():
            if watch.namespaced:
                watch.recheck_owner = True
        self.applied(shard_id)

    def deliver(self, replicas: Mapping[int, WatchedReplica], now: float) -> None:
        """Send each due watch its new changes, or its progress when a bookmark is due."""
        self._retry_farewells(now)
        bookmarks = self._bookmarks
        while bookmarks and bookmarks[0][0] <= now:
            _, _, key = heapq.heappop(bookmarks)
            watch = self._watches.get(key)
            if watch is None:
                continue
            if watch.next_progress > now:  # sent something since: not due yet
                self._schedule(watch)
                continue
            self._due.add(watch.shard_id)
            heapq.heappush(bookmarks, (now + watch.progress_s, self._tie(), key))
        if not self._due:
            return
        due, self._due = self._due, set()
        for shard_id in due:
            watches = self._by_shard.get(shard_id)
            if not watches:
                continue
            replica = replicas.get(shard_id)
            for watch in list(watches.values()):
                if replica is None:
                    error = RequestError(
                        ErrorCode.WRONG_SHARD, f"this node no longer holds a replica of shard {shard_id}"
                    )
                    self._end(watch, error)
                else:
                    self._deliver(watch, replica, now)

    # ------------------------------------------------------------------ one watch

    def _deliver(self, watch: _Watch, replica: WatchedReplica, now: float) -> None:
        window = replica.window
        if not window.serves(watch.after.index):  # a snapshot was installed past it
            self._end(watch, _compacted(watch.shard_id, watch.after, window.floor))
            return
        events: list[ChangeEvent] = []
        through = watch.after
        if watch.after.index < window.top.index:
            chunk, complete = window.after(watch.after.index, CHUNK_EVENTS, CHUNK_BYTES)
            prefix = watch.prefix
            events = [e for e in chunk if e[3].startswith(prefix)] if prefix else chunk
            if complete:
                through = window.top
            else:
                last = chunk[-1]
                through = Version(last[1], last[0])
                self._due.add(watch.shard_id)  # the rest next turn
        first = watch.seq == 0
        if not events and not first and now < watch.next_progress:
            watch.after = through
            return
        fields: dict[str, object] = {
            "events": [_event_wire(e) for e in events],
            "progress": str(through),
            "seq": watch.seq + 1,
        }
        if first:
            fields["created"] = True
        if not self._send(Reply(watch.sink, watch.request_id, watch.shard_id, fields)):
            self.counters["watches_dropped_slow"] += 1
            self._forget(watch)
            error = RequestError(
                ErrorCode.SLOW_WATCHER,
                "the watch's messages were not taken as fast as they came (or its client went away)",
                progress=str(watch.after),
            )
            farewell = Reply(watch.sink, watch.request_id, watch.shard_id, {}, error)
            self._farewells.append((farewell, now + FAREWELL_S))
            return
        watch.seq += 1
        watch.after = through
        watch.next_progress = now + watch.progress_s
        self.counters["watch_events_sent"] += len(events)
        if watch.recheck_owner and through.index >= window.top.index:
            self._check_owner(watch, replica)

    def _check_owner(self, watch: _Watch, replica: WatchedReplica) -> None:
        """Caught up after a move step: end the watch if its namespace left the shard."""
        watch.recheck_owner = False
        try:
            replica.refuse_unowned([watch.prefix])
        except RequestError as refused:
            if refused.code is ErrorCode.WRONG_SHARD:
                refused.extra["progress"] = str(watch.after)
                self._end(watch, refused)
            # PARTITION_MOVING: frozen, still here; the drop that ends it is another move step

    def _end(self, watch: _Watch, error: RequestError) -> None:
        self._forget(watch)
        self.counters[f"watches_ended_{error.code.lower()}"] += 1
        self._send(Reply(watch.sink, watch.request_id, watch.shard_id, {}, error))

    def _forget(self, watch: _Watch) -> None:
        key = watch.key
        del self._watches[key]
        shard = self._by_shard[watch.shard_id]
        del shard[key]
        if not shard:
            del self._by_shard[watch.shard_id]

    def _schedule(self, watch: _Watch) -> None:
        heapq.heappush(self._bookmarks, (watch.next_progress, self._tie(), watch.key))

    def _tie(self) -> int:
        self._pushes += 1
        return self._pushes

    def _retry_farewells(self, now: float) -> None:
        if not self._farewells:
            return
        kept = []
        for reply, until in self._farewells:
            if not self._send(reply) and now < until:
                kept.append((reply, until))
        self._farewells = kept


def _event_wire(event: ChangeEvent) -> dict[str, object]:
    index, term, op, key, value, hlc = event
    wire: dict[str, object] = {"type": op, "key": key, "version": f"{term}:{index}", "hlc": hlc}
    if value is not None:
        wire["value"] = value
    return wire


def _compacted(shard_id: int, asked: Version, floor: Version) -> RequestError:
    return RequestError(
        ErrorCode.COMPACTED,
        f"shard {shard_id}'s replica here no longer has the changes after {asked}; the oldest "
        f"version a watch may start from here is {floor} (list the prefix at one version, then watch "
        "from that version)",
        oldest=str(floor),
    )
