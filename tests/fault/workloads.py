"""The client workloads of a fault run: each records what it asked and what it learnt.

Every client is a thread with its own DEALER socket per node (tests/integration's `Conn`),
sending one request at a time to a node chosen at random (followers forward to the leader),
with a short timeout, and recording one `Op` per call. A reply maps to an outcome so:

- a success is ``ok``; so is CAS_FAILED for a cas (it observed the value: output False) and
  NOT_FOUND for a read (output None);
- NOT_LEADER, NO_QUORUM, STORAGE, NOT_CAUGHT_UP and other refusals are ``fail``: the daemon
  answers them only for a write it never proposed, or one whose log slot another entry took
  (docs/daemon.md), so the write did not and will not apply;
- TIMEOUT or no reply is ``unknown``: the write may apply at any time, or never.

Four workloads (issue 4 §2):
- `Registers`: put / get / cas on 20 keys, judged by the linearizability checker;
- `Sets`: unique elements added to per-key lists by read-then-cas; the final lists must hold
  every acknowledged element, nothing never attempted, nothing twice;
- `ReadYourWrites`: a write, then a read with its version token from another node;
- `ExactlyOnce`: writes through the Python client, which retries through timeouts with the
  same session seq; each key's change count must lie between what was acknowledged and what
  was attempted (a write applied twice would push it over).
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from confctl.client import Client, ConfmanError
from tests.fault.history import History, Op, Outcome, Value
from tests.integration.harness import Conn, Reply

OP_TIMEOUT_S = 1.0
WRITE_FAILS = frozenset({"NOT_LEADER", "NO_QUORUM", "STORAGE", "INVALID_REQUEST", "TOO_LARGE", "UNSUPPORTED"})


def now_ns() -> int:
    return time.monotonic_ns()


def code_of(reply: Reply | None) -> str | None:
    if reply is None:
        return "TIMEOUT"
    if reply.get("ok"):
        return None
    return str(reply["error"]["code"])


def text(value: object) -> str | None:
    return value.decode() if isinstance(value, bytes) else None


class Recorder:
    """One history shared by every client of a run (appends are atomic under the GIL)."""

    def __init__(self) -> None:
        self.history = History()
        self._lock = threading.Lock()

    def record(self, op: Op) -> None:
        with self._lock:
            self.history.append(op)


@dataclass
class ClientContext:
    process: int
    addresses: dict[int, str]
    rng: random.Random
    recorder: Recorder
    conns: dict[int, Conn] = field(default_factory=dict)

    def conn(self, node: int | None = None) -> tuple[int, Conn]:
        node = node if node is not None else self.rng.choice(sorted(self.addresses))
        if node not in self.conns:
            self.conns[node] = Conn(self.addresses[node])
        return node, self.conns[node]

    def call(self, request: dict[str, Any], node: int | None = None) -> Reply | None:
        _, conn = self.conn(node)
        return conn.call({**request, "timeout_ms": int(OP_TIMEOUT_S * 800)}, OP_TIMEOUT_S)

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()
        self.conns.clear()


def write_outcome(reply: Reply | None) -> Outcome:
    code = code_of(reply)
    if code is None:
        return "ok"
    return "fail" if code in WRITE_FAILS else "unknown"


# ---------------------------------------------------------------------- registers


@dataclass
class Registers:
    """put / get / cas on `keys` keys, unique values; judged by the linearizability checker."""

    keys: int = 20
    name: str = "registers"
    counter: int = 0

    def step(self, ctx: ClientContext) -> None:
        key = f"reg{ctx.rng.randrange(self.keys)}/r"
        roll = ctx.rng.random()
        if roll < 0.4:
            self._put(ctx, key)
        elif roll < 0.8:
            self._get(ctx, key)
        else:
            self._cas(ctx, key)

    def _unique(self, ctx: ClientContext) -> str:
        self.counter += 1  # racy across threads, but made unique by the process id
        return f"{ctx.process}-{self.counter}-{ctx.rng.randrange(1 << 30)}"

    def _put(self, ctx: ClientContext, key: str) -> None:
        value = self._unique(ctx)
        call = _Call("put", key, value)
        reply = ctx.call({"op": "put", "key": key, "value": value.encode()})
        _record(ctx, call, write_outcome(reply), None, reply)

    def _get(self, ctx: ClientContext, key: str) -> None:
        call = _Call("get", key, None)
        reply = ctx.call({"op": "get", "key": key})
        code = code_of(reply)
        if code is None:
            assert reply is not None
            _record(ctx, call, "ok", text(reply["value"]), reply)
        else:
            # NOT_FOUND observed an absent key; anything else observed nothing.
            _record(ctx, call, "ok" if code == "NOT_FOUND" else "fail", None, reply)

    def _cas(self, ctx: ClientContext, key: str) -> None:
        expected = self._last_seen(ctx, key)
        new = self._unique(ctx)
        request: dict[str, Any] = {"op": "cas", "key": key, "value": new.encode()}
        if expected is None:
            request["expected_version"] = "0:0"
        else:
            request["expected_value"] = expected.encode()
        call = _Call("cas", key, (expected, new))
        reply = ctx.call(request)
        if code_of(reply) == "CAS_FAILED":
            _record(ctx, call, "ok", False, reply)  # it observed that the expectation did not hold
        else:
            outcome = write_outcome(reply)
            _record(ctx, call, outcome, True if outcome == "ok" else None, reply)

    def _last_seen(self, ctx: ClientContext, key: str) -> str | None:
        """A plausible current value: a stale read just makes the cas fail, which is fine."""
        reply = ctx.call({"op": "get", "key": key, "consistency": "stale"})
        return text(reply["value"]) if reply is not None and reply.get("ok") else None


@dataclass(frozen=True)
class _Call:
    kind: str
    key: str
    input: Value
    call_ns: int = field(default_factory=now_ns)


def _record(ctx: ClientContext, call: _Call, outcome: Outcome, output: Value, reply: Reply | None) -> None:
    version = reply.get("version") if reply is not None and reply.get("ok") else None
    shard = reply.get("shard") if reply is not None else None
    known = outcome != "unknown"
    ctx.recorder.record(
        Op(
            ctx.process,
            call.kind,
            call.key,
            call.input,
            call.call_ns,
            now_ns() if known else None,
            outcome,
            output if known else None,
            version if isinstance(version, str) else None,
            shard if isinstance(shard, int) and isinstance(version, str) else None,
        )
    )


# ---------------------------------------------------------------------- sets


@dataclass
class Sets:
    """Unique elements added to per-key JSON lists by read-then-cas (on the read's version).

    Each add is one `add` op (input: the element), whatever attempts it took.
    """

    keys: int = 3
    name: str = "sets"

    def step(self, ctx: ClientContext) -> None:
        key = f"set{ctx.rng.randrange(self.keys)}/s"
        element = f"{ctx.process}-{ctx.rng.randrange(1 << 40)}"
        call = now_ns()
        outcome = self._add(ctx, key, element)
        returned = None if outcome == "unknown" else now_ns()
        ctx.recorder.record(Op(ctx.process, "add", key, element, call, returned, outcome))

    def _add(self, ctx: ClientContext, key: str, element: str) -> Outcome:
        maybe = False
        for _ in range(3):
            reply = ctx.call({"op": "get", "key": key})
            code = code_of(reply)
            if code not in (None, "NOT_FOUND"):
                continue
            assert reply is not None
            current: list[str] = [] if code == "NOT_FOUND" else json.loads(reply["value"])
            if element in current:
                return "ok"  # an earlier attempt that timed out did apply
            version = "0:0" if code == "NOT_FOUND" else reply["version"]
            new = json.dumps([*current, element]).encode()
            answer = ctx.call({"op": "cas", "key": key, "value": new, "expected_version": version})
            result = code_of(answer)
            if result is None:
                return "ok"
            if result not in WRITE_FAILS and result != "CAS_FAILED":
                maybe = True  # it may still apply
        return "unknown" if maybe else "fail"

    def keys_used(self) -> list[str]:
        return [f"set{i}/s" for i in range(self.keys)]


# ---------------------------------------------------------------------- read your writes


@dataclass
class ReadYourWrites:
    """Write your own key, then read it back with the write's version token from another node.

    Records the write as `put` and the read as `get_version` (output: the value read).
    """

    name: str = "read_your_writes"

    def step(self, ctx: ClientContext) -> None:
        key = f"ryw{ctx.process}/w"
        value = f"{ctx.process}-{ctx.rng.randrange(1 << 40)}"
        node, _ = ctx.conn()
        call = now_ns()
        written = ctx.call({"op": "put", "key": key, "value": value.encode()}, node)
        outcome = write_outcome(written)
        version = written["version"] if outcome == "ok" and written is not None else None
        ctx.recorder.record(
            Op(
                ctx.process,
                "put",
                key,
                value,
                call,
                None if outcome == "unknown" else now_ns(),
                outcome,
                version=version,
            )
        )
        if version is None:
            return
        others = [n for n in ctx.addresses if n != node] or [node]
        call = now_ns()
        read = ctx.call(
            {"op": "get", "key": key, "consistency": "version", "min_version": version},
            ctx.rng.choice(others),
        )
        if read is not None and read.get("ok"):
            ctx.recorder.record(
                Op(
                    ctx.process,
                    "get_version",
                    key,
                    version,
                    call,
                    now_ns(),
                    "ok",
                    text(read["value"]),
                    version=read["version"],
                )
            )
        # NOT_CAUGHT_UP or a timeout: allowed (the token was not served stale); nothing observed


# ---------------------------------------------------------------------- exactly once


@dataclass
class ExactlyOnce:
    """Writes through `confctl.client.Client` (the same seq on every retry); counted at the end.

    One `put` op per logical write: ok when acknowledged, unknown when the client gave up.
    """

    name: str = "exactly_once"
    _clients: dict[int, Client] = field(default_factory=dict)

    def step(self, ctx: ClientContext) -> None:
        client = self._clients.get(ctx.process)
        if client is None:
            client = self._clients[ctx.process] = Client(sorted(ctx.addresses.values()), timeout_s=3.0)
        key = f"eo{ctx.process}/c"
        value = f"{ctx.process}-{ctx.rng.randrange(1 << 40)}"
        call = now_ns()
        try:
            result = client.put(key, value.encode())
        except ConfmanError:
            ctx.recorder.record(Op(ctx.process, "put", key, value, call, None, "unknown"))
            return
        ctx.recorder.record(
            Op(ctx.process, "put", key, value, call, now_ns(), "ok", version=str(result.version))
        )

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
