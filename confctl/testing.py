"""A fake Confman cluster for tests: ROUTER sockets in threads speaking docs/protocol.md over a dict.

Not a server: one `FakeCluster` holds one in-memory key space (no Raft) and
its nodes answer from it, so tests of code built on `confctl.client` can run
without confmand. Each `FakeNode` binds `tcp://127.0.0.1:*` and serves from
its own thread until `stop()`; it records every request it decoded, and can be
told to misbehave the ways real nodes do: be a follower (NOT_LEADER with a
hint), drop requests (no reply), answer scripted errors, lag behind
(NOT_CAUGHT_UP for `version` reads). Exactly-once is honoured: a write seen
again with the same `client_id` and `seq` gets the first reply again.

A `FakeCluster` node is an older, unsharded server: it answers `shard_map`
UNSUPPORTED. A `FakeShardedCluster` fakes a sharded one: one `FakeCluster` per
data shard (its own versions, its own leader), a `ShardMap` its nodes answer
`shard_map` from, and the server's routing checks (WRONG_SHARD for a key of
another shard or of a shard the node holds no replica of, INVALID_REQUEST for a
list across namespaces or an audit without `shard`). `move` hands a partition to
another shard, one epoch later, as a rebalance would (the keys stay behind: use
fresh ones). `shard_map` requests are recorded apart (`map_requests`), and the
misbehaviour switches leave them alone, so `requests` is what the client routed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack
import zmq

from confmand.protocol import ErrorBody, ErrorCode, LeaderHint, ReplyEnvelope
from confmand.protocol.shardmap import NAMESPACE_SEPARATOR, ShardMap

Msg = dict[str, Any]


@dataclass
class _Entry:
    value: bytes
    version: tuple[int, int]
    create_version: tuple[int, int]
    changes: int


def _token(v: tuple[int, int] | None) -> str | None:
    return None if v is None else f"{v[0]}:{v[1]}"


def _parse(token: object) -> tuple[int, int]:
    term, _, index = str(token).partition(":")
    return int(term), int(index)


class ReplyError(Exception):
    """A protocol error the fake answers; `retryable` is the protocol's for the code."""

    def __init__(self, code: ErrorCode, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.body = ErrorBody.of(code, message, extra)


@dataclass
class HlcClock:
    """HLC stamps for the audit log, shared by the shards of one fake so their logs interleave."""

    last: int = 0

    def tick(self) -> int:
        self.last += 1 << 16
        return self.last


@dataclass
class FakeCluster:
    """The shared state machine: keys, a log index, the dedup table, history and audit."""

    term: int = 1
    index: int = 0
    data: dict[str, _Entry] = field(default_factory=dict)
    history: dict[str, list[Msg]] = field(default_factory=dict)
    audit: list[Msg] = field(default_factory=list)
    sessions: dict[tuple[bytes, int], Msg] = field(default_factory=dict)
    applied_writes: int = 0
    leader: FakeNode | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    clock: HlcClock | None = None  # None: the stamp is the log index, shifted

    def version(self) -> tuple[int, int]:
        return (self.term, self.index)

    def write(self, req: Msg) -> Msg:
        session = (req["client_id"], req["seq"]) if "client_id" in req and "seq" in req else None
        if session is not None and session in self.sessions:
            return self.sessions[session]
        reply = self._apply(req)
        if session is not None:
            self.sessions[session] = reply
        return reply

    def _apply(self, req: Msg) -> Msg:
        op, key = req["op"], req.get("key", "")
        if op == "txn":
            return self._txn(req)
        old = self.data.get(key)
        if op == "delete" and old is None:
            raise ReplyError(ErrorCode.NOT_FOUND, f"no key {key!r}")
        if op == "cas":
            self._check_cas(req, old)
        self.index += 1
        self.applied_writes += 1
        prev = _token(old.version) if old else None
        self._set(key, None if op == "delete" else req["value"], req.get("principal", "anonymous"))
        return {"version": _token(self.version()), "prev_version": prev}

    def _check_cas(self, req: Msg, old: _Entry | None) -> None:
        current = old.version if old else (0, 0)
        if "expected_version" in req:
            holds = current == _parse(req["expected_version"])
        else:
            holds = old is not None and old.value == req["expected_value"]
        if not holds:
            raise ReplyError(
                ErrorCode.CAS_FAILED, "expectation did not hold", current_version=_token(current)
            )

    def _set(self, key: str, value: bytes | None, principal: str) -> None:
        old = self.data.get(key)
        if value is None:
            self.data.pop(key, None)
        else:
            create = old.create_version if old else self.version()
            self.data[key] = _Entry(value, self.version(), create, (old.changes if old else 0) + 1)
        hlc = self.index << 16 if self.clock is None else self.clock.tick()
        op = "delete" if value is None else "put"
        v = _token(self.version())
        self.history.setdefault(key, []).insert(
            0, {"version": v, "op": op, "value": value, "hlc": hlc, "principal": principal}
        )
        self.audit.append(
            {
                "hlc": hlc,
                "version": v,
                "principal": principal,
                "op": op,
                "key": key,
                "prev_version": _token(old.version) if old else None,
                "new_version": v if value else None,
            }
        )

    def _txn(self, req: Msg) -> Msg:
        ok = all(self._holds(c) for c in req["compare"])
        self.index += 1
        results = []
        for op in req["success"] if ok else req["failure"]:
            old = self.data.get(op["key"])
            self._set(op["key"], op.get("value") if op["op"] == "put" else None, "anonymous")
            results.append(
                {
                    "op": op["op"],
                    "key": op["key"],
                    "version": _token(self.version()),
                    "prev_version": _token(old.version) if old else None,
                }
            )
        return {"succeeded": ok, "version": _token(self.version()), "results": results}

    def _holds(self, c: Msg) -> bool:
        entry = self.data.get(c["key"])
        if c["target"] == "exists":
            return (entry is not None) == bool(c["exists"])
        if c["target"] == "value":
            return entry is not None and entry.value == bytes(c["value"])
        return (entry.version if entry else (0, 0)) == _parse(c["version"])

    def read(self, req: Msg) -> Msg:
        op = req["op"]
        if op == "get":
            entry = self.data.get(req["key"])
            if entry is None:
                raise ReplyError(ErrorCode.NOT_FOUND, f"no key {req['key']!r}")
            return {
                "value": entry.value,
                "version": _token(entry.version),
                "create_version": _token(entry.create_version),
                "changes": entry.changes,
            }
        if op == "list":
            return self._list(req)
        if op == "history":
            if req["key"] not in self.history:
                raise ReplyError(ErrorCode.NOT_FOUND, f"no key {req['key']!r}")
            return {"versions": self.history[req["key"]][: req.get("limit", 100)]}
        after = req.get("after_hlc", -1)
        records = [r for r in self.audit if r["hlc"] > after]
        limit = req.get("limit", 100)
        return {"records": records[:limit], "more": len(records) > limit}

    def _list(self, req: Msg) -> Msg:
        keys = sorted(k for k in self.data if k.startswith(req["prefix"]) and k > req.get("after", ""))
        limit = req.get("limit", 100)
        items = []
        for k in keys[:limit]:
            e = self.data[k]
            item: Msg = {
                "key": k,
                "version": _token(e.version),
                "create_version": _token(e.create_version),
                "changes": e.changes,
            }
            if not req.get("keys_only"):
                item["value"] = e.value
            items.append(item)
        more = len(keys) > limit
        return {"items": items, "more": more, "next": items[-1]["key"] if more else None}


WRITES = frozenset({"put", "delete", "cas", "txn"})
READS = frozenset({"get", "list", "history", "audit"})
KEY_OPS = frozenset({"put", "get", "delete", "cas", "history"})


class FakeShardedCluster:
    """A sharded cluster's state: the map, one `FakeCluster` per data shard, and the nodes."""

    def __init__(self, shard_map: ShardMap) -> None:
        self.map = shard_map
        self.lock = threading.Lock()
        clock = HlcClock()
        self.shards = {s: FakeCluster(lock=self.lock, clock=clock) for s in shard_map.data_shards}
        self.nodes: dict[int, FakeNode] = {}

    def start(self) -> list[FakeNode]:
        """A node for every node id in the map, each shard led by its preferred leader."""
        ids = sorted({n for held in self.map.replicas.values() for n in held})
        started = [FakeNode(self, n) for n in ids]
        for shard, state in self.shards.items():
            state.leader = self.nodes[self.map.preferred_leader(shard)]
        return started

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()

    def lead(self, shard: int, node_id: int) -> None:
        """Leadership of `shard` moves to `node_id` (the old leader answers NOT_LEADER from now on)."""
        self.shards[shard].leader = self.nodes[node_id]

    def move(self, partition: int, shard: int) -> None:
        with self.lock:
            self.map = self.map.moved(partition, shard)

    def shard_map_reply(self, node_id: int) -> Msg:
        wire = self.map.to_wire()
        shards = wire["shards"]
        assert isinstance(shards, list)
        for item in shards:
            state = self.shards.get(item["id"])
            hosted = node_id in item["replicas"]
            leader = state.leader if state is not None else None
            if state is None:  # the meta shard: no fake state, its preferred leader leads
                item["leader"] = item["replicas"][0] if hosted else None
            else:
                item["leader"] = leader.node_id if hosted and leader is not None else None
        wire["nodes"] = [{"id": n, "address": node.address} for n, node in sorted(self.nodes.items())]
        return wire

    def route(self, req: Msg, node_id: int) -> int:
        """The shard `node_id` serves `req` in, or the error a sharded server answers."""
        op, asked = req["op"], req.get("shard")
        key = _routing_key(req)
        if key is None:
            if len(self.map.data_shards) > 1 and asked is None:
                raise ReplyError(ErrorCode.INVALID_REQUEST, f"{op} across shards needs 'shard'")
            owner = asked if asked is not None else self.map.data_shards[0]
            if owner not in self.shards:
                raise ReplyError(ErrorCode.WRONG_SHARD, "no such shard", epoch=self.map.epoch, shard=None)
        else:
            owner = self.map.shard_of(key)
            if asked is not None and asked != owner:
                raise ReplyError(ErrorCode.WRONG_SHARD, "not that shard", epoch=self.map.epoch, shard=owner)
        if node_id not in self.map.replicas[owner]:
            raise ReplyError(ErrorCode.WRONG_SHARD, "no replica here", epoch=self.map.epoch, shard=owner)
        return owner


def _routing_key(req: Msg) -> str | None:
    """The key a sharded server routes `req` by; None for a list across namespaces and the audit log."""
    if req["op"] in KEY_OPS:
        key: str = req["key"]
        return key
    if req["op"] == "txn":
        for part in ("compare", "success", "failure"):
            for item in req.get(part, []):
                first: str = item["key"]
                return first
    if req["op"] == "list" and NAMESPACE_SEPARATOR in req["prefix"]:
        prefix: str = req["prefix"]
        return prefix
    return None


class FakeNode:
    """One fake node: a ROUTER bound to a random loopback port, served by its own thread."""

    def __init__(
        self, cluster: FakeCluster | FakeShardedCluster, node_id: int, *, leader: bool = False
    ) -> None:
        self.sharded = cluster if isinstance(cluster, FakeShardedCluster) else None
        # Unsharded: the one state; sharded: the state of the request being served.
        self.cluster = cluster if isinstance(cluster, FakeCluster) else FakeCluster()
        self.node_id = node_id
        self.drop_next = 0  # requests to swallow without a reply
        self.scripted_errors: list[str] = []  # error codes to answer, one per request, first
        self.frozen_applied: tuple[int, int] | None = None  # a lagging follower's applied version
        self.stray_replies = False  # precede each reply with one for an id nobody sent, and junk
        self.requests: list[Msg] = []
        self.map_requests: list[Msg] = []
        self._seen = threading.Condition()
        self._ctx = zmq.Context()
        self._router = self._ctx.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.LINGER, 0)
        port = self._router.bind_to_random_port("tcp://127.0.0.1")
        self.address = f"tcp://127.0.0.1:{port}"
        self._stop_tx = self._ctx.socket(zmq.PAIR)
        self._stop_rx = self._ctx.socket(zmq.PAIR)
        self._stop_rx.bind(f"inproc://stop-{id(self)}")
        self._stop_tx.connect(f"inproc://stop-{id(self)}")
        self._thread = threading.Thread(target=self._serve, name=f"fake-node-{node_id}", daemon=True)
        if leader and isinstance(cluster, FakeCluster):
            cluster.leader = self
        if self.sharded is not None:
            self.sharded.nodes[node_id] = self
        self._thread.start()

    def wait_for_requests(self, count: int, timeout_s: float = 5.0) -> list[Msg]:
        """Block until this node has seen `count` requests (an event, not a sleep)."""
        with self._seen:
            if not self._seen.wait_for(lambda: len(self.requests) >= count, timeout_s):
                raise TimeoutError(f"{self.address} saw {len(self.requests)} of {count} requests")
            return list(self.requests)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._stop_tx.send(b"stop")
            self._thread.join()
        for sock in (self._router, self._stop_tx, self._stop_rx):
            sock.close(linger=0)
        self._ctx.term()

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._stop_rx, zmq.POLLIN)
        while True:
            ready = dict(poller.poll())
            if self._stop_rx in ready:
                return
            frames = self._router.recv_multipart()
            reply = self._handle(frames[-1])
            if reply is not None and self.stray_replies:
                stray = {**reply, "id": reply["id"] + 1_000_000}
                self._router.send_multipart([*frames[:-1], msgpack.packb(stray, use_bin_type=True)])
                self._router.send_multipart([*frames[:-1], b"\xc1 not msgpack"])
            if reply is not None:
                self._router.send_multipart([*frames[:-1], msgpack.packb(reply, use_bin_type=True)])

    def _handle(self, frame: bytes) -> Msg | None:
        try:
            req = msgpack.unpackb(frame, raw=False)
        except ValueError:
            return self._envelope(-1, error=ErrorBody.of(ErrorCode.INVALID_REQUEST, "bad msgpack"))
        if req.get("op") == "shard_map":
            return self._shard_map(req)
        with self._seen:
            self.requests.append(req)
            self._seen.notify_all()
        if self.drop_next > 0:
            self.drop_next -= 1
            return None
        if self.scripted_errors:
            code = self.scripted_errors.pop(0)
            return self._envelope(req["id"], error=ErrorBody(code, "scripted", True))
        if self.sharded is not None:
            return self._handle_sharded(req, self.sharded)
        try:
            with self.cluster.lock:
                body = self._dispatch(req)
        except ReplyError as e:
            return self._envelope(req["id"], error=e.body)
        return self._envelope(req["id"], **body)

    def _shard_map(self, req: Msg) -> Msg:
        self.map_requests.append(req)
        if self.sharded is None:
            return self._envelope(req["id"], error=ErrorBody.of(ErrorCode.UNSUPPORTED, "unknown op"))
        with self.sharded.lock:
            body = self.sharded.shard_map_reply(self.node_id)
        return self._envelope(req["id"], shard=None, **body)

    def _handle_sharded(self, req: Msg, sharded: FakeShardedCluster) -> Msg:
        with sharded.lock:
            shard: int | None = None
            try:
                if req["op"] in WRITES or req["op"] in READS:
                    shard = sharded.route(req, self.node_id)
                    self.cluster = sharded.shards[shard]
                else:
                    held = [s for s in sharded.map.shards_on(self.node_id) if s in sharded.shards]
                    view = req.get("shard") or (held[0] if held else None)
                    self.cluster = sharded.shards.get(view, FakeCluster()) if view else FakeCluster()
                body = self._dispatch(req)
            except ReplyError as e:
                return self._envelope(req["id"], error=e.body, shard=shard)
            return self._envelope(req["id"], shard=shard, **body)

    def _dispatch(self, req: Msg) -> Msg:
        op, is_leader = req["op"], self.cluster.leader is self
        if op == "status":
            return self._status()
        consistency = req.get("consistency", "linearizable")
        if (op in WRITES or (op in READS and consistency == "linearizable")) and not is_leader:
            raise ReplyError(ErrorCode.NOT_LEADER, "not the leader")
        applied = self.frozen_applied or self.cluster.version()
        if consistency == "version" and _parse(req["min_version"])[1] > applied[1]:
            raise ReplyError(ErrorCode.NOT_CAUGHT_UP, "behind min_version")
        if op in WRITES:
            return self.cluster.write(req)
        body = self.cluster.read(req)
        body["applied"] = _token(applied)
        if consistency == "stale":
            body["staleness_ms"] = 0 if is_leader else 7
        return body

    def _status(self) -> Msg:
        c = self.cluster
        leader = c.leader
        status: Msg = {
            "node_id": self.node_id,
            "role": "leader" if leader is self else "follower",
            "term": c.term,
            "leader_id": leader.node_id if leader else None,
            "commit_index": c.index,
            "applied_index": c.index,
            "last_index": c.index,
            "voters": [1, 2, 3],
            "learners": [],
            "last_contact_ms": 0 if leader is self else 12,
        }
        if leader is self:
            status["peers"] = {
                2: {"match_index": c.index, "next_index": c.index + 1, "lag": 0, "last_contact_ms": 3}
            }
        return status

    def _envelope(
        self, rid: int, error: ErrorBody | None = None, shard: int | None = None, **body: Any
    ) -> Msg:
        leader = self.cluster.leader if self.sharded is None or shard is not None else None
        hint = LeaderHint(leader.node_id, leader.address) if leader else None
        hlc = self.cluster.index << 16 if self.cluster.clock is None else self.cluster.clock.last
        return ReplyEnvelope(rid, self.node_id, hlc, hint, error, shard).to_wire(body)


def free_address() -> str:
    """A loopback address nothing listens on: a dead endpoint."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = ctx.socket(zmq.ROUTER)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    sock.close(linger=0)
    return f"tcp://127.0.0.1:{port}"


def nodes(cluster: FakeCluster, count: int) -> Iterator[FakeNode]:
    """`count` nodes of one cluster, node 1 the leader."""
    for i in range(1, count + 1):
        yield FakeNode(cluster, i, leader=i == 1)
