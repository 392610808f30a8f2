"""Commands that change the shard map, each one map change at a time, waiting for the cluster
to carry it out: `move` (a partition to another shard), `replicas` (a shard onto other nodes),
`add-shard`, `split`, `drain` (every replica off a node) and `rebalance` (even out partitions,
replicas and preferred leaders). The plans are confmand/protocol/planning.py's, imported in the
commands that plan (as the client is): `confctl version` and `--help` load neither.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from confctl.commands.common import Env, command
from confctl.exit_codes import ExitCode, for_error

if TYPE_CHECKING:
    from confctl.client.types import ShardInfo, ShardMapResult
    from confmand.protocol.planning import Placement
    from confmand.protocol.shardmap import ShardMap

POLL_S = 0.2
MOVE_COLUMNS = ["partition", "from", "to"]
PLACEMENT_COLUMNS = ["shard", "from", "to"]

WaitOpt = Annotated[
    float, typer.Option("--wait", min=0, help="Seconds to wait for each change (0: do not wait).")
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show the plan; change nothing.")]


def _current(env: Env) -> ShardMapResult | ExitCode:
    """The map, or the exit code for a cluster that has none (its nodes predate shards)."""
    from confctl.client.errors import Unsupported  # noqa: PLC0415  (lazy: see the module's doc)

    try:
        return env.client.shard_map()
    except Unsupported as exc:
        env.renderer.error(f"the cluster is not sharded: its nodes do not know 'shard_map' ({exc.message})")
        return for_error(exc)


def _nodes(result: ShardMapResult) -> list[int]:
    """The nodes a plan may use: every node the cluster's configs name."""
    return sorted(result.addresses) or sorted({n for held in result.map.replicas.values() for n in held})


def _wait_moved(env: Env, partition: int, to_shard: int, wait_s: float) -> ShardMapResult | None:
    """The map once it names `to_shard` as the partition's owner; None if it does not within wait_s."""
    deadline = time.monotonic() + wait_s
    while True:
        result = env.client.shard_map()
        if result.map.owners[partition] == to_shard:
            return result
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL_S)


def shard_lines(views: Sequence[ShardMapResult]) -> dict[int, ShardInfo]:
    """Each shard's line as the node best placed to know it says: the one that leads it, else
    one that holds it (a node names the members and leader only of the shards it holds)."""
    lines: dict[int, ShardInfo] = {}
    for view in sorted(views, key=lambda v: -v.epoch):
        for info in view.shards:
            known = lines.get(info.id)
            leads = info.leader is not None and info.leader == view.meta.node_id
            if (
                known is None
                or (not known.members and info.members)
                or (leads and known.leader != view.meta.node_id)
            ):
                lines[info.id] = info
    return lines


def _wait_placed(env: Env, shard: int, wanted: Sequence[int], wait_s: float) -> ShardInfo | None:
    """The shard's line once its members are `wanted`, it has a leader and every node that answers
    knows it; None if not within wait_s."""
    deadline = time.monotonic() + wait_s
    while True:
        views = env.client.shard_map_all()
        line = shard_lines(views).get(shard)
        known = all(shard in view.map.replicas for view in views)  # a move to it goes anywhere next
        if known and line is not None and line.leader is not None and sorted(line.members) == sorted(wanted):
            return line
        if time.monotonic() >= deadline:
            have = None if line is None else list(line.members)
            env.renderer.error(f"shard {shard}'s members are {have}, not {list(wanted)}, after {wait_s:g} s")
            return None
        time.sleep(POLL_S)


def _parse_nodes(env: Env, nodes: str) -> list[int] | None:
    try:
        return [int(n) for n in nodes.split(",") if n.strip()]
    except ValueError:
        env.renderer.error(f"nodes must be node ids separated by commas, got {nodes!r}")
        return None


def _move_all(env: Env, moves: Sequence[tuple[int, int, int]], wait_s: float) -> bool:
    for done, (partition, _, to_shard) in enumerate(moves, 1):
        env.client.move_partition(partition, to_shard)
        if _wait_moved(env, partition, to_shard, wait_s) is None:
            env.renderer.error(f"partition {partition} is not in shard {to_shard} after {wait_s:g} s")
            return False
        env.renderer.note(f"moved {done}/{len(moves)}: partition {partition} to shard {to_shard}")
    return True


def _place_all(env: Env, plan: Sequence[Placement], wait_s: float) -> bool:
    for done, (shard, nodes) in enumerate(plan, 1):
        env.client.set_replicas(shard, nodes)
        if _wait_placed(env, shard, nodes, wait_s) is None:
            return False
        env.renderer.note(f"placed {done}/{len(plan)}: shard {shard} on {list(nodes)}")
    return True


def _placement_rows(shard_map: ShardMap, plan: Sequence[Placement]) -> list[dict[str, object]]:
    return [{"shard": s, "from": list(shard_map.replicas[s]), "to": list(n)} for s, n in plan]


@command
def move(
    env: Env,
    partition: Annotated[int, typer.Argument(min=0, help="The partition (see `confctl shards`).")],
    to_shard: Annotated[int, typer.Argument(min=1, help="The data shard to move it to.")],
    wait_s: WaitOpt = 30.0,
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
    shard: Annotated[int, typer.Argument(min=0, help="The shard (0: the meta shard).")],
    nodes: Annotated[
        str, typer.Argument(help="Its nodes, comma-separated, the preferred leader first: 1,2,4.")
    ],
    wait_s: WaitOpt = 60.0,
) -> ExitCode:
    """Place a shard's replicas on these nodes: new ones join as learners, catch up and are
    promoted, then the others leave (one step at a time; the shard serves throughout), and the
    first named becomes its leader.

    Add a node by naming it here for the shards it should hold; retire one with `drain`.
    Waits until the shard's members are these nodes (exit code 5 if not within --wait).
    """
    wanted = _parse_nodes(env, nodes)
    if wanted is None:
        return ExitCode.USAGE
    started = env.client.set_replicas(shard, wanted)
    env.renderer.note(
        f"the map places shard {shard} on {wanted} (at {started}); its leader moves replicas now"
    )
    if not wait_s:
        return ExitCode.OK
    line = _wait_placed(env, shard, wanted, wait_s)
    if line is None:
        return ExitCode.UNAVAILABLE
    env.renderer.record({"shard": shard, "members": list(line.members), "leader": line.leader})
    return ExitCode.OK


@command
def add_shard(
    env: Env,
    nodes: Annotated[
        str | None,
        typer.Option("--replicas", help="Its nodes, comma-separated (default: those holding fewest)."),
    ] = None,
    wait_s: WaitOpt = 60.0,
) -> ExitCode:
    """Add a data shard, owning no partition yet (move some to it with `move` or `rebalance`).

    It gets as many replicas as the largest data shard, on the nodes holding the fewest, unless
    --replicas names them. Waits until it has a leader and all its replicas (exit code 5 if not).
    """
    from confmand.protocol import planning  # noqa: PLC0415  (lazy: see the module's doc)

    result = _current(env)
    if isinstance(result, ExitCode):
        return result
    size = max(len(result.map.replicas[s]) for s in result.map.data_shards)
    shard, placed = planning.new_shard(result.map, _nodes(result), size)
    if nodes is not None:
        wanted = _parse_nodes(env, nodes)
        if wanted is None:
            return ExitCode.USAGE
        placed = tuple(wanted)
    started = env.client.add_shard(shard, placed)
    env.renderer.note(f"the map adds shard {shard} on {list(placed)} (at {started})")
    if wait_s and _wait_placed(env, shard, placed, wait_s) is None:
        return ExitCode.UNAVAILABLE
    env.renderer.record({"shard": shard, "replicas": list(placed)})
    return ExitCode.OK


@command
def split(
    env: Env,
    shard: Annotated[int, typer.Argument(min=1, help="The data shard to split.")],
    dry_run: DryRunOpt = False,
    wait_s: WaitOpt = 60.0,
) -> ExitCode:
    """Split a data shard in two: add a shard (as `add-shard` does) and move the upper half of
    this one's partitions to it, one at a time, online. Exit code 5 if a step does not finish
    within --wait.
    """
    from confmand.protocol import planning  # noqa: PLC0415  (lazy: see the module's doc)

    result = _current(env)
    if isinstance(result, ExitCode):
        return result
    if shard not in result.map.data_shards:
        env.renderer.error(f"there is no data shard {shard} (have {result.map.data_shards})")
        return ExitCode.USAGE
    try:
        new, placed = planning.new_shard(result.map, _nodes(result), len(result.map.replicas[shard]))
        moves = planning.split_moves(result.map, shard, new)
    except ValueError as exc:
        env.renderer.error(str(exc))
        return ExitCode.USAGE
    env.renderer.note(f"shard {new} on {list(placed)} takes {len(moves)} of shard {shard}'s partitions")
    env.renderer.rows([{"partition": p, "from": s, "to": t} for p, s, t in moves], MOVE_COLUMNS)
    if dry_run:
        return ExitCode.OK
    env.client.add_shard(new, placed)
    if _wait_placed(env, new, placed, wait_s) is None:
        return ExitCode.UNAVAILABLE
    env.renderer.note(f"shard {new} is up on {list(placed)}")
    return ExitCode.OK if _move_all(env, moves, wait_s) else ExitCode.UNAVAILABLE


@command
def drain(
    env: Env,
    node: Annotated[int, typer.Argument(min=1, help="The node to empty.")],
    dry_run: DryRunOpt = False,
    wait_s: WaitOpt = 60.0,
) -> ExitCode:
    """Move every replica off a node (the meta shard's too), one shard at a time, each to the node
    holding the fewest: then it can be stopped and removed from the configs. Exit code 5 if a
    shard does not follow within --wait.
    """
    return drain_node(env, node, dry_run, wait_s)


def drain_node(env: Env, node: int, dry_run: bool, wait_s: float) -> ExitCode:
    """`drain`'s work (`node remove` does it first)."""
    from confmand.protocol import planning  # noqa: PLC0415  (lazy: see the module's doc)

    result = _current(env)
    if isinstance(result, ExitCode):
        return result
    try:
        plan = planning.drain_plan(result.map, node, _nodes(result))
    except ValueError as exc:
        env.renderer.error(str(exc))
        return ExitCode.USAGE
    env.renderer.rows(_placement_rows(result.map, plan), PLACEMENT_COLUMNS)
    if dry_run or not plan:
        env.renderer.note(f"node {node} holds no replica" if not plan else f"{len(plan)} shards to move")
        return ExitCode.OK
    if not _place_all(env, plan, wait_s):
        return ExitCode.UNAVAILABLE
    env.renderer.note(f"node {node} holds no replica now: it can be stopped")
    return ExitCode.OK


@command
def rebalance(
    env: Env,
    dry_run: DryRunOpt = False,
    wait_s: Annotated[float, typer.Option("--wait", min=1, help="Seconds to wait for each change.")] = 60.0,
) -> ExitCode:
    """Even out the partitions per data shard, then the replicas and the preferred leaders per node
    (to within one where the shards allow), one change at a time.

    Prints the plan; without --dry-run carries it out, each change finished before the next
    starts, with progress. Exit code 5 if a change does not finish within --wait.
    """
    return rebalance_cluster(env, dry_run, wait_s)


def rebalance_cluster(env: Env, dry_run: bool, wait_s: float) -> ExitCode:
    """`rebalance`'s work (`node add` does it last)."""
    from confmand.protocol import planning  # noqa: PLC0415  (lazy: see the module's doc)

    result = _current(env)
    if isinstance(result, ExitCode):
        return result
    moves = planning.balancing_moves(result.map)
    lines = shard_lines(env.client.shard_map_all())
    plan = planning.replica_plan(result.map, _nodes(result), {s: line.leader for s, line in lines.items()})
    env.renderer.rows([{"partition": p, "from": s, "to": t} for p, s, t in moves], MOVE_COLUMNS)
    env.renderer.rows(_placement_rows(result.map, plan), PLACEMENT_COLUMNS)
    if dry_run or not (moves or plan):
        planned = f"{len(moves)} partition moves and {len(plan)} placements planned (dry run)"
        env.renderer.note("balanced: nothing to change" if not (moves or plan) else planned)
        return ExitCode.OK
    if not _move_all(env, moves, wait_s) or not _place_all(env, plan, wait_s):
        return ExitCode.UNAVAILABLE
    return ExitCode.OK


def register(app: typer.Typer) -> None:
    app.command("move")(move)
    app.command("rebalance")(rebalance)
    app.command("replicas")(replicas)
    app.command("add-shard")(add_shard)
    app.command("split")(split)
    app.command("drain")(drain)
