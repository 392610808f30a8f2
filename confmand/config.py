"""The node config: one TOML file, loaded and checked in one place into one frozen dataclass tree.

`load_config(path)` is the only way in. Every problem raises `ConfigError`
whose message names the file and the field (`config/node1.toml:
raft.election_ticks: must be an integer >= 3 (got "ten")`). Unknown fields are
errors too (a typo must not silently fall back to a default). The fields,
defaults and limits are documented in config/README.md; keep the two in step.

Invariants of a loaded `NodeConfig`:
- `node_id` is one of `peers`; peer ids, peer addresses and client addresses
  are each unique; every address is `tcp://host:port`.
- `data_dir` is absolute (a relative path is taken relative to the file's directory).
- `raft.heartbeat_ticks < raft.election_ticks`; the size limits nest
  (`max_key_bytes` and `max_value_bytes` below `max_request_bytes`).
"""

from __future__ import annotations

import difflib
import json
import logging
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from confmand.protocol.shardmap import ShardMap, initial_map

log = logging.getLogger(__name__)

MIB: Final = 1 << 20
MAX_REPLICATION: Final = 5  # the default replication: every first-membership node, up to this
LOG_LEVELS: Final = ("debug", "info", "warning", "error")
LOG_FORMATS: Final = ("text", "json")
_ADDRESS_RE: Final = re.compile(r"tcp://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.*-]+):(?P<port>[0-9]{1,5})")
_HTTP_ADDRESS_RE: Final = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(?P<port>[0-9]{1,5})")
_CLUSTER_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class ConfigError(Exception):
    """A config file that cannot be read or does not validate; the message names file and field."""


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """One node of the cluster, as the others reach it."""

    id: int
    peer_address: str
    client_address: str
    # Not in the first membership: the node starts with no state and waits for the leader to add it.
    joins: bool = False
    # Taken out of the cluster for good (`confctl node remove`): no link, no replica may go there.
    # A first-membership node keeps its entry so marked (the first map is computed from those);
    # its addresses may then be left out, or be taken by another entry.
    removed: bool = False

    @property
    def active(self) -> bool:
        return not self.removed


@dataclass(frozen=True, slots=True)
class ClusterShape:
    """What the cluster was created with: fixed for its life, the same on every node (docs/sharding.md).

    `replication` None means every first-membership node up to 5.
    """

    partitions: int = 256
    data_shards: int = 1
    replication: int | None = None

    def to_record(self, voters: frozenset[int]) -> dict[str, object]:
        """What a data dir remembers of the cluster it was created in, to refuse another later."""
        return {
            "partitions": self.partitions,
            "data_shards": self.data_shards,
            "replication": self.replication_for(len(voters)),
            "initial_nodes": sorted(voters),
        }

    def replication_for(self, voters: int) -> int:
        return min(voters, MAX_REPLICATION) if self.replication is None else self.replication


@dataclass(frozen=True, slots=True)
class RaftSettings:
    tick_ms: int = 50
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    snapshot_interval_entries: int = 10_000
    log_retain_entries: int = 1_000
    max_append_entries: int = 1024
    max_apply_entries: int = 1024  # committed entries one shard applies per loop turn (fairness)
    quiet_shards: bool = True  # an idle, settled shard stops ticking until work or a failure wakes it
    map_membership: bool = True  # a shard's leader changes its membership to the map's replicas


@dataclass(frozen=True, slots=True)
class Limits:
    max_key_bytes: int = 512
    max_value_bytes: int = 1 * MIB
    max_request_bytes: int = 2 * MIB
    max_txn_ops: int = 128
    max_list_limit: int = 1_000
    history_limit: int = 10


@dataclass(frozen=True, slots=True)
class RequestSettings:
    request_timeout_ms: int = 5_000
    version_read_wait_ms: int = 1_000
    session_ttl_ms: int = 3_600_000
    # Watches (docs/protocol.md, *Watches*): the changes each replica keeps in memory for watchers
    # to resume from, and how many watches the node serves at once.
    watch_window_events: int = 10_000
    max_watches: int = 100_000


@dataclass(frozen=True, slots=True)
class ClockSettings:
    max_clock_offset_ms: int = 500
    # Test-only: a file holding an integer of ms added to this node's wall clock, re-read when it
    # changes (fault tests step one node's clock with it). Relative to the config file's dir.
    test_offset_file: str | None = None


@dataclass(frozen=True, slots=True)
class StorageSettings:
    fsync: bool = True  # false only for tests and benchmarks: a crash may then lose acknowledged writes


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = "info"
    format: str = "text"  # or "json": one object per line (confmand/server/log_format.py)


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """The daemon's /health, /health/ready and /metrics (docs/daemon.md, *HTTP endpoints*)."""

    address: str | None = None  # host:port to serve on; None: no HTTP endpoints
    ready_max_lag_entries: int = 1_000  # a replica applying further behind its commit is not ready

    @property
    def host_port(self) -> tuple[str, int]:
        assert self.address is not None
        host, _, port = self.address.rpartition(":")
        return host.strip("[]"), int(port)


@dataclass(frozen=True, slots=True)
class NodeConfig:
    source: Path  # the file this was loaded from
    cluster_id: str
    node_id: int
    data_dir: Path
    peer_address: str  # where this node binds its peer ROUTER
    client_address: str  # where this node binds its client ROUTER
    peers: tuple[PeerConfig, ...]  # every node's addresses, this node included, sorted by id
    cluster: ClusterShape = ClusterShape()
    raft: RaftSettings = RaftSettings()
    limits: Limits = Limits()
    requests: RequestSettings = RequestSettings()
    clock: ClockSettings = ClockSettings()
    storage: StorageSettings = StorageSettings()
    log: LogSettings = LogSettings()
    http: HttpSettings = HttpSettings()

    def peer(self, node_id: int) -> PeerConfig:
        """The initial-cluster entry of `node_id`; KeyError if it is not one."""
        for peer in self.peers:
            if peer.id == node_id:
                return peer
        raise KeyError(f"node {node_id} is not one of the [[peers]]")

    @property
    def initial_voters(self) -> frozenset[int]:
        """The first membership of every shard: the peers that do not join later."""
        return frozenset(p.id for p in self.peers if not p.joins)

    def initial_map(self) -> ShardMap:
        """The cluster's first shard map: the same on every node, from the first membership."""
        voters = self.initial_voters
        shape = self.cluster
        return initial_map(voters, shape.data_shards, shape.replication_for(len(voters)), shape.partitions)

    @property
    def remote_peer_addresses(self) -> dict[int, str]:
        """The peer address of every other node in the cluster (what `PeerTransport` connects to)."""
        return {p.id: p.peer_address for p in self.peers if p.id != self.node_id and p.active}

    @property
    def client_addresses(self) -> dict[int, str]:
        """Every node's client address (for leader hints); none of a removed node."""
        return {p.id: p.client_address for p in self.peers if p.active}

    @property
    def active_peers(self) -> tuple[PeerConfig, ...]:
        return tuple(p for p in self.peers if p.active)


# ------------------------------------------------------------------ field readers


class _Fault(Exception):
    """A bad field: `field` is its dotted name, the message says what is wrong."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return str(value)


def _int(minimum: int, maximum: int | None = None) -> Callable[[str, object], int]:
    bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"

    def read(field: str, value: object) -> int:
        if type(value) is not int or value < minimum or (maximum is not None and value > maximum):
            raise _Fault(field, f"must be an integer {bound} (got {_show(value)})")
        return value

    return read


def _bool(field: str, value: object) -> bool:
    if type(value) is not bool:
        raise _Fault(field, f"must be true or false (got {_show(value)})")
    return value


def _str(field: str, value: object) -> str:
    if type(value) is not str:
        raise _Fault(field, f"must be a string (got {_show(value)})")
    return value


def _address(field: str, value: object) -> str:
    match = _ADDRESS_RE.fullmatch(_str(field, value))
    if match is None or not 1 <= int(match["port"]) <= 65535:
        raise _Fault(field, f"must be tcp://host:port with a port in [1, 65535] (got {_show(value)})")
    return str(value)


def _advertised_address(field: str, value: object) -> str:
    address = _address(field, value)
    if "*" in address:
        raise _Fault(field, f"must name a host others can reach, not a wildcard (got {_show(value)})")
    return address


def _http_address(field: str, value: object) -> str:
    match = _HTTP_ADDRESS_RE.fullmatch(_str(field, value))
    if match is None or not 1 <= int(match["port"]) <= 65535:
        raise _Fault(field, f"must be host:port with a port in [1, 65535] (got {_show(value)})")
    return str(value)


def _log_level(field: str, value: object) -> str:
    if _str(field, value) not in LOG_LEVELS:
        raise _Fault(field, f"must be one of {', '.join(LOG_LEVELS)} (got {_show(value)})")
    return str(value)


def _log_format(field: str, value: object) -> str:
    if _str(field, value) not in LOG_FORMATS:
        raise _Fault(field, f"must be one of {', '.join(LOG_FORMATS)} (got {_show(value)})")
    return str(value)


def _cluster_id(field: str, value: object) -> str:
    if _CLUSTER_ID_RE.fullmatch(_str(field, value)) is None:
        raise _Fault(field, f"must be 1-64 of [A-Za-z0-9._-], starting alphanumeric (got {_show(value)})")
    return str(value)


_Reader = Callable[[str, object], Any]
T = TypeVar("T")


def _table(field: str, value: object) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise _Fault(field, f"must be a table (got {_show(value)})")
    return value


def _fields(
    section: str, table: Mapping[str, object], readers: Mapping[str, _Reader], required: frozenset[str]
) -> dict[str, Any]:
    """Read `table` with one reader per known key; unknown keys and missing required ones are faults."""
    prefix = f"{section}." if section else ""
    for key in table:
        if key not in readers:
            close = difflib.get_close_matches(key, list(readers), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise _Fault(f"{prefix}{key}", f"unknown field{hint}")
    for key in sorted(required - table.keys()):
        raise _Fault(f"{prefix}{key}", "required field is missing")
    return {key: readers[key](f"{prefix}{key}", value) for key, value in table.items()}


def _section(
    cls: Callable[..., T], name: str, doc: Mapping[str, object], readers: Mapping[str, _Reader]
) -> T:
    return cls(**_fields(name, _table(name, doc.get(name, {})), readers, frozenset()))


_POSITIVE: Final = _int(1)
_CLUSTER_READERS: Final[dict[str, _Reader]] = {
    "partitions": _int(1, 65_536),
    "data_shards": _int(1, 65_536),
    "replication": _int(1, 7),
}
_RAFT_READERS: Final[dict[str, _Reader]] = {
    "tick_ms": _int(1, 60_000),
    "election_ticks": _int(3, 1_000_000),
    "heartbeat_ticks": _POSITIVE,
    "pre_vote": _bool,
    "check_quorum": _bool,
    "snapshot_interval_entries": _POSITIVE,
    "log_retain_entries": _int(0),
    "max_append_entries": _int(1, 1_000_000),
    "max_apply_entries": _int(1, 1_000_000),
    "quiet_shards": _bool,
    "map_membership": _bool,
}
_LIMITS_READERS: Final[dict[str, _Reader]] = {
    "max_key_bytes": _int(1, 64 * 1024),
    "max_value_bytes": _int(0, 64 * MIB),
    "max_request_bytes": _int(1024, 128 * MIB),
    "max_txn_ops": _int(1, 100_000),
    "max_list_limit": _int(1, 100_000),
    "history_limit": _int(0, 1_000_000),
}
_REQUEST_READERS: Final[dict[str, _Reader]] = {
    "request_timeout_ms": _int(1, 3_600_000),
    "version_read_wait_ms": _int(0, 3_600_000),
    "session_ttl_ms": _int(1_000),
    "watch_window_events": _int(1, 10_000_000),
    "max_watches": _int(0, 10_000_000),
}
_CLOCK_READERS: Final[dict[str, _Reader]] = {
    "max_clock_offset_ms": _int(0, 3_600_000),
    "test_offset_file": _str,
}
_STORAGE_READERS: Final[dict[str, _Reader]] = {"fsync": _bool}
_LOG_READERS: Final[dict[str, _Reader]] = {"level": _log_level, "format": _log_format}
_HTTP_READERS: Final[dict[str, _Reader]] = {
    "address": _http_address,
    "ready_max_lag_entries": _int(0),
}
_NODE_READERS: Final[dict[str, _Reader]] = {
    "cluster_id": _cluster_id,
    "node_id": _POSITIVE,
    "data_dir": _str,
    "peer_address": _address,
    "client_address": _address,
}
_PEER_READERS: Final[dict[str, _Reader]] = {
    "id": _POSITIVE,
    "peer_address": _advertised_address,
    "client_address": _advertised_address,
    "joins": _bool,
    "removed": _bool,
}
_PEER_REQUIRED: Final = frozenset({"id", "peer_address", "client_address"})
_REMOVED_PEER_REQUIRED: Final = frozenset({"id", "removed"})
_TOP_LEVEL: Final = frozenset(
    {"node", "peers", "cluster", "raft", "limits", "requests", "clock", "storage", "log", "http"}
)


# ------------------------------------------------------------------ loading


def load_config(path: Path) -> NodeConfig:
    """The config in `path`; raises ConfigError naming the file and the bad field."""
    try:
        with path.open("rb") as file:
            doc = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        config = _build(path, doc)
    except _Fault as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if not config.storage.fsync:
        log.warning(
            "%s: storage.fsync = false: acknowledged writes can be lost on a crash (tests/benchmarks only)",
            path,
        )
    return config


def _build(path: Path, doc: Mapping[str, object]) -> NodeConfig:
    _fields("", doc, dict.fromkeys(_TOP_LEVEL, lambda _f, v: v), frozenset({"node", "peers"}))
    node = _fields(
        "node", _table("node", doc["node"]), _NODE_READERS, frozenset({"cluster_id", "node_id", "data_dir"})
    )
    peers = _peers(doc["peers"])
    node_id: int = node["node_id"]
    this = next((p for p in peers if p.id == node_id), None)
    if this is None:
        raise _Fault(
            "node.node_id", f"node {node_id} is not listed in [[peers]] (ids: {[p.id for p in peers]})"
        )
    if this.removed:
        raise _Fault(
            "node.node_id",
            f"node {node_id} has removed = true in [[peers]]: it left the cluster for good; "
            "bring the host back as a new node (a new node_id with joins = true)",
        )
    cluster = _cluster(doc, peers)
    raft = _section(RaftSettings, "raft", doc, _RAFT_READERS)
    if raft.heartbeat_ticks >= raft.election_ticks:
        raise _Fault(
            "raft.heartbeat_ticks",
            f"must be below raft.election_ticks = {raft.election_ticks} (got {raft.heartbeat_ticks})",
        )
    limits = _section(Limits, "limits", doc, _LIMITS_READERS)
    for name in ("max_key_bytes", "max_value_bytes"):
        if getattr(limits, name) >= limits.max_request_bytes:
            raise _Fault(
                f"limits.{name}",
                f"must be below limits.max_request_bytes = {limits.max_request_bytes} "
                f"(got {getattr(limits, name)})",
            )
    data_dir = Path(node["data_dir"]).expanduser()
    return NodeConfig(
        source=path,
        cluster_id=node["cluster_id"],
        node_id=node_id,
        data_dir=(path.parent / data_dir).resolve(),
        peer_address=node.get("peer_address", this.peer_address),
        client_address=node.get("client_address", this.client_address),
        peers=peers,
        cluster=cluster,
        raft=raft,
        limits=limits,
        requests=_section(RequestSettings, "requests", doc, _REQUEST_READERS),
        clock=_section(ClockSettings, "clock", doc, _CLOCK_READERS),
        storage=_section(StorageSettings, "storage", doc, _STORAGE_READERS),
        log=_section(LogSettings, "log", doc, _LOG_READERS),
        http=_section(HttpSettings, "http", doc, _HTTP_READERS),
    )


def _cluster(doc: Mapping[str, object], peers: tuple[PeerConfig, ...]) -> ClusterShape:
    shape = _section(ClusterShape, "cluster", doc, _CLUSTER_READERS)
    if shape.data_shards > shape.partitions:
        raise _Fault(
            "cluster.data_shards",
            f"must be at most cluster.partitions = {shape.partitions} (got {shape.data_shards})",
        )
    voters = sum(1 for p in peers if not p.joins)
    if shape.replication is not None and shape.replication > voters:
        raise _Fault(
            "cluster.replication",
            f"must be at most the {voters} [[peers]] of the first membership (got {shape.replication})",
        )
    return shape


def _peers(value: object) -> tuple[PeerConfig, ...]:
    if not isinstance(value, list) or not value:
        raise _Fault("peers", f"must be a non-empty array of tables [[peers]] (got {_show(value)})")
    peers = []
    seen: dict[str, dict[object, int]] = {"id": {}, "peer_address": {}, "client_address": {}}
    for position, item in enumerate(value):
        where = f"peers[{position}]"
        table = _table(where, item)
        required = _REMOVED_PEER_REQUIRED if table.get("removed") is True else _PEER_REQUIRED
        fields = {"peer_address": "", "client_address": "", **_fields(where, table, _PEER_READERS, required)}
        peer = PeerConfig(**fields)
        for name, owners in seen.items():
            key = getattr(peer, name)
            if peer.removed and name != "id":
                continue  # a removed node's addresses are free for another
            if key in owners:
                raise _Fault(f"{where}.{name}", f"{_show(key)} is already used by peers[{owners[key]}]")
            owners[key] = position
        peers.append(peer)
    if all(p.joins for p in peers):
        raise _Fault("peers", "every peer has joins = true: at least one must form the first membership")
    if all(p.removed for p in peers):
        raise _Fault("peers", "every peer has removed = true: a cluster needs at least one node")
    return tuple(sorted(peers, key=lambda p: p.id))
