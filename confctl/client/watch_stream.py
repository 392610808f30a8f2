"""One shard's watch stream as a sans-I/O state machine: where to (re)open it, what it told.

The shells (watch.py for asyncio, the simulator's watcher) feed a `ShardStream` three inputs —
`start(now)`, `on_reply(reply, now)` for a message under its current `request_id`, and
`on_silence(now)` when nothing came for `silence_s` since the last message, or since an open was
sent (after its delay) — and act on
the list of actions each returns, in order:

- `Open`: wait `delay_s`, then send `frame` (a `watch` request) to `endpoint`; from then on the
  stream's messages are those under `request_id` (any other id is not this stream's now);
- `Cancel`: send `frame` (a `cancel_watch`) to `endpoint`, best effort (the node may be gone);
- `Told`: hand `batch` to the application;
- `Ended`: the stream cannot go on: raise `error`.

The rules (docs/protocol.md, *Watches*): the stream remembers `after`, the last progress it was
told. It moves to the next replica of the shard and opens there from `after` when its node goes
quiet, skips a message (a gap in `seq`), or ends the watch with a retryable error (SLOW_WATCHER,
its replica gone); a replica answering COMPACTED is passed over while another may keep more. A
namespace that moved to another shard (WRONG_SHARD naming another owner) ends the stream:
versions of the new shard are another log's. Once every candidate was tried since the stream
last moved on, each further open waits a backoff. Time is an input: nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from confctl.client import replies
from confctl.client.call import ClientCore
from confctl.client.errors import Compacted, ConfmanError, ProtocolError, WrongShard
from confctl.client.replies import Reply
from confctl.client.routing import Backoff
from confctl.client.types import WatchBatch, WatchEvent
from confmand.protocol.requests import RequestEnvelope
from confmand.protocol.shardmap import NAMESPACE_SEPARATOR
from confmand.protocol.types import Version

SILENT_BOOKMARKS: Final = 5  # bookmarks missed in a row before a node counts as gone
SILENCE_SLACK_S: Final = 1.0
MAX_BACKOFF_S: Final = 2.0
GIVE_UP_ROUNDS: Final = 2  # rounds over every candidate, some COMPACTED and none serving, before the end


@dataclass(frozen=True, slots=True)
class Open:
    endpoint: str
    frame: bytes
    request_id: int
    delay_s: float


@dataclass(frozen=True, slots=True)
class Cancel:
    endpoint: str
    frame: bytes


@dataclass(frozen=True, slots=True)
class Told:
    batch: WatchBatch


@dataclass(frozen=True, slots=True)
class Ended:
    error: ConfmanError


Action = Open | Cancel | Told | Ended


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
        key = replies.need(item, "key", str)
        version = replies.need_version(item, "version")
        hlc = replies.need(item, "hlc", int)
        events.append(WatchEvent("put" if kind == "put" else "delete", key, value, version, hlc, shard))
    progress = replies.need_version(reply, "progress")
    return seq, WatchBatch(tuple(events), progress, shard, replies.meta(reply).node_id)


class ShardStream:
    """A watch of `prefix` in `shard` (None: an unsharded server), after `after` (None: from now)."""

    def __init__(
        self, core: ClientCore, prefix: str, shard: int | None, after: Version | None, progress_ms: int
    ) -> None:
        self.core = core
        self.prefix = prefix
        self.shard = shard
        self.after = after
        self.progress_ms = progress_ms
        self.silence_s = SILENT_BOOKMARKS * progress_ms / 1000 + SILENCE_SLACK_S
        self.backoff = Backoff(max_s=MAX_BACKOFF_S, rng=core.backoff.rng)
        self.endpoint: str | None = None
        self.request_id: int | None = None
        self.resumes = 0  # times the stream opened again after it had streamed
        self._expected_seq = 1
        self._attempts = 0
        self._tried = 0  # opens since the stream last got a message
        self._compacted: set[str] = set()
        self._last_compacted: Compacted | None = None

    @property
    def streaming(self) -> bool:
        """Whether the current open was answered: the node has a watch to cancel."""
        return self._expected_seq > 1

    def start(self, now: float) -> list[Action]:
        return [self._open_next()]

    def on_reply(self, reply: Reply, now: float) -> list[Action]:
        try:
            return self._on_reply(reply)
        except ProtocolError as exc:
            return [Ended(exc)]

    def on_silence(self, now: float) -> list[Action]:
        """Nothing for `silence_s`: the node or the way to it is gone; go on elsewhere."""
        return self._move_on()

    # ------------------------------------------------------------------ inside

    def _on_reply(self, reply: Reply) -> list[Action]:
        if not replies.is_ok(reply):
            return self._on_error(replies.error(reply))
        seq, batch = parse_batch(reply)
        if seq != self._expected_seq:
            return self._move_on()  # a message lost on the way: resume from what was told
        if batch.shard != self.shard:
            raise ProtocolError(f"a watch of shard {self.shard} got a message of shard {batch.shard}")
        self._expected_seq += 1
        self.after = batch.progress
        self._tried = 0
        self._compacted.clear()
        self._last_compacted = None
        return [Told(batch)]

    def _on_error(self, error: ConfmanError) -> list[Action]:
        was_streaming = self.streaming
        self._expected_seq = 1  # the node ended or refused the watch: nothing there to cancel
        if (
            isinstance(error, WrongShard)
            and NAMESPACE_SEPARATOR in self.prefix
            and error.shard is not None
            and error.shard != self.shard
        ):
            return [
                Ended(
                    Compacted(
                        f"the namespace of {self.prefix!r} moved from shard {self.shard} to shard "
                        f"{error.shard}: list it at one version and watch from there ({error.message})"
                    )
                )
            ]
        if isinstance(error, Compacted):
            assert self.endpoint is not None
            self._compacted.add(self.endpoint)
            self._last_compacted = error
            if self._compacted >= set(self._candidates()):
                return [Ended(error)]
            return [self._open_next()]
        if not error.retryable:
            return [Ended(error)]
        if was_streaming:
            self._tried = 0
            self.resumes += 1
        return [self._open_next()]

    def close(self) -> list[Action]:
        """The application is done: tell the node serving the stream, if one is."""
        cancel = self._cancel()
        self._expected_seq = 1
        return [] if cancel is None else [cancel]

    def _move_on(self) -> list[Action]:
        actions: list[Action] = []
        cancel = self._cancel()
        if cancel is not None:
            actions.append(cancel)
            self._tried = 0
            self.resumes += 1
        actions.append(self._open_next())
        return actions

    def _cancel(self) -> Cancel | None:
        if not self.streaming or self.endpoint is None or self.request_id is None:
            return None
        envelope = RequestEnvelope(self.core.request_id(), "cancel_watch", principal=self.core.principal)
        return Cancel(self.endpoint, envelope.encode({"watch_id": self.request_id}))

    def _open_next(self) -> Open | Ended:
        if self._last_compacted is not None and self._tried >= GIVE_UP_ROUNDS * len(self._candidates()):
            # Some replicas no longer have the changes, and the others did not answer, round after
            # round: those that come back will not have them either (a node restarted keeps none).
            return Ended(self._last_compacted)
        candidates = [c for c in self._candidates() if c not in self._compacted] or self._candidates()
        endpoint = candidates[self._attempts % len(candidates)]
        self._attempts += 1
        self._tried += 1
        over = self._tried - len(candidates)
        delay_s = self.backoff.delay_s(over) if over > 0 else 0.0
        self.endpoint = endpoint
        self.request_id = self.core.request_id()
        self._expected_seq = 1
        fields: dict[str, object] = {"prefix": self.prefix, "progress_ms": self.progress_ms}
        if self.after is not None:
            fields["from_version"] = str(self.after)
        envelope = RequestEnvelope(self.request_id, "watch", principal=self.core.principal, shard=self.shard)
        return Open(endpoint, envelope.encode(fields), self.request_id, delay_s)

    def _candidates(self) -> list[str]:
        fallback = self.core.router.endpoints
        if self.shard is None:
            return list(fallback)
        return list(self.core.shards.candidates(self.shard, fallback))
