"""What a SIGHUP applies from an edited config, and what it leaves for a restart."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from confmand.config import load_config
from confmand.server.reload import plan_reload, reload_config

BASE = """
[node]
cluster_id = "test"
node_id = 1
data_dir = "data"

[[peers]]
id = 1
peer_address = "tcp://127.0.0.1:7201"
client_address = "tcp://127.0.0.1:7101"
"""
BOUND = 2 * 1024 * 1024  # the running socket's frame limit (the default max_request_bytes)


def _config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "node.toml"
    path.write_text(BASE + extra)
    return path


def test_log_level_format_and_request_limits_apply_at_once(tmp_path: Path) -> None:
    running = load_config(_config(tmp_path))
    edited = load_config(
        _config(
            tmp_path,
            '\n[log]\nlevel = "debug"\nformat = "json"\n[limits]\nmax_value_bytes = 4096\nmax_txn_ops = 8\n',
        )
    )

    plan = plan_reload(running, edited, BOUND)

    assert plan.applied == ("limits.max_value_bytes", "limits.max_txn_ops", "log.level", "log.format")
    assert plan.need_restart == ()
    assert (plan.config.limits.max_value_bytes, plan.config.limits.max_txn_ops) == (4096, 8)
    assert plan.config.log.level == "debug"


def test_raft_timing_peers_history_limit_and_a_larger_frame_wait_for_a_restart(tmp_path: Path) -> None:
    running = load_config(_config(tmp_path))
    edited = load_config(
        _config(
            tmp_path,
            "\n[raft]\ntick_ms = 20\n[limits]\nhistory_limit = 3\nmax_request_bytes = 8388608\n"
            '[[peers]]\nid = 2\npeer_address = "tcp://127.0.0.1:7202"\n'
            'client_address = "tcp://127.0.0.1:7102"\n',
        )
    )

    plan = plan_reload(running, edited, BOUND)

    assert plan.applied == ()
    assert set(plan.need_restart) == {
        "limits.history_limit",
        "limits.max_request_bytes",
        "peers[2] (a node new to a running cluster needs joins = true)",
        "raft.tick_ms",
    }
    assert plan.config == running  # nothing of it applied


def test_a_joining_peer_added_to_the_config_applies_at_once(tmp_path: Path) -> None:
    running = load_config(_config(tmp_path))
    joining = (
        '[[peers]]\nid = 2\npeer_address = "tcp://h2:7202"\nclient_address = "tcp://h2:7102"\njoins = true\n'
    )
    edited = load_config(_config(tmp_path, joining))

    plan = plan_reload(running, edited, BOUND)

    assert plan.applied == ("peers (added: 2; removed: none)",)
    assert plan.need_restart == ()
    assert plan.config.client_addresses == {1: "tcp://127.0.0.1:7101", 2: "tcp://h2:7102"}


def test_a_config_that_no_longer_loads_changes_nothing_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _config(tmp_path)
    running = load_config(path)
    path.write_text(BASE + "\n[limits]\nmax_value_bytes = -1\n")

    with caplog.at_level(logging.ERROR):
        assert reload_config(running, BOUND) is None

    assert "not reloaded" in caplog.text
    assert "limits.max_value_bytes" in caplog.text


def test_a_config_now_naming_another_node_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _config(tmp_path)
    running = load_config(path)
    path.write_text(BASE.replace("node_id = 1", "node_id = 2").replace("id = 1", "id = 2"))

    with caplog.at_level(logging.ERROR):
        assert reload_config(running, BOUND) is None

    assert "now names node 2" in caplog.text
