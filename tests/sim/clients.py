"""Simulated clients: the real client core (`confctl.client.call`) over the simulated network.

Each client is one process of the history: it runs one call at a time,
through the same sans-I/O `Call` state machine the `Client` and
`AsyncClient` shells drive (leader hints, retries with the same session
seq, version tokens for read-your-writes), with simulated time as its clock.

Ops and what is recorded (tests/fault/history.py):
- `put` of a unique value; `cas` by value or absence, sent either as a cas or
  as a txn (compare the value, then put): both recorded as `cas`;
- `get` at each consistency: linearizable (`get`, judged by the
  linearizability checker), version with the session's token (`vget`,
  judged for read-your-writes) and stale (`sget`, only exercised);
- `backup` of one data shard (`confctl snapshot save`'s read): every key of
  the sim's that the shard owned in its reply is recorded as a linearizable
  `get` over the backup's call and return, so a stale copy fails the
  linearizability checker as a stale read would.

A third of the calls are pinned to one node in service chosen at random (no
hint following): followers then forward them, and a deposed leader that does
not know it yet is asked too.

Outcomes: a reply is `ok`; a write refused with a code that means "never
proposed" is `fail`, but only when no earlier attempt of the same call
could have been applied; everything else a write ends with is `unknown`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from confctl.client import operations, replies
from confctl.client.call import Call, ClientCore, Done, Fail, Send
from confctl.client.errors import ConfmanError, ServerError
from confctl.client.routing import Backoff, Router
from confctl.client.session import Session
from confctl.client.shards import ShardDirectory
from confctl.client.types import Compare, GetResult, TxnOp, TxnResult, WriteResult
from confmand.kv.records import DATA, DataRecord, data_key
from confmand.kv.snapshot import decode_state
from confmand.protocol.shardmap import partition_of
from tests.fault.history import Op, Outcome, Value
from tests.sim.world import World

WRITE_FAILS = frozenset({"NOT_LEADER", "NO_QUORUM", "STORAGE", "INVALID_REQUEST", "TOO_LARGE", "CLOCK_SKEW"})
CALL_TIMEOUT_S = 3.0
BACKUP_SHARE = 0.02  # of a client's calls, once it knows the shard map
ATTEMPT_TIMEOUT_S = 1.2

SendFrame = Callable[[str, list[bytes], bytes], None]
_Pending = tuple[str, str, Value, int]  # the call being made: kind, key, input, call_ns


class SimClient:
    def __init__(
        self,
        world: World,
        process: int,
        *,
        endpoints: list[str],
        in_service: Callable[[], list[str]],
        keys: int,
        send: SendFrame,
        record: Callable[[Op], None],
    ) -> None:
        self.world = world
        self.process = process
        self.rng = world.scenario.rng(f"client/{process}")
        self.envelope = [b"client-%d" % process]
        self.core = ClientCore(
            Session(b"sim-client-%d" % process),
            Router(tuple(endpoints)),
            timeout_s=CALL_TIMEOUT_S,
            attempt_timeout_s=ATTEMPT_TIMEOUT_S,
            backoff=Backoff(rng=world.scenario.rng(f"client/{process}/backoff")),
            shards=ShardDirectory(discover=True),  # routed by the shard map, as the shells are
        )
        self.keys = keys
        self.in_service = in_service  # the endpoints of nodes not retired: where a call may be pinned
        self.pin_share = 0.33
        self._send = send
        self._record = record
        self.running = True
        self.call: Call[Any] | None = None
        self._op: _Pending | None = None
        self._attempts = 0
        self._seen: dict[str, str | None] = {}  # the last value this client saw per key
        self._counter = 0
        self.last_error: ConfmanError | None = None
        self.redrives = 0
        self._operation: tuple[Any, Callable[[Any], Any]] = (None, lambda r: r)
        self._then: Callable[[], None] | None = None
        # Its own stream, so the other ops' draws stay as they were before backups came in.
        self._backup_rng = world.scenario.rng(f"client/{process}/backup")
        self.backups = 0

    # ------------------------------------------------------------------ choosing ops

    def start(self) -> None:
        self.world.at(self.world.now + self.rng.random() * 0.02, self._next_op)

    def _next_op(self) -> None:
        if not self.running or self.call is not None:
            return
        shard_map = self.core.shards.map
        if shard_map is not None and self._backup_rng.random() < BACKUP_SHARE:
            shard = self._backup_rng.choice(shard_map.data_shards)
            self.begin("backup", "", shard, operations.backup(shard))
            return
        rng = self.rng
        key = f"k{rng.randrange(self.keys)}"
        roll = rng.random()
        if roll < 0.35:
            value = self._unique()
            self.begin("put", key, value, operations.put(key, value))
        elif roll < 0.6:
            self.begin("get", key, None, operations.get(key))
        elif roll < 0.75:
            self.begin("vget", key, None, operations.get(key, "version"))
        elif roll < 0.8:
            self.begin("sget", key, None, operations.get(key, "stale"))
        else:
            self._cas(key, use_txn=roll >= 0.92)

    def read_all(self, keys: list[str], finished: Callable[[], None]) -> None:
        """The final phase: one linearizable read of every key, then `finished`."""
        self.running = False
        pending = list(keys)

        def next_read() -> None:
            if not pending:
                finished()
                return
            key = pending.pop(0)
            self.begin("get", key, None, operations.get(key), then=next_read)

        next_read()

    def _unique(self) -> str:
        self._counter += 1
        return f"p{self.process}-{self._counter}"

    def _cas(self, key: str, use_txn: bool) -> None:
        expected = self._seen.get(key)
        new = self._unique()
        request: tuple[Any, Callable[[Any], Any]]
        if use_txn:
            compare = (
                Compare(key, "exists", exists=False)
                if expected is None
                else Compare(key, "value", value=expected.encode())
            )
            request = operations.txn([compare], [TxnOp("put", key, new.encode())])
        elif expected is None:
            request = operations.cas(key, new, expected_version="0:0")
        else:
            request = operations.cas(key, new, expected_value=expected)
        self.begin("cas", key, (expected, new), request)

    # ------------------------------------------------------------------ driving the call

    def begin(
        self,
        kind: str,
        key: str,
        value: Value,
        operation: tuple[Any, Callable[[Any], Any]],
        then: Callable[[], None] | None = None,
    ) -> None:
        now = self.world.now
        self._operation = operation
        self._op = (kind, key, value, int(now * 1e9))
        self._attempts = 0
        self._then = then
        self._start_call(None)

    def _start_call(self, seq: int | None) -> None:
        """Start the pending op's call; with `seq`, as a retry of an earlier call's write."""
        request, parse = self._operation
        now = self.world.now
        # A third of the calls go to one node chosen at random, as a client behind a load balancer
        # would: followers then forward, and a deposed leader that does not know it yet is asked too.
        choices = self.in_service()
        pinned = choices[self.rng.randrange(len(choices))] if self.rng.random() < self.pin_share else None
        self.call = call = self.core.call(request, parse, now, endpoint=pinned)
        if seq is not None and call.seq is not None:
            # The same session seq again: the server applies the write at most once and answers a
            # retry of an applied one with the first outcome (docs/protocol.md, exactly-once).
            self.core.session.finish_write(call.seq)
            call.seq = seq
            self.core.session.outstanding.add(seq)
        self._step(call.start(now))

    def _step(self, step: Send | Done[Any] | Fail) -> None:
        if isinstance(step, Send):
            self._attempts += 1
            call, rid = self.call, step.request_id
            send_at = self.world.now + step.delay_s
            self.world.at(send_at, lambda: self._send(step.endpoint, self.envelope, step.frame))
            self.world.at(send_at + step.wait_s, lambda: self._silence(call, rid))
            return
        self._finish(step)

    def on_reply(self, frame: bytes) -> None:
        reply = replies.decode(frame)
        call = self.call
        if reply is None or call is None or reply.get("id") != call.request_id:
            return  # a late answer to an attempt this call gave up on
        self._step(call.on_reply(reply, self.world.now))

    def _silence(self, call: Call[Any] | None, request_id: int) -> None:
        if call is not self.call or call is None or call.request_id != request_id:
            return
        self._step(call.on_silence(self.world.now))

    def _finish(self, step: Done[Any] | Fail) -> None:
        assert self._op is not None
        assert self.call is not None
        if isinstance(step, Fail) and self._may_have_applied(step.error):
            # Outcome unknown: retry the same write (same seq) until the cluster says what became
            # of it, as a client that must know does. The op stays open from its first call.
            seq = self.call.seq
            self.call = None  # the finished call's timers and late replies must not drive it again
            self.redrives += 1
            self.world.at(self.world.now + self.rng.uniform(0.05, 0.3), lambda: self._start_call(seq))
            return
        if isinstance(step, Done) and self._op[0] == "backup":
            for op in self._backed_up(self._op, int(self.world.now * 1e9), step.value):
                self._record(op)
        elif isinstance(step, Done):
            self._record(self._done(self._op, int(self.world.now * 1e9), step.value))
        elif self._op[0] != "backup":  # a backup that failed says nothing of any key
            self._record(self._failed(self._op, int(self.world.now * 1e9), step.error))
        self.call = None
        self._op = None
        then = self._then
        if then is not None:
            then()
        elif self.running:
            self.world.at(self.world.now + self.rng.random() * 0.01, self._next_op)

    def _done(self, pending: _Pending, now_ns: int, result: object) -> Op:
        kind, key, value, call_ns = pending
        if isinstance(result, GetResult):
            text = result.value.decode()
            self._seen[key] = text
            return Op(
                self.process,
                kind,
                key,
                None,
                call_ns,
                now_ns,
                "ok",
                text,
                str(result.version),
                result.meta.shard,
            )
        if isinstance(result, TxnResult):
            if result.succeeded:
                self._seen[key] = _new_of(value)
            # A txn whose compare failed wrote nothing: its version says nothing about the key. A
            # moved one's is the move's, which says only that the write is at or before it.
            version = str(result.version) if result.succeeded and not result.moved else None
            shard = result.meta.shard
            return Op(self.process, kind, key, value, call_ns, now_ns, "ok", result.succeeded, version, shard)
        assert isinstance(result, WriteResult)
        if kind == "cas":
            self._seen[key] = _new_of(value)
            shard = result.meta.shard
            return Op(self.process, kind, key, value, call_ns, now_ns, "ok", True, _version_of(result), shard)
        self._seen[key] = value if isinstance(value, str) else None
        shard = result.meta.shard
        return Op(self.process, kind, key, value, call_ns, now_ns, "ok", None, _version_of(result), shard)

    def _backed_up(self, pending: _Pending, now_ns: int, fields: dict[str, Any]) -> list[Op]:
        """A shard's backup, as one linearizable get per sim key the shard owned in it."""
        _, _, shard, call_ns = pending
        assert isinstance(shard, int)
        self.backups += 1
        records = {
            key: DataRecord.decode(value)
            for kind, key, value in decode_state(fields["state"])
            if kind == DATA
        }
        owned = set(fields["owns"])
        partitions = len(self.core.shards.map.owners) if self.core.shards.map is not None else 0
        ops = []
        for key in (f"k{i}" for i in range(self.keys)):
            if partition_of(key, partitions) not in owned:
                continue
            record = records.get(data_key(key))
            if record is None:
                ops.append(Op(self.process, "get", key, None, call_ns, now_ns, "ok", None))
                continue
            text = record.value.decode()
            self._seen[key] = text
            version = str(record.mod_version)
            ops.append(Op(self.process, "get", key, None, call_ns, now_ns, "ok", text, version, shard))
        return ops

    def _may_have_applied(self, error: ConfmanError) -> bool:
        assert self._op is not None
        if self._op[0] not in ("put", "cas"):
            return False
        code = error.code if isinstance(error, ServerError) else None
        return code != "CAS_FAILED" and not (code in WRITE_FAILS and self._attempts == 1)

    @property
    def idle(self) -> bool:
        return self._op is None

    def _failed(self, pending: _Pending, now_ns: int, error: ConfmanError) -> Op:
        kind, key, value, call_ns = pending
        code = error.code if isinstance(error, ServerError) else None
        if kind in ("get", "vget", "sget"):
            if code == "NOT_FOUND":
                self._seen[key] = None
                return Op(self.process, kind, key, None, call_ns, now_ns, "ok", None)
            self.last_error = error
            return Op(self.process, kind, key, None, call_ns, now_ns, "fail")
        if kind == "cas" and code == "CAS_FAILED":
            return Op(self.process, kind, key, value, call_ns, now_ns, "ok", False)
        outcome: Outcome = "fail" if code in WRITE_FAILS and self._attempts == 1 else "unknown"
        self.last_error = error
        if outcome == "fail":
            return Op(self.process, kind, key, value, call_ns, now_ns, "fail")
        return Op(self.process, kind, key, value, call_ns, None, "unknown")


def _new_of(value: Value) -> str | None:
    assert isinstance(value, tuple)
    new = value[1]
    return new if isinstance(new, str) else None


def _version_of(result: WriteResult) -> str | None:
    """The write's own version; None for one answered after a move (its version is the move's)."""
    return None if result.moved else str(result.version)
