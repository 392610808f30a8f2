"""Cluster commands: `status` (every node's own view, side by side), `shards` (the shard map),
`move` (a partition to another shard), `rebalance` (even out the partitions) and `audit` (the change
log)."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from confctl.client.errors import Unsupported
from confctl.client.types import NodeStatus, ShardMapResult
from confctl.commands.common import Env, command
from confctl.exit_codes import ExitCode, for_error
from confmand.protocol.shardmap import balancing_moves

SHARD_COLUMNS = ["id", "replicas", "leader", "partitions"]
STATUS_COLUMNS = [
    "id",
    "address",
    "role",
    "term",
    "leader",
    "commit",
    "applied",
    "lag",
    "last_contact_ms",
    "leads",
]


def _leader(statuses: list[NodeStatus]) -> NodeStatus | None:
    """The node that says it leads in the highest term (a deposed leader may not know yet)."""
    leaders = [s for s in statuses if s.reachable and s.role == "leader"]
    return max(leaders, key=lambda s: s.term or 0, default=None)


def _lag(node: NodeStatus, leader: NodeStatus | None) -> int | None:
    """Entries behind the leader: the leader's own figure for it when it has one, else by commit."""
    if leader is None or node.node_id is None or node.applied_index is None:
        return None
    if node is leader:
        return 0
    peer = leader.peers.get(node.node_id)
    if peer is not None:
        return peer.lag
    return max(0, (leader.commit_index or 0) - node.applied_index)


def status_rows(statuses: list[NodeStatus]) -> list[dict[str, object]]:
    leader = _leader(statuses)
    return [
        {
            "id": s.node_id,
            "address": s.endpoint,
            "role": s.role if s.reachable else "unreachable",
            "term": s.term,
            "leader": s.leader_id,
            "commit": s.commit_index,
            "applied": s.applied_index,
            "lag": _lag(s, leader),
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

    Exit code 5 when no node answered.
    """
    statuses = env.client.status_all()
    env.renderer.rows(status_rows(statuses), STATUS_COLUMNS)
    if any(s.reachable for s in statuses):
        return ExitCode.OK
    env.renderer.error(f"no node answered (tried {', '.join(s.endpoint for s in statuses)})")
    return ExitCode.UNAVAILABLE


def shard_rows(result: ShardMapResult) -> list[dict[str, object]]:
    return [
        {"id": s.id, "replicas": list(s.replicas), "leader": s.leader, "partitions": s.partitions}
        for s in result.shards
    ]


@command
def shards(env: Env) -> ExitCode:
    """The shard map: its epoch and partition count, and per shard (0 is the meta shard) its
    replicas (preferred leader first), its leader as the answering node knows it, and the
    partitions it owns.
    """
    try:
        result = env.client.shard_map()
    except Unsupported as exc:
        env.renderer.error(f"the cluster is not sharded: its nodes do not know 'shard_map' ({exc.message})")
        return for_error(exc)
    summary = {"epoch": result.epoch, "partitions": result.partitions}
    env.renderer.record_with_rows(summary, "shards", shard_rows(result), SHARD_COLUMNS)
    return ExitCode.OK


MOVE_POLL_S = 0.2
MOVE_COLUMNS = ["partition", "from", "to"]


def _wait_moved(env: Env, partition: int, to_shard: int, wait_s: float) -> ShardMapResult | None:
    """The map once it names `to_shard` as the partition's owner; None if it does not within wait_s."""
    deadline = time.monotonic() + wait_s
    while True:
        result = env.client.shard_map()
        if result.map.owners[partition] == to_shard:
            return result
        if time.monotonic() >= deadline:
            return None
        time.sleep(MOVE_POLL_S)


@command
def move(
    env: Env,
    partition: Annotated[int, typer.Argument(min=0, help="The partition (see `confctl shards`).")],
    to_shard: Annotated[int, typer.Argument(min=1, help="The data shard to move it to.")],
    wait_s: Annotated[
        float, typer.Option("--wait", min=0, help="Seconds to wait for the new map (0: do not wait).")
    ] = 30.0,
) -> ExitCode:
    """Move a partition (every key of the namespaces that hash to it) to another data shard, online.

    Writes to its keys pause for a moment; nothing is lost. Waits until the shard map names the
    new shard (exit code 5 if it does not within --wait).
    """
    started = env.client.move_partition(partition, to_shard)
    env.renderer.note(f"partition {partition} frozen at {started}: moving to shard {to_shard}")
    if not wait_s:
        return ExitCode.OK
    result = _wait_moved(env, partition, to_shard, wait_s)
    if result is None:
        env.renderer.error(f"partition {partition} is not in shard {to_shard} after {wait_s:g} s")
        return ExitCode.UNAVAILABLE
    env.renderer.record({"partition": partition, "shard": to_shard, "epoch": result.epoch})
    return ExitCode.OK


@command
def replicas(
    env: Env,
    shard: Annotated[int, typer.Argument(min=1, help="The data shard.")],
    nodes: Annotated[
        str, typer.Argument(help="Its nodes, comma-separated, the preferred leader first: 1,2,4.")
    ],
    wait_s: Annotated[
        float,
        typer.Option("--wait", min=0, help="Seconds to wait for its members to follow (0: do not wait)."),
    ] = 60.0,
) -> ExitCode:
    """Place a data shard's replicas on these nodes: new ones join as learners, catch up and are
    promoted, then the others leave (one step at a time; the shard serves throughout).

    Add a node by naming it here for the shards it should hold; retire one by naming the others.
    Waits until the shard's members are these nodes (exit code 5 if not within --wait).
    """
    try:
        wanted = [int(n) for n in nodes.split(",") if n.strip()]
    except ValueError:
        env.renderer.error(f"nodes must be node ids separated by commas, got {nodes!r}")
        return ExitCode.USAGE
    started = env.client.set_replicas(shard, wanted)
    env.renderer.note(
        f"the map places shard {shard} on {wanted} (at {started}); its leader moves replicas now"
    )
    deadline = time.monotonic() + wait_s
    while wait_s:
        result = env.client.shard_map()
        line = next((s for s in result.shards if s.id == shard), None)
        if line is not None and sorted(line.members) == sorted(wanted):
            env.renderer.record({"shard": shard, "members": list(line.members), "epoch": result.epoch})
            return ExitCode.OK
        if time.monotonic() >= deadline:
            have = None if line is None else list(line.members)
            env.renderer.error(f"shard {shard}'s members are {have}, not {wanted}, after {wait_s:g} s")
            return ExitCode.UNAVAILABLE
        time.sleep(MOVE_POLL_S)
    return ExitCode.OK


@command
def rebalance(
    env: Env,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the moves; make none.")] = False,
    wait_s: Annotated[float, typer.Option("--wait", min=1, help="Seconds to wait for each move.")] = 30.0,
) -> ExitCode:
    """Even out the partitions the data shards own (to within one), one partition move at a time.

    Prints the planned moves; without --dry-run makes them in turn, each finished before the
    next starts. Exit code 5 if a move does not finish within --wait.
    """
    try:
        result = env.client.shard_map()
    except Unsupported as exc:
        env.renderer.error(f"the cluster is not sharded: its nodes do not know 'shard_map' ({exc.message})")
        return for_error(exc)
    moves = balancing_moves(result.map)
    env.renderer.rows([{"partition": p, "from": s, "to": t} for p, s, t in moves], MOVE_COLUMNS)
    if dry_run or not moves:
        env.renderer.note(
            "balanced: no move needed" if not moves else f"{len(moves)} moves planned (dry run)"
        )
        return ExitCode.OK
    for done, (partition, _, to_shard) in enumerate(moves, 1):
        env.client.move_partition(partition, to_shard)
        if _wait_moved(env, partition, to_shard, wait_s) is None:
            env.renderer.error(f"partition {partition} is not in shard {to_shard} after {wait_s:g} s")
            return ExitCode.UNAVAILABLE
        env.renderer.note(f"moved {done}/{len(moves)}: partition {partition} to shard {to_shard}")
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
    app.command("move")(move)
    app.command("rebalance")(rebalance)
    app.command("replicas")(replicas)
    app.command("audit")(audit)
