"""The node's hybrid logical clock: advanced by client stamps, refusing stamps too far ahead."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from confmand.config import ClockSettings
from confmand.hlc import pack, unpack
from tests.server.node_harness import NodeHarness, single_node_config


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[NodeHarness]:
    h = NodeHarness(single_node_config(tmp_path / "data"))
    h.until_leader()
    yield h
    h.close()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def test_a_request_stamped_far_ahead_is_refused_with_CLOCK_SKEW_and_counted(harness: NodeHarness) -> None:
    ahead = pack(now_ms() + 60_000, 0)  # the default max_clock_offset_ms is 500

    reply = harness.call("put", key="app/k", value=b"v", hlc=ahead)

    assert reply["error"]["code"] == "CLOCK_SKEW"
    assert harness.call("status")["hlc_rejected"] == 1
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
