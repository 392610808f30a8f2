"""Each client method as a (request, reply parser) pair, shared by the sync and async shells.

Pure: building a pair validates the arguments (raising `InvalidArgument`) and
sends nothing. The shells only add I/O: `shell.put(k, v)` is
`run(operations.put(k, v))`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from confctl.client import replies, requests
from confctl.client.replies import Reply
from confctl.client.requests import Request
from confctl.client.types import (
    AuditResult,
    Compare,
    Consistency,
    GetResult,
    HistoryResult,
    LeaseResult,
    ListResult,
    NodeStatus,
    PastListResult,
    PastValue,
    ShardMapResult,
    TxnOp,
    TxnResult,
    Version,
    WriteResult,
)

Operation = tuple[Request, Callable[[Reply], object]]


def put(key: str, value: bytes | str, lease: int = 0) -> tuple[Request, Callable[[Reply], WriteResult]]:
    return requests.put(key, value, lease), replies.write_result


def lease_grant(key: str, ttl_ms: int) -> tuple[Request, Callable[[Reply], LeaseResult]]:
    return requests.lease_grant(key, ttl_ms), replies.lease_granted(ttl_ms)


def lease_keepalive(key: str, lease: int) -> tuple[Request, Callable[[Reply], LeaseResult]]:
    return requests.lease_keepalive(key, lease), replies.lease_kept


def lease_revoke(key: str, lease: int) -> tuple[Request, Callable[[Reply], WriteResult]]:
    return requests.lease_revoke(key, lease), replies.write_result


def delete(key: str) -> tuple[Request, Callable[[Reply], WriteResult]]:
    return requests.delete(key), replies.write_result


def cas(
    key: str,
    value: bytes | str,
    expected_version: Version | str | None = None,
    expected_value: bytes | str | None = None,
    lease: int = 0,
) -> tuple[Request, Callable[[Reply], WriteResult]]:
    return requests.cas(key, value, expected_version, expected_value, lease), replies.write_result


def rollback(
    key: str, to_version: Version | str, expected_version: Version | str | None = None
) -> tuple[Request, Callable[[Reply], WriteResult]]:
    return requests.rollback(key, to_version, expected_version), replies.write_result


def get_at(key: str, at_version: Version | str) -> tuple[Request, Callable[[Reply], PastValue]]:
    return requests.get_at(key, at_version), replies.past_value(key)


def list_at(
    prefix: str, at_version: Version | str, *, after: str | None = None, limit: int = 100
) -> tuple[Request, Callable[[Reply], PastListResult]]:
    return requests.list_at(prefix, at_version, after=after, limit=limit), replies.past_list_result


def get(
    key: str, consistency: Consistency = "linearizable", min_version: Version | str | None = None
) -> tuple[Request, Callable[[Reply], GetResult]]:
    request = requests.get(key, consistency, min_version)
    return request, replies.get_result(key)


def list_(
    prefix: str,
    *,
    after: str | None = None,
    limit: int = 100,
    keys_only: bool = False,
    consistency: Consistency = "linearizable",
    min_version: Version | str | None = None,
) -> tuple[Request, Callable[[Reply], ListResult]]:
    request = requests.list_(
        prefix,
        after=after,
        limit=limit,
        keys_only=keys_only,
        consistency=consistency,
        min_version=min_version,
    )
    return request, replies.list_result


def txn(
    compare: Sequence[Compare], success: Sequence[TxnOp], failure: Sequence[TxnOp] = ()
) -> tuple[Request, Callable[[Reply], TxnResult]]:
    return requests.txn(compare, success, failure), replies.txn_result


def history(
    key: str, limit: int = 100, consistency: Consistency = "linearizable"
) -> tuple[Request, Callable[[Reply], HistoryResult]]:
    return requests.history(key, limit, consistency), replies.history_result(key)


def audit(
    after_hlc: int | None = None, limit: int = 100, prefix: str = ""
) -> tuple[Request, Callable[[Reply], AuditResult]]:
    return requests.audit(after_hlc, limit, prefix), replies.audit_result


def backup(shard: int) -> tuple[Request, Callable[[Reply], dict[str, Any]]]:
    return requests.backup(shard), replies.backup_fields


def status(endpoint: str) -> tuple[Request, Callable[[Reply], NodeStatus]]:
    return requests.status(), replies.status_result(endpoint)


def shard_map(sizes: bool = False) -> tuple[Request, Callable[[Reply], ShardMapResult]]:
    return requests.shard_map(sizes), replies.shard_map_result


def move_partition(partition: int, to_shard: int) -> tuple[Request, Callable[[Reply], Version]]:
    """The version of the freeze: the move has begun, and finishes by itself (docs/sharding.md)."""
    return requests.move_partition(partition, to_shard), lambda reply: replies.need_version(reply, "version")


def set_replicas(shard: int, nodes: Sequence[int]) -> tuple[Request, Callable[[Reply], Version]]:
    """The version of the map change in the meta shard; the shard's leader then moves its replicas."""
    return requests.set_replicas(shard, list(nodes)), lambda reply: replies.need_version(reply, "version")


def add_shard(shard: int, nodes: Sequence[int]) -> tuple[Request, Callable[[Reply], Version]]:
    """The version of the map change in the meta shard; the founders then start the new shard."""
    return requests.add_shard(shard, list(nodes)), lambda reply: replies.need_version(reply, "version")
