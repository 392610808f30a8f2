"""The cluster's nodes: `node list`, `node add`, `node remove`, `node drain`, and `leader transfer`.

Which nodes form the cluster is each node's config ([[peers]]), changed by editing it and
`systemctl reload confmand` (config/README.md, *peers*). These commands do the rest and check
what only the configs can do: `node add` that every node lists the new one and it answers, then
rebalances onto it; `node remove` empties the node (as `drain`) and says which configs still
list it; `leader transfer` makes a replica its shard's preferred leader and waits for it to lead.
The client and the planner load inside the commands (see placement.py).
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Annotated

import typer

from confctl.commands.common import Env, command
from confctl.commands.placement import POLL_S, WaitOpt, drain_node, rebalance_cluster, shard_lines
from confctl.exit_codes import ExitCode

if TYPE_CHECKING:
    from confctl.client.types import NodeStatus, ShardMapResult

NODE_COLUMNS = ["id", "address", "answers", "replicas", "leads", "lists"]

NodeArg = Annotated[int, typer.Argument(min=1, help="The node's id (its [[peers]] id).")]


def _statuses(env: Env, result: ShardMapResult) -> dict[int, NodeStatus]:
    """Each node of the map's address list, asked at once (unreachable ones say so)."""
    ids = sorted(result.addresses)
    views = env.client.status_all([result.addresses[n] for n in ids])
    return dict(zip(ids, views, strict=True))


def _listing(statuses: dict[int, NodeStatus], node: int) -> tuple[list[int], list[int]]:
    """(the answering nodes whose config lists `node`, those whose config does not)."""
    listing: list[int] = []
    missing: list[int] = []
    for node_id, status in sorted(statuses.items()):
        if node_id == node or not status.reachable or status.nodes is None:
            continue
        (listing if node in status.nodes else missing).append(node_id)
    return listing, missing


@command
def node_list(env: Env) -> ExitCode:
    """Every node the configs name: its address, whether it answers, the replicas it holds and leads.

    LISTS is the nodes its own config names: every node's should agree.
    """
    result = env.client.shard_map()
    lines = shard_lines(env.client.shard_map_all())
    statuses = _statuses(env, result)
    rows = []
    for node_id, status in sorted(statuses.items()):
        rows.append(
            {
                "id": node_id,
                "address": result.addresses[node_id],
                "answers": status.reachable,
                "replicas": len(result.map.shards_on(node_id)),
                "leads": sum(1 for line in lines.values() if line.leader == node_id),
                "lists": None if status.nodes is None else ",".join(map(str, status.nodes)),
            }
        )
    env.renderer.rows(rows, NODE_COLUMNS)
    return ExitCode.OK


@command
def node_add(
    env: Env,
    node: NodeArg,
    no_rebalance: Annotated[bool, typer.Option("--no-rebalance", help="Only check; move nothing.")] = False,
    wait_s: WaitOpt = 60.0,
) -> ExitCode:
    """Take a node into use: check it, then rebalance replicas and preferred leaders onto it.

    First add its \\[\\[peers]] entry (joins = true) to every config; systemctl reload confmand on each.
    This checks that every node lists it and that it answers.
    Then it moves replicas onto it one shard at a time, as `rebalance` does.
    """
    result = env.client.shard_map()
    if node not in result.addresses:
        env.renderer.error(
            f"node {node} is in no config the answering nodes have: add its [[peers]] entry "
            "(joins = true) to every node's config and `systemctl reload confmand` on each"
        )
        return ExitCode.ERROR
    statuses = _statuses(env, result)
    _, missing = _listing(statuses, node)
    if missing:
        env.renderer.error(f"nodes {missing} do not list node {node} yet: add it to their configs and reload")
        return ExitCode.ERROR
    if not statuses[node].reachable:
        env.renderer.error(f"node {node} does not answer at {result.addresses[node]}: start it first")
        return ExitCode.UNAVAILABLE
    env.renderer.note(f"node {node} answers and every node lists it")
    if no_rebalance:
        return ExitCode.OK
    return rebalance_cluster(env, dry_run=False, wait_s=wait_s)


@command
def node_remove(env: Env, node: NodeArg, wait_s: WaitOpt = 60.0) -> ExitCode:
    """Take a node out: move every replica off it (as `drain`), then say which configs still list it.

    Then take it out of those: delete a joined node's \\[\\[peers]] entry, or mark it removed = true.
    (A first-membership node is always marked, never deleted.)
    Reload each (systemctl reload confmand), and run this again to confirm.
    """
    code = drain_node(env, node, dry_run=False, wait_s=wait_s)
    if code != ExitCode.OK:
        return code
    result = env.client.shard_map()
    others = {n: a for n, a in result.addresses.items() if n != node}
    listing, _ = _listing(_statuses(env, dataclasses.replace(result, addresses=others)), node)
    if listing:
        env.renderer.note(
            f"node {node} holds no replica; nodes {listing} still list it: take it out of their "
            "[[peers]] (a first-membership node: removed = true) and `systemctl reload confmand`"
        )
        return ExitCode.OK
    env.renderer.note(f"node {node} is out of the cluster: it holds nothing and no node lists it")
    return ExitCode.OK


@command
def node_drain(
    env: Env,
    node: NodeArg,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan; change nothing.")] = False,
    wait_s: WaitOpt = 60.0,
) -> ExitCode:
    """Move every replica off a node, one shard at a time (before maintenance, or `node remove`)."""
    return drain_node(env, node, dry_run, wait_s)


@command
def leader_transfer(
    env: Env,
    shard: Annotated[int, typer.Argument(min=0, help="The shard (0: the meta shard).")],
    node: Annotated[int, typer.Argument(min=1, help="A node holding one of its replicas.")],
    wait_s: WaitOpt = 30.0,
) -> ExitCode:
    """Make NODE lead SHARD: the map names it the preferred leader, and the leader hands over.

    The hand-over waits until NODE is caught up.
    This waits until NODE leads (exit code 5 if not within --wait).
    """
    result = env.client.shard_map()
    replicas = result.map.replicas.get(shard)
    if replicas is None:
        env.renderer.error(f"there is no shard {shard} (shards: {list(result.map.replicas)})")
        return ExitCode.USAGE
    if node not in replicas:
        env.renderer.error(
            f"node {node} holds no replica of shard {shard} (its replicas: {list(replicas)}); "
            f"place one there first: confctl replicas {shard} {','.join(map(str, (node, *replicas)))}"
        )
        return ExitCode.USAGE
    if replicas[0] != node:
        env.client.set_replicas(shard, (node, *(n for n in replicas if n != node)))
    deadline = time.monotonic() + wait_s
    while True:
        line = shard_lines(env.client.shard_map_all()).get(shard)
        if line is not None and line.leader == node:
            env.renderer.record({"shard": shard, "leader": node})
            return ExitCode.OK
        if time.monotonic() >= deadline:
            leader = None if line is None else line.leader
            env.renderer.error(f"shard {shard} is led by {leader}, not node {node}, after {wait_s:g} s")
            return ExitCode.UNAVAILABLE
        time.sleep(POLL_S)


def register(app: typer.Typer) -> None:
    nodes = typer.Typer(no_args_is_help=True, help="The cluster's nodes: list, add, remove, drain.")
    nodes.command("list")(node_list)
    nodes.command("add")(node_add)
    nodes.command("remove")(node_remove)
    nodes.command("drain")(node_drain)
    app.add_typer(nodes, name="node")
    leader = typer.Typer(no_args_is_help=True, help="Shard leadership.")
    leader.command("transfer")(leader_transfer)
    app.add_typer(leader, name="leader")
