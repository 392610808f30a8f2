"""The node's hybrid logical clock: advanced by client stamps, never locking a client out."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from confmand.config import ClockSettings
from confmand.hlc import pack, unpack
from tests.server.node_harness import NodeHarness, single_node_config


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def test_a_request_stamped_far_ahead_is_served_without_moving_the_clock_and_counted(
    harness: NodeHarness,
) -> None:
    # A client that picked up a stamp from a node whose clock ran ahead must not be locked out:
    # the request is served, the stamp is not merged (this clock does not jump), and it is counted.
    ahead = pack(now_ms() + 47_000, 0)  # the default max_clock_offset_ms is 500

    put = harness.call("put", key="app/k", value=b"v", hlc=ahead)
    get = harness.call("get", key="app/k", hlc=ahead)
    status = harness.call("status")

    assert put["ok"], put
    assert get["ok"], get
    assert put["hlc"] < ahead
    assert unpack(harness.call("audit")["records"][-1]["hlc"])[0] < now_ms() + 10_000
    assert status["hlc_ignored"] == 2
    assert status["counters"]["client_hlc_ignored"] == 2
    assert status["clock_fault"] is None


def test_a_leader_whose_clock_is_off_from_its_peers_stamps_nothing_and_says_so(
    harness: NodeHarness,
) -> None:
    node = harness.node
    behind = pack(now_ms() - 47_000, 0)  # what two peers' stamps look like to a node 47 s ahead
    for peer in (2, 3):
        node.peer_contact[peer] = node.now
    node.clock.update(behind)
    node.clock.offset_ms = 1_100  # a later window (the test's shortcut for waiting a second)
    node.clock.update(behind)

    put = harness.call("put", key="app/k", value=b"v")
    status = harness.call("status")

    assert put["error"]["code"] == "NOT_LEADER"
    assert put["error"]["retryable"] is True
    assert "stamps no write" in put["error"]["message"]
    assert put["hlc"] is None
    assert status["hlc"] is None
    assert "ahead of its 2 peers'" in status["clock_fault"]
    assert status["clock_peer_offset_ms"] <= -47_000
    assert harness.call("get", key="app/k", consistency="stale")["error"]["code"] == "NOT_FOUND"


def test_a_request_stamped_slightly_ahead_moves_the_clock_and_orders_the_audit_after_it(
    harness: NodeHarness,
) -> None:
    stamp = pack(now_ms() + 200, 7)

    reply = harness.call("put", key="app/k", value=b"v", hlc=stamp)
    audit = harness.call("audit")

    assert reply["ok"]
    assert reply["hlc"] > stamp
    assert audit["records"][-1]["hlc"] > stamp
    assert unpack(audit["records"][-1]["hlc"])[0] >= unpack(stamp)[0]


def test_the_test_only_offset_file_steps_the_nodes_wall_clock(tmp_path: Path) -> None:
    offset_file = tmp_path / "offset"
    offset_file.write_text("3600000")
    config = single_node_config(tmp_path / "data")
    config = dataclasses.replace(config, clock=ClockSettings(test_offset_file=str(offset_file)))
    h = NodeHarness(config)
    try:
        h.until_leader()
        stamp = h.call("ping")["hlc"]
    finally:
        h.close()

    assert unpack(stamp)[0] >= now_ms() + 3_500_000
