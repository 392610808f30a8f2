"""The `status` reply: one node's view of a shard, as operators read it (docs/protocol.md, *Status*).

`shards` lists every shard the node hosts, one line each; the other fields are of one of them
(the one the request names, else the node's first data shard). A node that hosts no shard yet
(it joins and no leader has reached it) answers the node's fields with role `none`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from confmand import native
from confmand.raft import Role
from confmand.server.clock_health import clock_fault
from confmand.server.health import apply_lag

if TYPE_CHECKING:
    from confmand.server.node import Node
    from confmand.server.replica import Replica


def status_line(node: Node) -> str:
    """One line for a person (systemd's STATUS=, `systemctl status`): leadership, lag, trouble."""
    replicas = list(node.replicas.values())
    led = sum(1 for r in replicas if r.is_leader)
    leaderless = sum(1 for r in replicas if r.raft.leader_id is None)
    max_lag = node.config.http.ready_max_lag_entries  # lagging as /health/ready counts it
    lagging = sum(1 for r in replicas if apply_lag(r) > max_lag)
    line = f"leader of {led}/{len(replicas)} shards, {lagging} lagging, {leaderless} without a leader"
    if node.storage_error:
        line += f"; storage error: {node.storage_error}"
    fault = clock_fault(node.clock, node.peer_contact, node.now)
    if fault:
        line += f"; clock: {fault}"
    return line


def node_status(node: Node, replica: Replica | None) -> dict[str, object]:
    fields = _node_fields(node)
    fields["shards"] = [_shard_line(r) for _, r in sorted(node.replicas.items())]
    if replica is None:
        fields.update(shard_id=None, role="none", term=0, leader_id=None, commit_index=0, applied_index=0)
        fields.update(applied="0:0", last_index=0, first_index=0, snapshot_index=0, voters=[], learners=[])
        fields.update(last_contact_ms=-1)
        return fields
    fields.update(replica_status(node, replica))
    return fields


def _node_fields(node: Node) -> dict[str, object]:
    fault = clock_fault(node.clock, node.peer_contact, node.now)
    return {
        "node_id": node.node_id,
        "storage_error": node.storage_error,
        "client_address": node.config.client_address,
        "peer_address": node.config.peer_address,
        "counters": dict(sorted(node.counters.items())),
        "hlc": None if fault else node.clock.last,
        "clock_fault": fault,  # why this node stamps nothing (its clock is off from its peers'), or nil
        "hlc_rejected": node.clock.rejected,  # peer stamps refused as too far ahead of this node's clock
        "hlc_ignored": node.clock.ignored,  # client stamps served without being merged (too far ahead)
        "clock_peer_offset_ms": node.clock.peer_offset_ms(),  # closest peer clock, + when ahead of ours
        "map_epoch": node.shard_map.epoch,
        "watches": len(node.watches),  # watches open on this node (docs/protocol.md, *Watches*)
        "nodes": sorted(node.config.client_addresses),  # the cluster, as this node's config has it
        "hot_modules": native.STATUS.describe(),  # compiled (mypyc) or pure Python, and why
    }


def _shard_line(replica: Replica) -> dict[str, object]:
    raft = replica.raft
    return {
        "shard_id": replica.shard_id,
        "role": raft.role.value,
        "term": raft.term,
        "leader_id": raft.leader_id,
        "commit_index": raft.commit_index,
        "applied": str(replica.applied),
    }


def replica_status(node: Node, replica: Replica) -> dict[str, object]:
    status = replica.raft.status()
    membership = status.membership
    fields: dict[str, object] = {
        "node_id": node.node_id,
        "shard_id": replica.shard_id,
        "role": status.role.value,
        "term": status.term,
        "leader_id": status.leader_id,
        "commit_index": status.commit_index,
        "applied_index": replica.applied.index,
        "applied": str(replica.applied),
        "last_index": status.last_index,
        "first_index": replica.storage.log_bounds()[0],  # the log before it is compacted into a snapshot
        "snapshot_index": replica.snapshot_index,
        "voters": sorted(membership.voters) if membership else [],
        "learners": sorted(membership.learners) if membership else [],
        "last_contact_ms": replica.staleness_ms(),
    }
    if status.role is Role.LEADER:
        fields["peers"] = {
            str(peer_id): {
                "match_index": peer.match,
                "next_index": peer.next_index,
                "lag": max(0, status.last_index - peer.match),
                "last_contact_ms": _since_ms(node.now, replica.peer_contact.get(peer_id)),
            }
            for peer_id, peer in sorted(status.peers.items())
            if peer_id != node.node_id
        }
    return fields


def _since_ms(now: float, then: float | None) -> int:
    return -1 if then is None else max(0, int((now - then) * 1000))
