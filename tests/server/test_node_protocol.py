"""One node answers as docs/protocol.md says: the behaviours a client in another language relies on."""

from __future__ import annotations

from pathlib import Path

import msgpack

from tests.server.node_harness import NodeHarness, single_node_config
from tests.unit.test_protocol_doc import documented_status_fields

MIB = 1024 * 1024


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


def test_a_status_reply_carries_exactly_the_fields_the_status_table_documents(harness: NodeHarness) -> None:
    common = {"v", "id", "ok", "node", "leader", "shard"}  # every reply's; `hlc` is in both

    status = harness.call("status")

    assert set(status) - common == documented_status_fields()


def test_an_ack_above_the_seq_is_an_invalid_request(harness: NodeHarness) -> None:
    reply = harness.call("put", key="app/k", value=b"v", client_id=b"c" * 16, seq=3, ack=4)

    assert reply["error"]["code"] == "INVALID_REQUEST"
    assert "ack must not be above seq" in reply["error"]["message"]
    assert harness.call("put", key="app/k", value=b"v", client_id=b"c" * 16, seq=3, ack=3)["ok"]


def test_a_cas_retried_with_the_same_seq_gets_its_first_CAS_FAILED_back_even_once_it_would_hold(
    harness: NodeHarness,
) -> None:
    session = {"client_id": b"s" * 16}
    first = harness.call("cas", key="app/k", value=b"new", expected_version="0:0", **session, seq=1, ack=1)
    assert first["ok"]
    refused = harness.call("cas", key="app/k", value=b"newer", expected_value=b"x", **session, seq=2, ack=2)
    harness.call("put", key="app/k", value=b"x", **session, seq=3, ack=2)  # now the cas would hold

    retried = harness.call("cas", key="app/k", value=b"newer", expected_value=b"x", **session, seq=2, ack=2)

    assert refused["error"]["code"] == retried["error"]["code"] == "CAS_FAILED"
    assert retried["error"]["current_version"] == refused["error"]["current_version"]
    assert harness.call("get", key="app/k")["value"] == b"x"  # the retry applied nothing


def test_a_str_is_taken_where_bin_is_documented_but_not_the_other_way_round(harness: NodeHarness) -> None:
    put = harness.call("put", key="app/k", value="text", client_id="session-1", seq=1, ack=1)
    got = harness.call("get", key="app/k")
    bin_key = harness.call("get", key=b"app/k")

    assert put["ok"], put
    assert got["value"] == b"text"  # replies carry bin
    assert bin_key["error"]["code"] == "INVALID_REQUEST"
