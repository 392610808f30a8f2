"""Whether this node can serve, and why not: what /health/ready answers (http_endpoints.py).

A node is ready when it has recovered its data dir (it has, once it answers at all), its
storage takes writes, its clock agrees with its peers' (else it must not stamp, and a leader
refuses writes), and every shard it hosts knows a leader and applies within `max_lag` entries
of the commit index it knows. Each unmet condition is one reason, in words an operator acts on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from confmand.server.clock_health import clock_fault

if TYPE_CHECKING:
    from confmand.server.node import Node
    from confmand.server.replica import Replica


def apply_lag(replica: Replica) -> int:
    """How many entries the replica's state machine trails the shard's commit index.

    Against the highest commit index any leader reported, not the replica's own (which its log
    caps): a node restarted far behind is catching up, and not ready, until it holds and has
    applied what the shard had committed.
    """
    return max(0, replica.raft.known_commit_index - replica.applied.index)


def readiness(node: Node, max_lag: int) -> tuple[bool, dict[str, object]]:
    """(ready, the JSON body: `ready`, `reasons`, and each hosted shard's leader and lag)."""
    reasons: list[str] = []
    if node.storage_error:
        reasons.append(f"storage refuses writes: {node.storage_error}")
    fault = clock_fault(node.clock, node.peer_contact, node.now)
    if fault:
        reasons.append(f"clock: {fault}")
    shards: dict[str, object] = {}
    for shard_id, replica in sorted(node.replicas.items()):
        raft = replica.raft
        lag = apply_lag(replica)
        shards[str(shard_id)] = {
            "role": raft.role.value,
            "leader_id": raft.leader_id,
            "applied_index": replica.applied.index,
            "apply_lag": lag,
        }
        if raft.leader_id is None:
            reasons.append(f"shard {shard_id}: no leader known")
        if lag > max_lag:
            reasons.append(
                f"shard {shard_id}: applying {lag} entries behind its commit index (max {max_lag})"
            )
    body: dict[str, object] = {
        "ready": not reasons,
        "node_id": node.node_id,
        "reasons": reasons,
        "shards": shards,
    }
    return not reasons, body
