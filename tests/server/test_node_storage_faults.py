"""A node whose disk fails: writes fail with STORAGE, nothing acknowledged is lost, reads go on."""

from __future__ import annotations

import pytest

from confmand.storage import StorageFullError, WriteBatch
from tests.server.node_harness import NodeHarness


class FullDisk:
    """Makes every storage write fail with ENOSPC until `free()` is called."""

    def __init__(self, harness: NodeHarness, monkeypatch: pytest.MonkeyPatch) -> None:
        self.real_write = harness.node.storage.write
        self.failures = 0
        self.full = True
        monkeypatch.setattr(harness.node.storage, "write", self.write)

    def write(self, batch: WriteBatch, sync: bool) -> None:
        if self.full:
            self.failures += 1
            raise StorageFullError("No space left on device (injected)")
        self.real_write(batch, sync)

    def free(self) -> None:
        self.full = False


def test_a_full_disk_fails_new_writes_with_STORAGE_and_keeps_serving_stale_reads(
    harness: NodeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert harness.call("put", key="app/a", value=b"1")["ok"]
    disk = FullDisk(harness, monkeypatch)
    pending = harness.send("put", key="app/b", value=b"2")
    harness.turn_until(lambda: disk.failures >= 1)

    refused = harness.call("put", key="app/c", value=b"3")
    stale = harness.call("get", key="app/a", consistency="stale")

    assert refused["error"]["code"] == "STORAGE"
    assert refused["error"]["retryable"] is True
    assert "No space left" in refused["error"]["message"]
    assert stale["ok"]
    assert stale["value"] == b"1"
    assert harness.call("status")["storage_error"] is not None
    assert pending  # still unanswered: its batch waits for the disk


def test_the_write_that_met_a_full_disk_commits_once_space_is_freed(
    harness: NodeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = FullDisk(harness, monkeypatch)
    rid = harness.send("put", key="app/b", value=b"2")
    harness.turn_until(lambda: disk.failures >= 1)
    disk.free()

    answer = harness.reply(max_turns=100_000)
    read = harness.call("get", key="app/b")

    assert answer["id"] == rid
    assert answer["ok"], answer["error"]
    assert read["value"] == b"2"
    assert read["version"] == answer["version"]
    assert harness.call("status")["storage_error"] is None


def test_a_stalled_node_waits_for_its_retry_instead_of_spinning(
    harness: NodeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = FullDisk(harness, monkeypatch)
    harness.send("put", key="app/b", value=b"2")
    harness.turn_until(lambda: disk.failures >= 1)

    wait_s = harness.node.seconds_to_next_turn()

    assert wait_s > 0
