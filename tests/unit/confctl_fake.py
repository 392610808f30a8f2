"""A fake confctl client and the CLI harness the confctl CLI tests share (the `cli` fixture: conftest.py).

`FakeClient` keeps keys in a dict and a small shard map in memory, records every call, and
answers the placement, status and backup calls the way a 3-node sharded cluster would.
`Harness.run` invokes the typer app in-process (CliRunner) with `--endpoints EP`.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import typer
from typer.testing import CliRunner

from confctl.client import (
    CasFailed,
    Compare,
    ConfmanError,
    NodeStatus,
    NotFound,
    PeerStatus,
    TxnOp,
    TxnOpResult,
    TxnResult,
    Version,
)
from confctl.client.types import (
    AuditRecord,
    AuditResult,
    Consistency,
    GetResult,
    HistoryEntry,
    HistoryResult,
    LeaseResult,
    ListItem,
    ListResult,
    PastListResult,
    PastValue,
    ShardInfo,
    ShardMapResult,
    WatchBatch,
    WriteResult,
)
from confctl.settings import ClientSettings
from confmand.kv.snapshot import export_state
from confmand.kv.store import MemoryKVStore
from confmand.protocol.shardmap import ShardMap

EP = "tcp://10.0.0.1:7101"


@dataclass
class FakeClient:
    """Keys in a dict; `fail` makes every call raise; `calls` records (method, args)."""

    data: dict[str, bytes] = field(default_factory=dict)
    fail: ConfmanError | None = None
    calls: builtins.list[tuple[str, tuple[object, ...]]] = field(default_factory=list)
    moves: builtins.list[tuple[int, int]] = field(default_factory=list)  # (partition, to), done at once
    placements: builtins.list[tuple[int, tuple[int, ...]]] = field(default_factory=list)  # set/add, in order
    placed: dict[int, tuple[int, ...]] = field(default_factory=dict)  # shard -> its nodes, placed at once
    nodes: tuple[int, ...] = (1, 2, 3)
    listed: dict[int, tuple[int, ...]] = field(default_factory=dict)  # node -> the nodes its config lists
    down: set[int] = field(default_factory=set)  # nodes that do not answer
    leaders: dict[int, int] = field(default_factory=dict)  # shard -> its leader, where not its first replica
    closed: bool = False
    index: int = 0
    watched: builtins.list[WatchBatch] = field(default_factory=list)  # what `watch` streams, then it ends
    # The past, by version index: key -> value (absent keys left out); `get_at`/`list_at` read it.
    past: dict[int, dict[str, bytes]] = field(default_factory=dict)

    def _enter(self, name: str, *args: object) -> None:
        self.calls.append((name, args))
        if self.fail is not None:
            raise self.fail

    def put(self, key: str, value: bytes | str, *, lease: int = 0) -> WriteResult:
        self._enter("put", key, value, *((lease,) if lease else ()))
        self.index += 1
        self.data[key] = value.encode() if isinstance(value, str) else value
        return WriteResult(Version(1, self.index), None)

    def get(
        self,
        key: str,
        consistency: Consistency = "linearizable",
        min_version: Version | str | None = None,
        *,
        allow_cached: bool = False,
    ) -> GetResult:
        self._enter("get", key, consistency, min_version)
        if key not in self.data:
            raise NotFound(f"no key {key!r}")
        return GetResult(key, self.data[key], Version(1, 2), Version(1, 1), 2)

    def delete(self, key: str) -> WriteResult:
        self._enter("delete", key)
        if self.data.pop(key, None) is None:
            raise NotFound(f"no key {key!r}")
        return WriteResult(Version(1, 9), Version(1, 2))

    def cas(
        self,
        key: str,
        value: bytes | str,
        expected_version: Version | str | None = None,
        expected_value: bytes | str | None = None,
        *,
        lease: int = 0,
    ) -> WriteResult:
        self._enter("cas", key, value, expected_version, expected_value)
        raise CasFailed("expectation did not hold", current_version=Version(1, 2))

    def list(  # the client's method name; `builtins.list` below where the type is meant
        self,
        prefix: str,
        *,
        after: str | None = None,
        limit: int = 100,
        keys_only: bool = False,
        consistency: Consistency = "linearizable",
    ) -> ListResult:
        self._enter("list", prefix, after, limit)
        keys = sorted(k for k in self.data if k.startswith(prefix) and (after is None or k > after))
        page = [
            ListItem(k, None if keys_only else self.data[k], Version(1, 1), Version(1, 1), 1) for k in keys
        ]
        more = len(page) > limit
        return ListResult(tuple(page[:limit]), more, page[limit - 1].key if more else None)

    def txn(
        self, compare: Sequence[Compare], success: Sequence[TxnOp], failure: Sequence[TxnOp] = ()
    ) -> TxnResult:
        self._enter("txn", tuple(compare), tuple(success), tuple(failure))
        ok = all(self._holds(c) for c in compare)
        ops = success if ok else failure
        return TxnResult(ok, Version(1, 5), tuple(TxnOpResult(o.op, o.key, Version(1, 5), None) for o in ops))

    def get_at(self, key: str, at_version: Version | str) -> PastValue:
        self._enter("get_at", key, str(at_version))
        at = Version.parse(str(at_version))
        value = self.past.get(at.index, {}).get(key)
        if value is None:
            raise NotFound(f"no key {key!r} at version {at}")
        return PastValue(key, value, Version(1, at.index), at)

    def list_at(
        self, prefix: str, at_version: Version | str, *, after: str | None = None, limit: int = 100
    ) -> PastListResult:
        self._enter("list_at", prefix, str(at_version), after)
        at = Version.parse(str(at_version))
        state = self.past.get(at.index, {})
        keys = sorted(k for k in state if k.startswith(prefix) and (after is None or k > after))
        items = tuple(PastValue(k, state[k], Version(1, at.index), at) for k in keys)
        return PastListResult(items, False, None, at)

    def rollback(
        self, key: str, to_version: Version | str, expected_version: Version | str | None = None
    ) -> WriteResult:
        self._enter(
            "rollback", key, str(to_version), None if expected_version is None else str(expected_version)
        )
        self.index += 1
        return WriteResult(Version(1, self.index), Version(1, 2))

    def lease_grant(self, key: str, ttl_ms: int) -> LeaseResult:
        self._enter("lease_grant", key, ttl_ms)
        self.index += 1
        return LeaseResult(self.index, ttl_ms, Version(1, self.index))

    def lease_keepalive(self, key: str, lease: int) -> LeaseResult:
        self._enter("lease_keepalive", key, lease)
        return LeaseResult(lease, 5_000)

    def lease_revoke(self, key: str, lease: int) -> WriteResult:
        self._enter("lease_revoke", key, lease)
        self.index += 1
        return WriteResult(Version(1, self.index), None)

    def _holds(self, c: Compare) -> bool:
        """Enough of a compare for the CLI's tests: absence and existence as asked, else existence."""
        if c.target == "version" and c.version == Version(0, 0):
            return c.key not in self.data
        if c.target == "exists":
            return (c.key in self.data) == c.exists
        return c.key in self.data

    def history(self, key: str, limit: int = 100) -> HistoryResult:
        self._enter("history", key, limit)
        return HistoryResult(key, (HistoryEntry(Version(1, 3), "put", b"\xff", 7, "ops"),))

    def audit(self, after_hlc: int | None = None, limit: int = 100, prefix: str = "") -> AuditResult:
        self._enter("audit", after_hlc, limit, prefix)
        return AuditResult((AuditRecord(7, Version(1, 3), "ops", "put", "k", None, Version(1, 3)),), False)

    def status_all(self, endpoints: Sequence[str] | None = None) -> builtins.list[NodeStatus]:
        self._enter("status_all")
        if endpoints is not None:
            ids = [int(ep.split(".")[-1].split(":")[0]) for ep in endpoints]
            return [
                NodeStatus(ep, False, error="no reply")
                if n in self.down
                else NodeStatus(ep, True, n, "follower", 4, nodes=self.listed.get(n, self.nodes))
                for n, ep in zip(ids, endpoints, strict=True)
            ]
        leader = NodeStatus(
            EP, True, 1, "leader", 4, 1, 10, 10, 10, (1, 2), (), 0, {2: PeerStatus(8, 9, 2, 5)}
        )
        follower = NodeStatus("tcp://10.0.0.2:7101", True, 2, "follower", 4, 1, 10, 8, 10, (1, 2), (), 40)
        return [leader, follower, NodeStatus("tcp://10.0.0.3:7101", False, error="no reply")]

    def watch(
        self, prefix: str = "", *, from_version: str | None = None, progress_ms: int = 1000
    ) -> Generator[WatchBatch, None, None]:
        self._enter("watch", prefix, from_version, progress_ms)
        yield from self.watched

    def shard_map(self) -> ShardMapResult:
        self._enter("shard_map")
        replicas = {0: (1, 2, 3), 1: (2, 3), 2: (3, 1), **self.placed}
        owners = [1, 2, 2, 1, 2, 1, 2, 2]
        for partition, shard in self.moves:
            owners[partition] = shard
        epoch = 4 + len(self.moves) + len(self.placements)
        shard_map = ShardMap(epoch, tuple(owners), replicas)
        shards = tuple(
            ShardInfo(
                s,
                held,
                self.leaders.get(s, None if s == 2 and s not in self.placed else held[0]),
                owners.count(s),
                held,
            )
            for s, held in replicas.items()
        )
        return ShardMapResult(shard_map, shards, {n: f"tcp://10.0.0.{n}:7101" for n in self.nodes})

    def backup_shard(self, shard: int) -> dict[str, Any]:
        self._enter("backup_shard", shard)
        shard_map = self.shard_map().map
        state = export_state(MemoryKVStore())
        if shard == 0:
            return {"state": state, "applied": "4:20", "map": shard_map.to_wire()}
        owns = shard_map.partitions_of(shard)
        return {"state": state, "applied": f"4:{shard}0", "owns": owns, "leaving": [], "initial": owns}

    def shard_map_all(self, sizes: bool = False) -> builtins.list[ShardMapResult]:
        result = self.shard_map()
        if not sizes:
            return [result]
        lines = tuple(dataclasses.replace(s, bytes=1000 * s.id + 7) for s in result.shards)
        return [dataclasses.replace(result, shards=lines)]

    def set_replicas(self, shard: int, nodes: Sequence[int]) -> Version:
        self._enter("set_replicas", shard, tuple(nodes))
        self.placements.append((shard, tuple(nodes)))
        self.placed[shard] = tuple(nodes)
        return Version(2, 41)

    def add_shard(self, shard: int, nodes: Sequence[int]) -> Version:
        self._enter("add_shard", shard, tuple(nodes))
        self.placements.append((shard, tuple(nodes)))
        self.placed[shard] = tuple(nodes)
        return Version(2, 42)

    def move_partition(self, partition: int, to_shard: int) -> Version:
        self._enter("move_partition", partition, to_shard)
        self.moves.append((partition, to_shard))
        return Version(2, 40)

    def close(self) -> None:
        self.closed = True


@dataclass
class Harness:
    client: FakeClient
    settings: list[ClientSettings]
    app: typer.Typer

    def run(self, *args: str, stdin: bytes | str | None = None, env: dict[str, str] | None = None) -> Result:
        result = CliRunner().invoke(self.app, ["--endpoints", EP, *args], input=stdin, env=env)
        return Result(result.exit_code, result.stdout, result.stderr, result.exception)


@dataclass
class Result:
    code: int
    out: str
    err: str
    exception: BaseException | None

    def json(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines()]
