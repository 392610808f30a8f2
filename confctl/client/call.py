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
Time is an input (`now`, seconds on any monotonic clock): nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar, overload

from confctl.client import replies
from confctl.client.errors import ConfmanError, ServerError, TooLarge, Unavailable
from confctl.client.replies import Reply
from confctl.client.requests import READ_OPS, Request
from confctl.client.routing import Backoff, Router
from confctl.client.session import Session
from confmand.protocol.errors import ErrorCode
from confmand.protocol.requests import DEFAULT_MAX_REQUEST_BYTES, RequestEnvelope
from confmand.protocol.types import Consistency as ConsistencyMode
from confmand.protocol.types import Session as WireSession

MAX_REQUEST_BYTES = DEFAULT_MAX_REQUEST_BYTES
T = TypeVar("T")
WAIT_MIN_S = 0.001
# Errors whose leader hint names a node that can serve the request right now.
FOLLOW_HINT_CODES = frozenset({"NOT_LEADER", "NOT_CAUGHT_UP"})


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
        self.delayed_retries = 0
        self.last_error: ConfmanError | None = None
        self.endpoint = ""
        self.request_id = -1
        self.finished = False

    # ------------------------------------------------------------------ inputs

    def start(self, now: float) -> Send | Fail:
        return self._attempt(self.pinned or self.core.router.first(), now)

    def on_reply(self, reply: Reply, now: float) -> Step[T]:
        session = self.core.session
        session.observe_hlc(reply.get("hlc"))
        self.core.router.answered(self.endpoint)
        try:
            if replies.is_ok(reply):
                result = self.parse(reply)
                self._observe_success(reply)
                return self._finish(Done(result))
            err = replies.error(reply)
        except ConfmanError as exc:  # a malformed reply: ProtocolError
            return self._finish(Fail(exc))
        return self._on_error(err, now)

    def on_silence(self, now: float) -> Send | Fail:
        """No reply within the wait: the endpoint is taken for dead (the shell resets its socket)."""
        self.core.router.forget(self.endpoint)
        return self._attempt(self._rotate(), now)

    def abandon(self) -> None:
        """The shell stops driving this call (cancelled): release its session seq."""
        self._finish(Fail(Unavailable("call abandoned")))

    # ------------------------------------------------------------------ decisions

    def _on_error(self, err: ServerError, now: float) -> Send | Fail:
        if err.code == ErrorCode.CLOCK_SKEW:
            # An older server refused our stamp (one a node whose clock ran ahead handed out):
            # drop it, so the next call is not refused again; causality across nodes is lost
            # for this client until it sees stamps again.
            self.core.session.hlc = 0
        if not err.retryable:
            return self._finish(Fail(err))
        self.last_error = err
        router = self.core.router
        hint = err.leader
        if hint is not None and hint.address != self.endpoint:
            router.learn_leader(hint.address)
            if self.pinned is None and err.code in FOLLOW_HINT_CODES:
                return self._attempt(hint.address, now)
        else:
            router.forget(self.endpoint)
        return self._attempt(self._rotate(), now)

    def _rotate(self) -> str:
        return self.pinned or self.core.router.next_after(self.endpoint)

    def _attempt(self, endpoint: str, now: float) -> Send | Fail:
        delay_s = 0.0
        if endpoint in self.tried:
            delay_s = self.core.backoff.delay_s(self.delayed_retries)
            self.delayed_retries += 1
        remaining_s = self.deadline - now - delay_s
        if remaining_s < WAIT_MIN_S:
            return self._finish(Fail(self._unavailable()))
        wait_s = min(self.core.attempt_timeout_s, remaining_s)
        self.endpoint = endpoint
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
        consistency = min_version = None
        if req.op in READ_OPS and req.consistency is not None:
            consistency = ConsistencyMode(req.consistency)
            if consistency is ConsistencyMode.VERSION:
                min_version = session.read_floor(req.min_version)
        envelope = RequestEnvelope(
            self.request_id,
            req.op,
            hlc=session.hlc or None,
            principal=core.principal,
            # Ask the server to answer (TIMEOUT) a little before we stop listening.
            timeout_ms=max(1, int(wait_s * 900)),
            session=None if self.seq is None else WireSession(session.client_id, self.seq, session.ack),
            consistency=consistency,
            min_version=min_version,
        )
        return envelope.encode(req.fields)

    def _observe_success(self, reply: Reply) -> None:
        session = self.core.session
        if self.request.op == "status":
            return  # a node's view of itself says nothing about what this session wrote or read
        for name in ("version", "applied"):
            session.observe_version(replies.version(reply, name, optional=True))
        hint = replies.leader_hint(reply)
        if hint is not None:
            self.core.router.learn_leader(hint.address)

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
