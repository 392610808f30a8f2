"""SIGHUP on a real node: request limits and the log level change at once; a broken file changes nothing."""

from __future__ import annotations

from tests.integration.conftest import MakeCluster
from tests.integration.harness import error_code


def test_sighup_applies_a_lower_value_limit_and_the_log_level_without_a_restart(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(size=1)
    cluster.put(1, "app/big", b"x" * 2000)
    path = cluster.config_path(1)
    edited = path.read_text().replace("[limits]\n", "[limits]\nmax_value_bytes = 1000\n", 1)
    path.write_text(edited + '\n[log]\nlevel = "debug"\n')
    pid = cluster.process(1).pid

    cluster.sighup(1, "SIGHUP: reloaded")
    refused = cluster.call(1, {"op": "put", "key": "app/big", "value": b"x" * 2000})
    accepted = cluster.put(1, "app/small", b"x" * 900)

    assert cluster.process(1).pid == pid
    assert error_code(refused) == "TOO_LARGE"
    assert accepted["ok"]
    assert "applied limits.max_value_bytes, log.level" in cluster.log_text(1)


def test_sighup_with_a_broken_config_keeps_the_node_serving_as_it_was(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(size=1)
    path = cluster.config_path(1)
    good = path.read_text()
    path.write_text(good.replace("[limits]\n", "[limits]\nmax_value_bytes = -5\n", 1))

    cluster.sighup(1, "SIGHUP: not reloaded")
    path.write_text(good.replace("tick_ms = 50", "tick_ms = 20"))
    cluster.sighup(1, "SIGHUP: reloaded")

    assert cluster.put(1, "app/still", b"1")["ok"]
    assert "limits.max_value_bytes: must be an integer" in cluster.log_text(1)
    assert "need a restart: raft.tick_ms" in cluster.log_text(1)
