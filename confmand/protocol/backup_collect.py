"""Asking every shard's leader for its state until the copies agree with one shard map.

Each shard's copy is linearizable on its own, at its own applied version, but the shards are
asked one after another: a partition move that runs meanwhile could leave its keys in two
copies or in none. So every data shard's copy must own exactly the partitions the meta
shard's map (asked first) gives it, with none on its way out; otherwise the whole round is
asked again, a few times, before giving up with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from confmand.protocol.backup_file import Backup, BackupError, ShardCopy
from confmand.protocol.shardmap import META_SHARD, ShardMap
from confmand.protocol.types import Version

AskShard = Callable[[int], Mapping[str, Any]]  # a shard id -> its leader's `backup` reply fields


def collect(
    ask: AskShard,
    *,
    created_ms: int,
    confman_version: str,
    attempts: int = 5,
    between: Callable[[], None] = lambda: None,
) -> Backup:
    """A consistent backup of every shard; BackupError if `attempts` rounds all met a move."""
    reason = ""
    for attempt in range(attempts):
        if attempt:
            between()
        meta = ask(META_SHARD)
        if meta.get("map") is None:
            raise BackupError("the meta shard holds no shard map yet: the cluster is still starting")
        shard_map = ShardMap.from_wire(meta["map"])
        copies = [_copy(META_SHARD, meta)]
        for shard in shard_map.data_shards:
            reply = ask(shard)
            copy = _copy(shard, reply)
            wanted = shard_map.partitions_of(shard)
            leaving = list(reply.get("leaving", ()))
            if list(copy.owns) != wanted or leaving:
                reason = (
                    f"shard {shard} owned partitions {list(copy.owns)} (leaving {leaving}) where "
                    f"map epoch {shard_map.epoch} gives it {wanted}"
                )
                break
            copies.append(copy)
        else:
            return Backup(shard_map, tuple(copies), created_ms, confman_version)
    raise BackupError(
        f"the shards did not agree with one shard map in {attempts} tries ({reason}): a partition "
        "move is probably running; try again once `confctl shards` shows it done"
    )


def _copy(shard: int, reply: Mapping[str, Any]) -> ShardCopy:
    state = reply.get("state")
    if not isinstance(state, bytes):
        raise BackupError(f"shard {shard}: the reply carries no state")
    try:
        applied = Version.parse(str(reply.get("applied")))
    except ValueError as exc:
        raise BackupError(f"shard {shard}: {exc}") from None
    return ShardCopy(shard, applied, state, tuple(reply.get("owns", ())), tuple(reply.get("initial", ())))
