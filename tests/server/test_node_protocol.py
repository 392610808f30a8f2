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
