"""The in-process node every server test starts from: one node, elected, closed afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.node_harness import NodeHarness, single_node_config


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[NodeHarness]:
    h = NodeHarness(single_node_config(tmp_path / "data"))
    h.until_leader()
    yield h
    h.close()
