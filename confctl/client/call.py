"""One logical request as a sans-I/O state machine, and the client core that starts them.

The shells (`sync.py`, `aio.py`) drive a `Call` with three inputs — `start`,
`on_reply(reply, now)`, `on_silence(now)` (no reply within the attempt's
wait) — and act on the step each returns:

- `Send`: wait `delay_s` (backoff), send `frame` to `endpoint`, then wait at
  most `wait_s` for the reply whose `id` is `request_id` (any other id is ignored);
- `Done`: return `value`;
- `Fail`: raise `error`.

Rules it encodes (docs/protocol.md, *Retries*):
- every attempt has a fresh request id; a write keeps its session seq across
  all attempts, so retries are exactly-once;
- non-retryable errors fail at once; NOT_LEADER with a hint goes straight to
  the hint; other retryable errors and silence move to the next endpoint;
- an endpoint already tried in this call is retried only after a backoff;
- at the overall deadline the call fails with `Unavailable`, listing the
  endpoints tried and the last error seen.

Against a sharded cluster (docs/protocol.md, *Shards*; `shards.py` keeps what is known):
- a call routed by key first fetches the shard map if the client has none yet: its
  first Send may be a `shard_map` request, answered before the real request is sent
  (UNSUPPORTED there means an older, unsharded server: nothing is routed, as before);
- a routed attempt carries `shard` and goes to the shard's leader, else its preferred
  leader, then round its replicas, then the configured endpoints; leader hints, of
  NOT_LEADER and of successes, are that shard's;
- WRONG_SHARD from a node whose map may be newer fetches the map again (there first,
  then anywhere; at once the first time, after a backoff later) and routes again, with
  the same seq: nothing was applied;
- a list across namespaces and the audit log ask every data shard in turn, the same
  page of each, and merge the pages (`merge.py`);
- versions of a routed reply raise only that shard's session token.
Time is an input (`now`, seconds on any monotonic clock): nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar, cast, overload

from confctl.client import merge, replies
from confctl.client.errors import (
    ConfmanError,
    InvalidArgument,
    ServerError,
    TooLarge,
    Unavailable,
    WrongShard,
)
from confctl.client.replies import Reply
from confctl.client.requests import READ_OPS, Request
from confctl.client.routing import Backoff, Router
from confctl.client.session import Session
from confctl.client.shards import ShardDirectory, Spread, target
from confctl.client.types import AuditResult, ListResult, ShardMapResult
from confmand.protocol.errors import ErrorCode
from confmand.protocol.requests import DEFAULT_MAX_REQUEST_BYTES, RequestEnvelope
from confmand.protocol.types import Consistency as ConsistencyMode
from confmand.protocol.types import Session as WireSession

MAX_REQUEST_BYTES = DEFAULT_MAX_REQUEST_BYTES
T = TypeVar("T")
WAIT_MIN_S = 0.001
# Errors whose leader hint names a node that can serve the request right now.
FOLLOW_HINT_CODES = frozenset({"NOT_LEADER", "NOT_CAUGHT_UP"})
MAP_SLOT: Final = -1  # the "shard" of a shard_map attempt, for telling which endpoints were tried for what


@dataclass(frozen=True, slots=True)
class Send:
    endpoint: str
    frame: bytes
    request_id: int
    delay_s: float
    wait_s: float


@dataclass(frozen=True, slots=True)
class Done(Generic[T]):
    value: T


@dataclass(frozen=True, slots=True)
class Fail:
    error: ConfmanError


Step = Send | Done[T] | Fail


@dataclass(slots=True)
class ClientCore:
    """What one client object shares between its calls: session, router, ids and timing policy."""

    session: Session
    router: Router
    timeout_s: float = 5.0
    attempt_timeout_s: float = 2.0
    principal: str | None = None
    backoff: Backoff = field(default_factory=Backoff)
    # A frame over this is refused before it is sent: a node answers it TOO_LARGE (or, far over,
    # ZeroMQ drops the connection), so sending it would only cost a round trip or the timeout.
    max_request_bytes: int = MAX_REQUEST_BYTES
    # Off unless turned on (the shells do): a core made directly speaks to one Raft group, unrouted.
    shards: ShardDirectory = field(default_factory=ShardDirectory)
    _next_id: int = 0

    def request_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def call(
        self,
        request: Request,
        parse: Callable[[Reply], T],
        now: float,
        *,
        endpoint: str | None = None,
        timeout_s: float | None = None,
    ) -> Call[T]:
        """A call of `request`; `endpoint` pins it to one node (no rotation, no hint following)."""
        deadline = now + (self.timeout_s if timeout_s is None else timeout_s)
        return Call(self, request, parse, deadline=deadline, pinned=endpoint, budget_s=deadline - now)


class Call(Generic[T]):
    def __init__(
        self,
        core: ClientCore,
        request: Request,
        parse: Callable[[Reply], T],
        *,
        deadline: float,
        pinned: str | None = None,
        budget_s: float = 0.0,
    ) -> None:
        self.core = core
        self.budget_s = budget_s
        self.request = request
        self.parse = parse
        self.deadline = deadline
        self.pinned = pinned
        self.seq = core.session.begin_write() if request.is_write else None
        self.tried: list[str] = []
        self.attempted: set[tuple[int | None, str]] = set()  # (shard or MAP_SLOT, endpoint)
        self.delayed_retries = 0
        self.last_error: ConfmanError | None = None
        self.endpoint = ""
        self.request_id = -1
        self.finished = False
        # A pinned call goes where it is pinned, whatever the map says; it still names its shard
        # (the node checks it), and the session keeps its versions under that shard's token.
        self.spread = target(request)
        self.fetching_map = False  # the attempt in flight asks for the shard map
        self.map_refetches = 0
        self.shard: int | None = None  # the shard the request in flight is routed to (None: unrouted)
        self.remaining: list[int | None] = []  # a spread call's shards still to ask after this one
        self.pages: list[tuple[int | None, T]] = []

    # ------------------------------------------------------------------ inputs

    def start(self, now: float) -> Send | Fail:
        if self.spread is not Spread.NONE and self.core.shards.needs_map:
            return self._fetch_map(self.pinned or self.core.router.first(), now)
        return self._route(now)

    def on_reply(self, reply: Reply, now: float) -> Step[T]:
        session = self.core.session
        session.observe_hlc(reply.get("hlc"))
        self.core.router.answered(self.endpoint)
        try:
            if self.fetching_map:
                return self._on_map_reply(reply, now)
            if replies.is_ok(reply):
                result = self.parse(reply)
                self._observe_success(reply, result)
                return self._landed(result, now)
            err = replies.error(reply)
        except ConfmanError as exc:  # a malformed reply: ProtocolError
            return self._finish(Fail(exc))
        return self._on_error(err, now)

    def on_silence(self, now: float) -> Send | Fail:
        """No reply within the wait: the endpoint is taken for dead (the shell resets its socket)."""
        self.core.router.forget(self.endpoint)
        if self.fetching_map:
            return self._fetch_map(self._rotate_map(), now)
        if self.shard is not None:
            self.core.shards.forget(self.shard, self.endpoint)
        return self._attempt(self._rotate(), now)

    def abandon(self) -> None:
        """The shell stops driving this call (cancelled): release its session seq."""
        self._finish(Fail(Unavailable("call abandoned")))

    # ------------------------------------------------------------------ decisions: the map

    def _fetch_map(self, endpoint: str, now: float, delay_s: float | None = None) -> Send | Fail:
        self.fetching_map = True
        return self._attempt(endpoint, now, delay_s)

    def _on_map_reply(self, reply: Reply, now: float) -> Step[T]:
        directory = self.core.shards
        if replies.is_ok(reply):
            # A server that lists the op but predates sharding answers it like `ping`: no map.
            if reply.get("owners") is None and reply.get("epoch") is None:
                directory.learn_unsharded()
            else:
                directory.learn(replies.shard_map_result(reply))
            self.fetching_map = False
            return self._route(now)
        err = replies.error(reply)
        if err.code == ErrorCode.UNSUPPORTED:
            directory.learn_unsharded()
            self.fetching_map = False
            return self._route(now)
        if not err.retryable:
            return self._finish(Fail(err))
        self.last_error = err
        return self._fetch_map(self._rotate_map(), now)

    def _rotate_map(self) -> str:
        """Any node has the map: the configured endpoints in turn, then the nodes the map named."""
        if self.pinned is not None:
            return self.pinned
        everywhere = self.core.shards.all_addresses(self.core.router.endpoints)
        if self.endpoint in everywhere:
            return everywhere[(everywhere.index(self.endpoint) + 1) % len(everywhere)]
        return everywhere[0]

    def _on_wrong_shard(self, err: WrongShard, now: float) -> Send | Fail:
        self.last_error = err
        known = self.core.shards.map
        if known is not None and err.epoch is not None:
            behind = err.epoch < known.epoch
            agrees = err.epoch == known.epoch and err.shard in (None, self.shard)
            if behind or agrees:
                # Its map is no newer than ours: the node lags, or holds no replica of the shard.
                if self.shard is not None:
                    self.core.shards.forget(self.shard, self.endpoint)
                return self._attempt(self._rotate(), now)
        # The node that said so has the newer map: ask it first, at once; later refetches back off.
        delay_s = 0.0 if self.map_refetches == 0 else self._backoff_s()
        endpoint = self.endpoint if self.map_refetches == 0 else self._rotate_map()
        self.map_refetches += 1
        return self._fetch_map(endpoint, now, delay_s)

    # ------------------------------------------------------------------ decisions: the request

    def _route(self, now: float) -> Send | Fail:
        """Send the request to the first of its shards, by the map as it now is."""
        shards = self.core.shards.shards_for(self.spread)
        if len(shards) > 1 and "at_version" in self.request.fields:
            message = "a version is one shard's: list at a version within one namespace ('ns/...')"
            return self._finish(Fail(InvalidArgument(message)))
        self.shard, self.remaining, self.pages = shards[0], shards[1:], []
        return self._attempt(self._first(), now)

    def _landed(self, result: T, now: float) -> Step[T]:
        if not self.pages and not self.remaining:
            return self._finish(Done(result))
        self.pages.append((self.shard, result))
        if self.remaining:
            self.shard = self.remaining.pop(0)
            return self._attempt(self._first(), now)
        return self._finish(Done(self._merged()))

    def _merged(self) -> T:
        limit = self.request.fields.get("limit")
        assert isinstance(limit, int)  # requests.list_ and requests.audit always set it
        pages: list[tuple[int | None, Any]] = list(self.pages)
        if self.request.op == "list":
            return cast(T, merge.list_pages([cast(ListResult, p) for _, p in pages], limit))
        return cast(T, merge.audit_pages([(s, cast(AuditResult, p)) for s, p in pages], limit))

    def _on_error(self, err: ServerError, now: float) -> Send | Fail:
        if err.code == ErrorCode.CLOCK_SKEW:
            # An older server refused our stamp (one a node whose clock ran ahead handed out):
            # drop it, so the next call is not refused again; causality across nodes is lost
            # for this client until it sees stamps again.
            self.core.session.hlc = 0
        if isinstance(err, WrongShard) and self.core.shards.discover:  # pinned too: its map may be old
            return self._on_wrong_shard(err, now)
        if not err.retryable:
            return self._finish(Fail(err))
        self.last_error = err
        hint = err.leader
        if hint is not None and hint.address != self.endpoint:
            self._learn_leader(hint.address)
            if self.pinned is None and err.code in FOLLOW_HINT_CODES:
                return self._attempt(hint.address, now)
        elif self.shard is not None:
            self.core.shards.forget(self.shard, self.endpoint)
        else:
            self.core.router.forget(self.endpoint)
        return self._attempt(self._rotate(), now)

    def _learn_leader(self, address: str) -> None:
        if self.shard is not None:
            self.core.shards.learn_leader(self.shard, address)
        elif self.core.shards.map is None:
            self.core.router.learn_leader(address)
        # else: a node-level reply of a sharded cluster: its hint is of no shard we can name

    def _first(self) -> str:
        if self.pinned is not None:
            return self.pinned
        if self.shard is None:
            return self.core.router.first()
        return self._candidates()[0]

    def _rotate(self) -> str:
        if self.pinned is not None:
            return self.pinned
        if self.shard is None:
            return self.core.router.next_after(self.endpoint)
        candidates = self._candidates()
        if self.endpoint in candidates:
            return candidates[(candidates.index(self.endpoint) + 1) % len(candidates)]
        return candidates[0]

    def _candidates(self) -> tuple[str, ...]:
        assert self.shard is not None
        return self.core.shards.candidates(self.shard, self.core.router.endpoints)

    def _backoff_s(self) -> float:
        delay_s = self.core.backoff.delay_s(self.delayed_retries)
        self.delayed_retries += 1
        return delay_s

    def _attempt(self, endpoint: str, now: float, delay_s: float | None = None) -> Send | Fail:
        slot = MAP_SLOT if self.fetching_map else self.shard
        if delay_s is None:
            delay_s = self._backoff_s() if (slot, endpoint) in self.attempted else 0.0
        remaining_s = self.deadline - now - delay_s
        if remaining_s < WAIT_MIN_S:
            return self._finish(Fail(self._unavailable()))
        wait_s = min(self.core.attempt_timeout_s, remaining_s)
        self.endpoint = endpoint
        self.attempted.add((slot, endpoint))
        if endpoint not in self.tried:
            self.tried.append(endpoint)
        self.request_id = self.core.request_id()
        frame = self._frame(wait_s)
        if len(frame) > self.core.max_request_bytes:
            limit = self.core.max_request_bytes
            message = f"request of {len(frame)} bytes is over max_request_bytes={limit} (not sent)"
            return self._finish(Fail(TooLarge(message)))
        return Send(endpoint, frame, self.request_id, delay_s, wait_s)

    def _frame(self, wait_s: float) -> bytes:
        core, req = self.core, self.request
        session = core.session
        # Ask the server to answer (TIMEOUT) a little before we stop listening.
        timeout_ms = max(1, int(wait_s * 900))
        hlc = session.hlc or None
        if self.fetching_map:
            envelope = RequestEnvelope(self.request_id, "shard_map", hlc, core.principal, timeout_ms)
            return envelope.encode({})
        consistency = min_version = None
        if req.op in READ_OPS and req.consistency is not None:
            consistency = ConsistencyMode(req.consistency)
            if consistency is ConsistencyMode.VERSION:
                min_version = session.read_floor(req.min_version, self.shard)
        envelope = RequestEnvelope(
            self.request_id,
            req.op,
            hlc=hlc,
            principal=core.principal,
            timeout_ms=timeout_ms,
            session=None if self.seq is None else WireSession(session.client_id, self.seq, session.ack),
            consistency=consistency,
            min_version=min_version,
            shard=self.shard,
        )
        return envelope.encode(req.fields)

    def _observe_success(self, reply: Reply, result: object) -> None:
        session = self.core.session
        if self.request.op == "shard_map":
            if isinstance(result, ShardMapResult) and self.core.shards.discover:
                self.core.shards.learn(result)
            return
        if self.request.op == "status":
            return  # a node's view of itself says nothing about what this session wrote or read
        # The versions are the reply's shard's; an unrouted call keeps the one token of old.
        shard = self.shard
        if shard is not None:
            shard = replies.shard(reply) or shard  # data shards count from 1
        for name in ("version", "applied"):
            session.observe_version(replies.version(reply, name, optional=True), shard)
        hint = replies.leader_hint(reply)
        if hint is not None:
            self._learn_leader(hint.address)

    def _unavailable(self) -> Unavailable:
        tried = ", ".join(self.tried) or "none"
        msg = f"no node answered within {self.budget_s:g}s (tried {tried})"
        if self.last_error is not None:
            msg += f"; last error {self.last_error}"
        return Unavailable(msg, endpoints_tried=tuple(self.tried), last_error=self.last_error)

    @overload
    def _finish(self, step: Fail) -> Fail: ...
    @overload
    def _finish(self, step: Done[T]) -> Done[T]: ...
    def _finish(self, step: Done[T] | Fail) -> Done[T] | Fail:
        if not self.finished and self.seq is not None:
            self.core.session.finish_write(self.seq)
        self.finished = True
        return step
