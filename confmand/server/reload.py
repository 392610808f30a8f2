"""SIGHUP: read the config file again and apply what can change while the node runs.

Applied at once: `log.level` and `log.format`; the request limits a node checks on its own
(`limits.max_key_bytes`, `max_value_bytes`, `max_txn_ops`, `max_list_limit`, and
`max_request_bytes` up to the value the client socket was bound with);
`http.ready_max_lag_entries`; nodes added (`joins = true`) or removed in [[peers]]
(peer_changes.py says which changes and when). Everything else is logged as
changed but needing a restart, and keeps its running value: this node's addresses (sockets are
bound), the Raft timing, the cluster's shape, and `limits.history_limit`, which every replica of
a shard must apply alike (it decides which history records the state machine keeps).

A file that no longer loads is logged and changes nothing: the node keeps serving as it was.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from confmand.config import ConfigError, Limits, LogSettings, NodeConfig, load_config
from confmand.server.peer_changes import plan_peer_changes

log = logging.getLogger(__name__)

RELOADABLE_LIMITS = ("max_key_bytes", "max_value_bytes", "max_request_bytes", "max_txn_ops", "max_list_limit")


@dataclass(frozen=True, slots=True)
class Reload:
    """The config to run with from now on, and what the file changed that it could not apply."""

    config: NodeConfig
    applied: tuple[str, ...]
    need_restart: tuple[str, ...]


def plan_reload(running: NodeConfig, new: NodeConfig, bound_request_bytes: int) -> Reload:
    """What of `new` applies now over `running`; `bound_request_bytes`: the most a client frame
    may carry on the socket as bound (a larger `max_request_bytes` waits for a restart)."""
    applied: list[str] = []
    need_restart: list[str] = []
    limits = running.limits
    for name in (f.name for f in dataclasses.fields(Limits)):
        old, value = getattr(running.limits, name), getattr(new.limits, name)
        if old == value:
            continue
        if name in RELOADABLE_LIMITS and not (name == "max_request_bytes" and value > bound_request_bytes):
            limits = dataclasses.replace(limits, **{name: value})
            applied.append(f"limits.{name}")
        else:
            need_restart.append(f"limits.{name}")
    log_settings, http = running.log, running.http
    if new.log != running.log:
        log_settings = new.log
        applied += [
            f"log.{f.name}"
            for f in dataclasses.fields(LogSettings)
            if getattr(new.log, f.name) != getattr(running.log, f.name)
        ]
    if new.http.ready_max_lag_entries != running.http.ready_max_lag_entries:
        http = dataclasses.replace(http, ready_max_lag_entries=new.http.ready_max_lag_entries)
        applied.append("http.ready_max_lag_entries")
    if new.http.address != running.http.address:
        need_restart.append("http.address")
    peers = running.peers
    peer_changes = plan_peer_changes(running.peers, new.peers)
    if peer_changes.need_restart:
        need_restart += peer_changes.need_restart
    elif peer_changes.any:
        peers = new.peers
        added = ", ".join(str(p.id) for p in peer_changes.added) or "none"
        removed = ", ".join(str(n) for n in peer_changes.removed) or "none"
        applied.append(f"peers (added: {added}; removed: {removed})")
    for field in dataclasses.fields(NodeConfig):
        if field.name in ("source", "limits", "log", "http", "peers"):
            continue
        old, value = getattr(running, field.name), getattr(new, field.name)
        if old == value:
            continue
        if dataclasses.is_dataclass(old):  # a section: name the fields that changed
            need_restart += [
                f"{field.name}.{f.name}"
                for f in dataclasses.fields(old)
                if getattr(old, f.name) != getattr(value, f.name)
            ]
        else:
            need_restart.append(field.name)
    config = dataclasses.replace(running, limits=limits, log=log_settings, http=http, peers=peers)
    return Reload(config, tuple(applied), tuple(need_restart))


def reload_config(running: NodeConfig, bound_request_bytes: int) -> Reload | None:
    """Read `running.source` again and plan the reload; None (logged) if the file does not load."""
    try:
        new = load_config(running.source)
    except ConfigError as exc:
        log.error("SIGHUP: not reloaded, the config stays as it was: %s", exc)
        return None
    if new.node_id != running.node_id or new.cluster_id != running.cluster_id:
        log.error(
            "SIGHUP: not reloaded: %s now names node %d of cluster %r, this is node %d of %r",
            running.source,
            new.node_id,
            new.cluster_id,
            running.node_id,
            running.cluster_id,
        )
        return None
    plan = plan_reload(running, new, bound_request_bytes)
    log.info(
        "SIGHUP: reloaded %s: applied %s; changed but need a restart: %s",
        running.source,
        ", ".join(plan.applied) or "nothing",
        ", ".join(plan.need_restart) or "nothing",
    )
    return plan
