"""The node config: the shipped files validate, and every bad field is named with its file."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from confmand.config import ConfigError, Limits, RaftSettings, load_config

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "config"

MINIMAL = """
[node]
cluster_id = "test"
node_id = 1
data_dir = "data"

[[peers]]
id = 1
peer_address = "tcp://127.0.0.1:7201"
client_address = "tcp://127.0.0.1:7101"

[[peers]]
id = 2
peer_address = "tcp://127.0.0.1:7202"
client_address = "tcp://127.0.0.1:7102"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def _fails(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match="^" + re.escape(f"{path}: {message}")):
        load_config(path)


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.rglob("*.toml")), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_validates(path: Path) -> None:
    config = load_config(path)
    assert config.peer(config.node_id).peer_address.endswith(config.peer_address.rsplit(":", 1)[1])
    assert config.data_dir.is_relative_to(ROOT / "data")


def test_local_3_nodes_agree_on_the_cluster() -> None:
    configs = [load_config(CONFIG_DIR / "local-3" / f"node{i}.toml") for i in (1, 2, 3)]
    assert [c.node_id for c in configs] == [1, 2, 3]
    assert len({c.cluster_id for c in configs}) == 1
    assert len({c.peers for c in configs}) == 1
    assert len({c.data_dir for c in configs}) == 3
    for config in configs:
        this = config.peer(config.node_id)
        assert (config.peer_address, config.client_address) == (this.peer_address, this.client_address)
    assert [p.peer_address for p in configs[0].peers] == [f"tcp://127.0.0.1:720{i}" for i in (1, 2, 3)]
    assert [p.client_address for p in configs[0].peers] == [f"tcp://127.0.0.1:710{i}" for i in (1, 2, 3)]


def test_a_minimal_config_gets_the_documented_defaults(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, MINIMAL))
    assert config.raft == RaftSettings()
    assert config.limits == Limits()
    assert (config.raft.tick_ms, config.raft.election_ticks, config.limits.max_value_bytes) == (
        50,
        10,
        1 << 20,
    )
    assert config.storage.fsync is True
    assert config.log.level == "info"
    assert config.requests.request_timeout_ms == 5000
    assert config.clock.max_clock_offset_ms == 500


def test_http_endpoints_are_off_unless_an_address_is_given(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, MINIMAL)).http.address is None
    on = load_config(_write(tmp_path, MINIMAL + '\n[http]\naddress = "[::1]:7300"\n')).http

    assert (on.address, on.host_port, on.ready_max_lag_entries) == ("[::1]:7300", ("::1", 7300), 1000)


def test_the_data_dir_is_relative_to_the_config_file(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, MINIMAL)).data_dir == tmp_path.resolve() / "data"


def test_bind_addresses_default_to_this_nodes_peer_entry(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, MINIMAL))
    assert (config.peer_address, config.client_address) == ("tcp://127.0.0.1:7201", "tcp://127.0.0.1:7101")
    assert config.remote_peer_addresses == {2: "tcp://127.0.0.1:7202"}


def test_a_wildcard_bind_address_is_allowed_for_this_node(tmp_path: Path) -> None:
    text = MINIMAL.replace('data_dir = "data"', 'data_dir = "data"\npeer_address = "tcp://*:7201"')
    assert load_config(_write(tmp_path, text)).peer_address == "tcp://*:7201"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            '[raft]\nelection_ticks = "ten"',
            'raft.election_ticks: must be an integer in [3, 1000000] (got "ten")',
        ),
        ("[raft]\nelection_ticks = 2", "raft.election_ticks: must be an integer in [3, 1000000] (got 2)"),
        ("[raft]\nelection_ticks = 5\nheartbeat_ticks = 5", "raft.heartbeat_ticks: must be below"),
        ("[raft]\npre_vote = 1", "raft.pre_vote: must be true or false (got 1)"),
        ("[raft]\ntick_ms = true", "raft.tick_ms: must be an integer in [1, 60000] (got true)"),
        ("[raft]\nelecton_ticks = 10", "raft.electon_ticks: unknown field (did you mean election_ticks?)"),
        (
            "[limits]\nmax_value_bytes = 4194304",
            "limits.max_value_bytes: must be below limits.max_request_bytes",
        ),
        ('[log]\nlevel = "loud"', 'log.level: must be one of debug, info, warning, error (got "loud")'),
        ('[log]\nformat = "xml"', 'log.format: must be one of text, json (got "xml")'),
        ("[storage]\nfsink = false", "storage.fsink: unknown field (did you mean fsync?)"),
        ("[limitz]\nmax_key_bytes = 1", "limitz: unknown field (did you mean limits?)"),
        ("[cluster]\npartitions = 0", "cluster.partitions: must be an integer in [1, 65536] (got 0)"),
        (
            "[cluster]\npartitions = 4\ndata_shards = 8",
            "cluster.data_shards: must be at most cluster.partitions",
        ),
        ("[cluster]\nreplication = 3", "cluster.replication: must be at most the 2 [[peers]] of the first"),
        ("[cluster]\nshards = 3", "cluster.shards: unknown field (did you mean data_shards?)"),
        ('[http]\naddress = "tcp://127.0.0.1:7300"', "http.address: must be host:port with a port in"),
        ('[http]\naddress = "127.0.0.1:0"', "http.address: must be host:port with a port in [1, 65535]"),
        ("[http]\nready_max_lag_entries = -1", "http.ready_max_lag_entries: must be an integer >= 0"),
    ],
)
def test_bad_fields_are_named_with_the_file(tmp_path: Path, section: str, message: str) -> None:
    _fails(tmp_path, MINIMAL + "\n" + section + "\n", message)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("node_id = 1", "node_id = 3", "node.node_id: node 3 is not listed in [[peers]] (ids: [1, 2])"),
        ("node_id = 1", "node_id = 0", "node.node_id: must be an integer >= 1 (got 0)"),
        ('cluster_id = "test"\n', "", "node.cluster_id: required field is missing"),
        ('cluster_id = "test"', 'cluster_id = "a b"', "node.cluster_id: must be 1-64 of [A-Za-z0-9._-]"),
        ("id = 2", "id = 1", "peers[1].id: 1 is already used by peers[0]"),
        ("tcp://127.0.0.1:7202", "tcp://127.0.0.1:7201", 'peers[1].peer_address: "tcp://127.0.0.1:7201" is'),
        ("tcp://127.0.0.1:7102", "udp://127.0.0.1:7102", "peers[1].client_address: must be tcp://host:port"),
        ("tcp://127.0.0.1:7102", "tcp://127.0.0.1:70000", "peers[1].client_address: must be tcp://host:port"),
        (
            "tcp://127.0.0.1:7102",
            "tcp://*:7102",
            "peers[1].client_address: must name a host others can reach",
        ),
        ("id = 2\n", "id = 2\nweight = 3\n", "peers[1].weight: unknown field"),
    ],
)
def test_bad_node_and_peer_fields_are_named_with_the_file(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    _fails(tmp_path, MINIMAL.replace(old, new, 1), message)


def test_a_section_that_is_not_a_table_is_refused(tmp_path: Path) -> None:
    _fails(tmp_path, "raft = 3\n" + MINIMAL, "raft: must be a table (got 3)")


def test_a_config_without_peers_is_refused(tmp_path: Path) -> None:
    _fails(tmp_path, MINIMAL.split("[[peers]]", maxsplit=1)[0], "peers: required field is missing")


def test_invalid_toml_is_reported_with_the_file(tmp_path: Path) -> None:
    _fails(tmp_path, "[node\n", "not valid TOML")


def test_a_missing_file_is_reported_with_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


def test_turning_fsync_off_is_logged_loudly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        config = load_config(_write(tmp_path, MINIMAL + "\n[storage]\nfsync = false\n"))
    assert config.storage.fsync is False
    assert "acknowledged writes can be lost" in caplog.text


def test_a_peer_that_joins_later_is_known_by_address_but_not_in_the_first_membership(tmp_path: Path) -> None:
    text = MINIMAL.replace("id = 2\n", "id = 2\njoins = true\n", 1)
    config = load_config(_write(tmp_path, text))
    assert config.initial_voters == frozenset({1})
    assert config.client_addresses[2] == "tcp://127.0.0.1:7102"


def test_peers_that_all_join_later_are_refused(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        'client_address = "tcp://127.0.0.1:710', 'joins = true\nclient_address = "tcp://127.0.0.1:710'
    )
    _fails(tmp_path, text, "peers: every peer has joins = true")


def test_a_removed_peer_needs_no_address_stays_in_the_first_membership_and_gets_no_link(
    tmp_path: Path,
) -> None:
    config = load_config(_write(tmp_path, MINIMAL + "[[peers]]\nid = 3\nremoved = true\n"))

    assert config.initial_voters == frozenset({1, 2, 3})
    assert set(config.client_addresses) == {1, 2}
    assert set(config.remote_peer_addresses) == {2}


def test_a_removed_peer_s_addresses_may_be_taken_by_its_replacement(tmp_path: Path) -> None:
    replaced = MINIMAL.replace("id = 2\n", "id = 2\nremoved = true\n", 1) + (
        '[[peers]]\nid = 4\njoins = true\npeer_address = "tcp://127.0.0.1:7202"\n'
        'client_address = "tcp://127.0.0.1:7102"\n'
    )
    config = load_config(_write(tmp_path, replaced))

    assert config.client_addresses == {1: "tcp://127.0.0.1:7101", 4: "tcp://127.0.0.1:7102"}


def test_a_node_whose_own_entry_is_removed_refuses_to_start_saying_how_to_come_back(tmp_path: Path) -> None:
    text = MINIMAL.replace("[[peers]]\nid = 1\n", "[[peers]]\nid = 1\nremoved = true\n", 1)
    _fails(tmp_path, text, "node.node_id: node 1 has removed = true in [[peers]]")


def test_joins_must_be_a_boolean(tmp_path: Path) -> None:
    _fails(
        tmp_path,
        MINIMAL.replace("id = 2\n", "id = 2\njoins = 1\n", 1),
        "peers[1].joins: must be true or false",
    )


def test_the_cluster_shape_defaults_to_one_data_shard_on_every_node(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, MINIMAL))
    shard_map = config.initial_map()
    assert (config.cluster.partitions, shard_map.data_shards) == (256, [1])
    assert set(shard_map.replicas[1]) == {1, 2}


def test_the_cluster_shape_sets_the_first_map(tmp_path: Path) -> None:
    text = MINIMAL + "\n[cluster]\npartitions = 32\ndata_shards = 4\nreplication = 1\n"
    shard_map = load_config(_write(tmp_path, text)).initial_map()
    assert (shard_map.partitions, shard_map.data_shards) == (32, [1, 2, 3, 4])
    assert all(len(shard_map.replicas[s]) == 1 for s in shard_map.data_shards)
