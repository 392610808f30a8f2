"""Cluster commands: `status` (every node's own view, side by side), `shards` (the shard map) and
`audit` (the change log). Commands that change the map are in placement.py."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from confctl.commands.common import Env, command
from confctl.commands.placement import shard_lines
from confctl.exit_codes import ExitCode, for_error

if TYPE_CHECKING:  # the client's modules load when a command runs (confctl/client/__init__.py)
    from confctl.client.types import NodeStatus, ShardInfo, ShardMapResult

SHARD_COLUMNS = ["id", "replicas", "leader", "partitions", "bytes"]
STATUS_COLUMNS = [
    "id",
    "address",
    "shard",
    "role",
    "term",
    "leader",
    "commit",
    "applied",
    "lag",
    "last_contact_ms",
    "leads",
]


def _leaders(statuses: list[NodeStatus]) -> dict[int | None, NodeStatus]:
    """Per shard the rows are of, the node that says it leads it in the highest term (a deposed
    leader may not know yet)."""
    leaders: dict[int | None, NodeStatus] = {}
    for s in statuses:
        if s.reachable and s.role == "leader":
            known = leaders.get(s.shard_id)
            if known is None or (s.term or 0) > (known.term or 0):
                leaders[s.shard_id] = s
    return leaders


def _lag(node: NodeStatus, leader: NodeStatus | None) -> int | None:
    """Entries behind its shard's leader: the leader's own figure for it when it has one, else by
    commit; None when no answering node leads that shard (lag across shards means nothing)."""
    if leader is None or node.node_id is None or node.applied_index is None:
        return None
    if node is leader:
        return 0
    peer = leader.peers.get(node.node_id)
    if peer is not None:
        return peer.lag
    return max(0, (leader.commit_index or 0) - node.applied_index)


def status_rows(statuses: list[NodeStatus]) -> list[dict[str, object]]:
    leaders = _leaders(statuses)
    return [
        {
            "id": s.node_id,
            "address": s.endpoint,
            "shard": s.shard_id,
            "role": s.role if s.reachable else "unreachable",
            "term": s.term,
            "leader": s.leader_id,
            "commit": s.commit_index,
            "applied": s.applied_index,
            "lag": _lag(s, leaders.get(s.shard_id)),
            "last_contact_ms": s.last_contact_ms,
            # "3/5": leader of 3 of the 5 shards it holds (the other columns are of one shard)
            "leads": None if s.shards_hosted is None else f"{s.shards_led}/{s.shards_hosted}",
            "error": s.error,
        }
        for s in statuses
    ]


@command
def status(env: Env) -> ExitCode:
    """Every node's view: role, term, leader, commit and applied index, lag; unreachable nodes too.

    Each row is of the first data shard the node holds (SHARD); LEADS counts all it holds.
    A quiet shard (no writes lately) hears from its leader rarely: a large LAST CONTACT MS is normal then.
    Exit code 5 when no node answered.
    """
    statuses = env.client.status_all()
    env.renderer.rows(status_rows(statuses), STATUS_COLUMNS)
    if any(s.reachable for s in statuses):
        return ExitCode.OK
    env.renderer.error(f"no node answered (tried {', '.join(s.endpoint for s in statuses)})")
    return ExitCode.UNAVAILABLE


def shard_rows(result: ShardMapResult, lines: dict[int, ShardInfo]) -> list[dict[str, object]]:
    rows = []
    for s in result.shards:
        line = lines.get(s.id, s)
        rows.append(
            {"id": s.id, "replicas": list(s.replicas), "leader": line.leader, "partitions": s.partitions}
            | {"bytes": line.bytes}
        )
    return rows


@command
def shards(env: Env) -> ExitCode:
    """The shard map: its epoch and partition count, and per shard (0 is the meta shard) its
    replicas (preferred leader first), its leader, the partitions it owns and about how many
    bytes it takes on its leader's disk (LevelDB's estimate: what is only in memory yet counts
    as nothing). Every node is asked; each knows the leaders and sizes of the shards it holds.
    """
    from confctl.client.errors import Unsupported  # noqa: PLC0415  (lazy, as the client is)

    try:
        views = env.client.shard_map_all(sizes=True)
    except Unsupported as exc:
        env.renderer.error(f"the cluster is not sharded: its nodes do not know 'shard_map' ({exc.message})")
        return for_error(exc)
    result = max(views, key=lambda v: v.epoch)
    summary = {"epoch": result.epoch, "partitions": result.partitions}
    env.renderer.record_with_rows(summary, "shards", shard_rows(result, shard_lines(views)), SHARD_COLUMNS)
    return ExitCode.OK


@command
def audit(
    env: Env,
    after_hlc: Annotated[
        int | None, typer.Option("--after-hlc", min=0, help="Records after this HLC stamp.")
    ] = None,
    since: Annotated[
        int | None, typer.Option("--since", min=1, help="Records at or after this HLC stamp.")
    ] = None,
    prefix: Annotated[
        str, typer.Option("--prefix", "-p", help="Only changes of keys under this prefix.")
    ] = "",
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000, help="At most this many.")] = 100,
) -> None:
    """The audit log of every shard in one HLC order, oldest first: who changed what, and when."""
    if since is not None:  # at or after `since` is after `since - 1`; the later of the two bounds wins
        after_hlc = since - 1 if after_hlc is None else max(after_hlc, since - 1)
    result = env.client.audit(after_hlc=after_hlc, limit=limit, prefix=prefix)
    rows = [
        {
            "hlc": r.hlc,
            "version": str(r.version),
            "principal": r.principal,
            "op": r.op,
            "key": r.key,
            "prev_version": None if r.prev_version is None else str(r.prev_version),
            "new_version": None if r.new_version is None else str(r.new_version),
            "shard": r.shard,
        }
        for r in result.records
    ]
    env.renderer.rows(rows, ["hlc", "version", "principal", "op", "key"])
    if result.more and result.next_hlc is not None:
        again = f" --prefix {prefix}" if prefix else ""
        env.renderer.note(f"more records follow: --after-hlc {result.next_hlc}{again}")


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("shards")(shards)
    app.command("audit")(audit)
