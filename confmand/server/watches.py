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

Watches that are caught up ("live") cost nothing per turn unless a change is theirs: each shard
keeps one cursor (everything up to it was sent to every live watch), its live watches indexed by
namespace, and a turn's new changes go to the watches of their key's namespace (and to those
whose prefix spans namespaces) only. A watch behind the cursor (just opened from an older
version, or catching up) is served on its own, a chunk a turn, and joins the live ones once it
reaches the cursor. So 10,000 idle watches on one node cost a turn nothing but their bookmarks.

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
from dataclasses import dataclass, field
from typing import Final, Protocol

from confmand.kv.store import ChangeEvent
from confmand.protocol.errors import ErrorCode
from confmand.protocol.shardmap import namespace_of
from confmand.protocol.types import Version
from confmand.server.errors import RequestError
from confmand.server.pending import ClientSink, Reply
from confmand.server.requests import WatchRequest
from confmand.server.watch_window import EventWindow

log = logging.getLogger(__name__)

CHUNK_EVENTS: Final = 1_000
CHUNK_BYTES: Final = 1024 * 1024
_ALL: Final = 1 << 62  # no limit: a live watch is sent all of a turn's changes that are its
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
    namespace: str | None  # within one namespace (it ends when that leaves the shard), or None
    after: Version  # (while behind) everything under the prefix up to here was sent
    progress_s: float
    next_progress: float  # when a bookmark is due if nothing else was sent
    seq: int = 0  # messages sent
    live: bool = False  # caught up: its `after` is the shard's cursor
    recheck_owner: bool = False  # a partition move stepped in the shard since the last check

    @property
    def key(self) -> WatchKey:
        return (self.sink.envelope, self.request_id)


@dataclass(slots=True)
class _ShardWatches:
    """One shard's watches on this node, and how far the live ones were sent."""

    cursor: Version | None = None  # every live watch was sent everything up to here
    watches: dict[WatchKey, _Watch] = field(default_factory=dict)
    live_by_namespace: dict[str, dict[WatchKey, _Watch]] = field(default_factory=dict)
    live_spanning: dict[WatchKey, _Watch] = field(default_factory=dict)  # prefixes across namespaces
    behind: dict[WatchKey, _Watch] = field(default_factory=dict)
    bookmarks: list[_Watch] = field(default_factory=list)  # live watches due a bookmark this turn
    recheck_owner: bool = False

    def live(self) -> list[_Watch]:
        return [
            *self.live_spanning.values(),
            *(w for g in self.live_by_namespace.values() for w in g.values()),
        ]

    def go_live(self, watch: _Watch) -> None:
        self.behind.pop(watch.key, None)
        watch.live = True
        if watch.namespace is None:
            self.live_spanning[watch.key] = watch
        else:
            self.live_by_namespace.setdefault(watch.namespace, {})[watch.key] = watch

    def fall_behind(self, watch: _Watch, after: Version) -> None:
        self._unlive(watch)
        watch.after = after
        self.behind[watch.key] = watch

    def remove(self, watch: _Watch) -> None:
        self._unlive(watch)
        self.behind.pop(watch.key, None)
        del self.watches[watch.key]

    def _unlive(self, watch: _Watch) -> None:
        if not watch.live:
            return
        watch.live = False
        if watch.namespace is None:
            del self.live_spanning[watch.key]
        else:
            group = self.live_by_namespace[watch.namespace]
            del group[watch.key]
            if not group:
                del self.live_by_namespace[watch.namespace]


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
        self._shards: dict[int, _ShardWatches] = {}
        self._due: set[int] = set()  # shards to look at this turn
        self._bookmarks: list[tuple[float, int, WatchKey]] = []  # (due, tie-break, watch)
        self._pushes = 0
        self._farewells: list[tuple[Reply, float]] = []

    def __len__(self) -> int:
        return len(self._watches)

    def has_due(self) -> bool:
        """Whether a watch has more to send at once (it is catching up a chunk a turn)."""
        return bool(self._due)

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
        namespace = None
        if request.routing_key is not None:
            replica.refuse_unowned([request.prefix])
            namespace = namespace_of(request.prefix)
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
            sink, request.common.request_id, replica.shard_id, request.prefix, namespace, after,
            progress_s, next_progress=now + progress_s,
        )  # fmt: skip
        self._watches[key] = watch
        shard = self._shards.setdefault(replica.shard_id, _ShardWatches())
        shard.watches[key] = watch
        shard.behind[key] = watch  # it sends its first message, then joins the live ones
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
        if shard_id in self._shards:
            self._due.add(shard_id)

    def moves_changed(self, shard_id: int) -> None:
        """A partition move stepped in the shard: namespaced watches check they still belong."""
        shard = self._shards.get(shard_id)
        if shard is None:
            return
        shard.recheck_owner = True
        for watch in shard.behind.values():
            if watch.namespace is not None:
                watch.recheck_owner = True
        self._due.add(shard_id)

    def deliver(self, replicas: Mapping[int, WatchedReplica], now: float) -> None:
        """Send each due watch its new changes, or its progress when a bookmark is due."""
        self._retry_farewells(now)
        self._due_bookmarks(now)
        if not self._due:
            return
        due, self._due = self._due, set()
        for shard_id in due:
            shard = self._shards.get(shard_id)
            if shard is None:
                continue
            replica = replicas.get(shard_id)
            if replica is None:
                error = RequestError(
                    ErrorCode.WRONG_SHARD, f"this node no longer holds a replica of shard {shard_id}"
                )
                for watch in list(shard.watches.values()):
                    self._end(watch, error)
                continue
            self._deliver_live(shard, replica, now)
            for watch in list(shard.behind.values()):
                self._deliver_behind(watch, shard, replica, now)

    # ------------------------------------------------------------------ live watches

    def _due_bookmarks(self, now: float) -> None:
        bookmarks = self._bookmarks
        while bookmarks and bookmarks[0][0] <= now:
            _, _, key = heapq.heappop(bookmarks)
            watch = self._watches.get(key)
            if watch is None:
                continue
            if watch.next_progress > now:  # sent something since: not due yet
                self._schedule(watch)
                continue
            heapq.heappush(bookmarks, (now + watch.progress_s, self._tie(), key))
            if watch.live:
                self._shards[watch.shard_id].bookmarks.append(watch)
            self._due.add(watch.shard_id)

    def _deliver_live(self, shard: _ShardWatches, replica: WatchedReplica, now: float) -> None:
        """The changes applied since the cursor, to the live watches they are under."""
        window = replica.window
        cursor = shard.cursor
        if cursor is None:
            shard.cursor = window.top  # no live watch yet: start here
        elif cursor.index > window.top.index:
            # A replica opened anew, behind what its watches were told: each waits alone until
            # the replica passes what it was told (or is told COMPACTED), never told twice.
            for watch in shard.live():
                shard.fall_behind(watch, cursor)
            shard.cursor = window.top
        elif cursor.index < window.top.index:
            if not window.serves(cursor.index):  # a snapshot installed past it: each is told alone
                for watch in shard.live():
                    shard.fall_behind(watch, cursor)
            else:
                self._dispatch(shard, window.after(cursor.index, _ALL, _ALL)[0], window.top, now)
            shard.cursor = window.top
        bookmarks, shard.bookmarks = shard.bookmarks, []
        for due in bookmarks:
            if due.live and now >= due.next_progress:
                self._send_batch(due, [], window.top, now)
        if shard.recheck_owner:
            shard.recheck_owner = False
            for group in list(shard.live_by_namespace.values()):
                for watch in list(group.values()):
                    self._check_owner(watch, replica)

    def _dispatch(self, shard: _ShardWatches, events: list[ChangeEvent], top: Version, now: float) -> None:
        told: dict[WatchKey, list[ChangeEvent]] = {}
        spanning = shard.live_spanning
        by_namespace = shard.live_by_namespace
        for event in events:
            key = event[3]
            group = by_namespace.get(namespace_of(key)) if by_namespace else None
            for watches in (group, spanning):
                if watches:
                    for wkey, watch in watches.items():
                        if key.startswith(watch.prefix):
                            told.setdefault(wkey, []).append(event)
        for wkey, mine in told.items():
            found = self._watches.get(wkey)
            if found is not None and found.live:
                self._send_batch(found, mine, top, now)

    # ------------------------------------------------------------------ watches behind

    def _deliver_behind(
        self, watch: _Watch, shard: _ShardWatches, replica: WatchedReplica, now: float
    ) -> None:
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
        if events or watch.seq == 0 or now >= watch.next_progress:
            if not self._send_batch(watch, events, through, now):
                return
        else:
            watch.after = through
        if shard.cursor is not None and through.index == shard.cursor.index == window.top.index:
            shard.go_live(watch)
            if watch.recheck_owner:
                self._check_owner(watch, replica)

    # ------------------------------------------------------------------ one watch

    def _send_batch(self, watch: _Watch, events: list[ChangeEvent], through: Version, now: float) -> bool:
        """Send `events` and `through` as the watch's next message; False if it was dropped."""
        fields: dict[str, object] = {
            "events": [_event_wire(e) for e in events],
            "progress": str(through),
            "seq": watch.seq + 1,
        }
        if watch.seq == 0:
            fields["created"] = True
        if not self._send(Reply(watch.sink, watch.request_id, watch.shard_id, fields)):
            self.counters["watches_dropped_slow"] += 1
            told = self._shards[watch.shard_id].cursor if watch.live else watch.after
            self._forget(watch)
            error = RequestError(
                ErrorCode.SLOW_WATCHER,
                "the watch's messages were not taken as fast as they came (or its client went away)",
                progress=str(told),
            )
            farewell = Reply(watch.sink, watch.request_id, watch.shard_id, {}, error)
            self._farewells.append((farewell, now + FAREWELL_S))
            return False
        watch.seq += 1
        watch.after = through
        watch.next_progress = now + watch.progress_s
        self.counters["watch_events_sent"] += len(events)
        return True

    def _check_owner(self, watch: _Watch, replica: WatchedReplica) -> None:
        """Caught up after a move step: end the watch if its namespace left the shard."""
        watch.recheck_owner = False
        try:
            replica.refuse_unowned([watch.prefix])
        except RequestError as refused:
            if refused.code is ErrorCode.WRONG_SHARD:
                shard = self._shards[watch.shard_id]
                told = shard.cursor if watch.live else watch.after
                refused.extra["progress"] = str(told)
                self._end(watch, refused)
            # PARTITION_MOVING: frozen, still here; the drop that ends it is another move step

    def _end(self, watch: _Watch, error: RequestError) -> None:
        self._forget(watch)
        self.counters[f"watches_ended_{error.code.lower()}"] += 1
        self._send(Reply(watch.sink, watch.request_id, watch.shard_id, {}, error))

    def _forget(self, watch: _Watch) -> None:
        del self._watches[watch.key]
        shard = self._shards[watch.shard_id]
        shard.remove(watch)
        if not shard.watches:
            del self._shards[watch.shard_id]

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
