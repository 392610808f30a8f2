"""One node answers as docs/protocol.md says: the behaviours a client in another language relies on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

from tests.server.node_harness import NodeHarness, single_node_config

MIB = 1024 * 1024


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[NodeHarness]:
    h = NodeHarness(single_node_config(tmp_path / "data"))
    h.until_leader()
    yield h
    h.close()


def test_a_request_over_max_request_bytes_is_answered_TOO_LARGE_under_its_own_id(
    harness: NodeHarness,
) -> None:
    harness.client.send(
        msgpack.packb({"v": 1, "id": 41, "op": "put", "key": "app/big", "value": b"x" * (2 * MIB)})
    )

    reply = harness.reply()

    assert (reply["id"], reply["ok"], reply["error"]["code"]) == (41, False, "TOO_LARGE")
    assert "max_request_bytes" in reply["error"]["message"]


def test_a_version_read_is_served_when_the_token_names_an_applied_entry(harness: NodeHarness) -> None:
    version = harness.call("put", key="app/k", value=b"v")["version"]

    reply = harness.call("get", key="app/k", consistency="version", min_version=version)

    assert reply["ok"], reply
    assert reply["value"] == b"v"


def test_a_version_token_whose_term_never_wrote_that_index_is_refused_UNKNOWN_VERSION(
    harness: NodeHarness,
) -> None:
    term, index = map(int, harness.call("put", key="app/k", value=b"v")["version"].split(":"))

    for bogus in (f"{term + 5}:{index}", f"{term + 5}:1", "3:0"):
        reply = harness.call("get", key="app/k", consistency="version", min_version=bogus)
        assert reply["error"]["code"] == "UNKNOWN_VERSION", (bogus, reply)
        assert reply["error"]["retryable"] is False
    assert harness.call("get", key="app/k", consistency="version", min_version="0:0")["ok"]


def test_a_compacted_token_is_refused_only_when_its_term_is_above_the_snapshots(tmp_path: Path) -> None:
    h = NodeHarness(single_node_config(tmp_path / "data", snapshot_interval_entries=5, log_retain_entries=0))
    try:
        h.until_leader()
        first = h.call("put", key="app/k", value=b"0")["version"]
        for i in range(12):
            h.call("put", key="app/k", value=str(i).encode())
        term = int(first.split(":")[0])
        index = int(first.split(":")[1])
        assert h.node.replicas[1].raft.log.term_at(index) is None  # compacted away

        served = h.call("get", key="app/k", consistency="version", min_version=first)
        refused = h.call("get", key="app/k", consistency="version", min_version=f"{term + 1}:{index}")
    finally:
        h.close()

    assert served["ok"], served
    assert refused["error"]["code"] == "UNKNOWN_VERSION"
