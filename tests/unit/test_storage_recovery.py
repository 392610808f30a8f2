"""Node storage survives a close and reopen exactly, and refuses data dirs it must not trust."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import plyvel
import pytest

from confmand.kv.store import WriteSet
from confmand.raft.ready import Ready, SoftState
from confmand.raft.types import Entry, EntryKind, HardState, Membership, Role, Snapshot, SnapshotMeta
from confmand.storage import FORMAT_VERSION, DataDirError, NodeStorage, ShardStorage, StorageError
from confmand.storage.keys import APPLIED, HARD_STATE, META_FORMAT, SNAPSHOT_META, log_key
from confmand.storage.records import seal, unseal

CLUSTER = "prod-eu"
MEMBERS = Membership(frozenset({1, 2, 3}))


def ready(
    entries: list[Entry] | None = None, hard_state: HardState | None = None, snapshot: Snapshot | None = None
) -> Ready:
    return Ready(
        0, SoftState(Role.FOLLOWER, None), hard_state=hard_state, snapshot=snapshot, entries=entries or []
    )


def entries(first: int, last: int, term: int) -> list[Entry]:
    return [Entry(term, i, EntryKind.NORMAL, b"cmd%d" % i) for i in range(first, last + 1)]


def persist(node: NodeStorage, shard: ShardStorage, r: Ready) -> None:
    batch = node.new_batch()
    shard.stage_ready(r, batch)
    node.write(batch, sync=True)


def test_a_fresh_dir_is_created_with_nothing_in_it(tmp_path: Path) -> None:
    node = NodeStorage.open(tmp_path / "data", CLUSTER, 1)
    shard = node.shard(0)
    assert node.shard_ids() == []
    assert not shard.is_bootstrapped()
    assert shard.initial_state().entries == []
    assert shard.snapshot_meta() is None
    assert shard.applied_snapshot_meta() is None
    node.close()


def test_everything_written_reads_back_the_same_after_reopen(tmp_path: Path) -> None:
    node = NodeStorage.open(tmp_path, CLUSTER, 1)
    shard = node.shard(7)
    batch = node.new_batch()
    shard.stage_bootstrap(MEMBERS, batch)
    node.write(batch, sync=True)
    persist(node, shard, ready(entries(1, 12, 2), HardState(term=2, vote=3, commit=10)))
    writes = WriteSet()
    writes.put(b"d", b"app/db/url", b"postgres://x")
    writes.put(b"v", b"app/db/url\x00\x00", b"hist")
    batch = node.new_batch()
    shard.stage_applied(writes, 2, 10, batch)
    node.write(batch, sync=True)
    batch = node.new_batch()
    shard.stage_snapshot(SnapshotMeta(8, 2, MEMBERS), batch)
    shard.stage_compact(8, batch)
    node.write(batch, sync=True)
    node.close()

    again = NodeStorage.open(tmp_path, CLUSTER, 1)
    shard = again.shard(7)
    state = shard.initial_state()
    assert state.hard_state == HardState(term=2, vote=3, commit=10)
    assert state.snapshot_meta == SnapshotMeta(8, 2, MEMBERS)
    assert state.entries == entries(9, 12, 2)
    assert shard.snapshot_meta() == SnapshotMeta(8, 2, MEMBERS)
    assert shard.applied_snapshot_meta() == SnapshotMeta(10, 2, MEMBERS)
    assert shard.applied() == (2, 10)
    assert shard.log_bounds() == (9, 12)
    assert shard.get(b"d", b"app/db/url") == b"postgres://x"
    assert list(shard.scan(b"v")) == [(b"app/db/url\x00\x00", b"hist")]
    assert again.shard_ids() == [7]
    again.close()


def test_a_truncating_append_leaves_no_stale_tail_after_reopen(tmp_path: Path) -> None:
    node = NodeStorage.open(tmp_path, CLUSTER, 1)
    shard = node.shard(0)
    persist(node, shard, ready(entries(1, 10, 1), HardState(term=1)))
    persist(node, shard, ready(entries(5, 6, 2), HardState(term=2)))
    node.close()

    again = NodeStorage.open(tmp_path, CLUSTER, 1)
    assert again.shard(0).initial_state().entries == entries(1, 4, 1) + entries(5, 6, 2)
    assert again.shard(0).log_bounds() == (1, 6)
    again.close()


def test_a_received_snapshot_drops_the_whole_log(tmp_path: Path) -> None:
    node = NodeStorage.open(tmp_path, CLUSTER, 1)
    shard = node.shard(0)
    persist(node, shard, ready(entries(1, 10, 1)))
    persist(
        node, shard, ready(snapshot=Snapshot(SnapshotMeta(40, 3, MEMBERS), b"x"), entries=entries(41, 42, 3))
    )
    node.close()

    again = NodeStorage.open(tmp_path, CLUSTER, 1)
    state = again.shard(0).initial_state()
    assert state.snapshot_meta == SnapshotMeta(40, 3, MEMBERS)
    assert state.entries == entries(41, 42, 3)
    again.close()


def test_shards_keep_apart_in_one_db(tmp_path: Path) -> None:
    node = NodeStorage.open(tmp_path, CLUSTER, 1)
    batch = node.new_batch()
    node.shard(1).stage_ready(ready(entries(1, 3, 1), HardState(term=1)), batch)
    node.shard(2).stage_ready(ready(entries(1, 1, 5), HardState(term=5, vote=1)), batch)
    node.write(batch, sync=True)
    node.close()

    again = NodeStorage.open(tmp_path, CLUSTER, 1)
    assert again.shard_ids() == [1, 2]
    assert again.shard(1).initial_state().entries == entries(1, 3, 1)
    assert again.shard(2).initial_state().hard_state == HardState(term=5, vote=1)
    again.close()


def _corrupt(path: Path, key: bytes) -> None:
    db = plyvel.DB(str(path))
    value = bytearray(db.get(key))
    value[-1] ^= 0x01
    db.put(key, bytes(value))
    db.close()


@pytest.mark.parametrize(
    ("key", "named"),
    [
        (log_key(0, 2), "log entry 2 of shard 0"),
        (HARD_STATE + bytes(4), "hard state of shard 0"),
        (SNAPSHOT_META + bytes(4), "snapshot meta of shard 0"),
        (APPLIED + bytes(4), "applied index of shard 0"),
    ],
)
def test_a_flipped_bit_in_a_raft_record_refuses_the_dir_naming_the_record(
    tmp_path: Path, key: bytes, named: str
) -> None:
    node = NodeStorage.open(tmp_path, CLUSTER, 1)
    shard = node.shard(0)
    batch = node.new_batch()
    shard.stage_bootstrap(MEMBERS, batch)
    shard.stage_ready(ready(entries(2, 3, 1), HardState(term=1, commit=1)), batch)
    shard.stage_applied(WriteSet(), 1, 1, batch)
    shard.stage_snapshot(SnapshotMeta(1, 1, MEMBERS), batch)
    node.write(batch, sync=True)
    node.close()
    _corrupt(tmp_path, key)

    with pytest.raises(DataDirError, match=named) as refused:
        NodeStorage.open(tmp_path, CLUSTER, 1)
    assert str(tmp_path) in str(refused.value)


def test_a_log_with_a_gap_is_refused(tmp_path: Path) -> None:
    node = NodeStorage.open(tmp_path, CLUSTER, 1)
    persist(node, node.shard(0), ready(entries(1, 5, 1)))
    node.close()
    db = plyvel.DB(str(tmp_path))
    db.delete(log_key(0, 3))
    db.close()

    with pytest.raises(DataDirError, match="gap: entry 3 is missing"):
        NodeStorage.open(tmp_path, CLUSTER, 1)


@pytest.mark.parametrize(
    ("cluster", "node_id", "complaint"),
    [("prod-us", 1, "cluster id 'prod-eu'"), (CLUSTER, 2, "node id 1")],
)
def test_a_dir_of_another_cluster_or_node_is_refused(
    tmp_path: Path, cluster: str, node_id: int, complaint: str
) -> None:
    NodeStorage.open(tmp_path, CLUSTER, 1).close()
    with pytest.raises(DataDirError, match=complaint):
        NodeStorage.open(tmp_path, cluster, node_id)


@pytest.mark.parametrize("old_version", [1, 2])
def test_an_older_format_dir_opens_and_is_upgraded_so_older_confmands_refuse_it(
    tmp_path: Path, old_version: int
) -> None:
    NodeStorage.open(tmp_path, CLUSTER, 1).close()
    db = plyvel.DB(str(tmp_path))
    db.put(META_FORMAT, seal(META_FORMAT, old_version))
    db.close()
    NodeStorage.open(tmp_path, CLUSTER, 1).close()
    db = plyvel.DB(str(tmp_path))
    raw = db.get(META_FORMAT)
    db.close()
    assert raw is not None
    assert unseal(META_FORMAT, raw) == FORMAT_VERSION == 3


def test_an_unknown_format_version_is_refused(tmp_path: Path) -> None:
    NodeStorage.open(tmp_path, CLUSTER, 1).close()
    db = plyvel.DB(str(tmp_path))
    db.put(META_FORMAT, seal(META_FORMAT, 99))
    db.close()
    with pytest.raises(DataDirError, match="format version 99"):
        NodeStorage.open(tmp_path, CLUSTER, 1)


def test_a_dir_of_random_files_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("my holiday photos")
    with pytest.raises(DataDirError, match="no CURRENT file"):
        NodeStorage.open(tmp_path, CLUSTER, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_leveldb_of_another_program_is_refused(tmp_path: Path) -> None:
    db = plyvel.DB(str(tmp_path), create_if_missing=True)
    db.put(b"users/1", b"alice")
    db.close()
    with pytest.raises(DataDirError, match="not a Confman data dir"):
        NodeStorage.open(tmp_path, CLUSTER, 1)


def test_a_file_in_place_of_the_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("x")
    with pytest.raises(DataDirError, match="not a directory"):
        NodeStorage.open(tmp_path / "data", CLUSTER, 1)


def test_a_dir_open_in_this_process_is_in_use(tmp_path: Path) -> None:
    node = NodeStorage.open(tmp_path, CLUSTER, 1)
    with pytest.raises(DataDirError, match="in use by another process"):
        NodeStorage.open(tmp_path, CLUSTER, 1)
    node.close()


def test_a_dir_open_in_another_process_is_in_use(tmp_path: Path) -> None:
    node = NodeStorage.open(tmp_path, CLUSTER, 1)
    script = (
        "import sys; from pathlib import Path\n"
        "from confmand.storage import NodeStorage, DataDirError\n"
        "try:\n"
        f"    NodeStorage.open(Path({str(tmp_path)!r}), {CLUSTER!r}, 1)\n"
        "except DataDirError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    node.close()
    assert "in use by another process" in out.stdout


def test_a_leveldb_that_reports_corruption_is_refused(tmp_path: Path) -> None:
    node = NodeStorage.open(tmp_path, CLUSTER, 1)
    persist(node, node.shard(0), ready(entries(1, 3, 1)))
    node.close()
    manifest = next(tmp_path.glob("MANIFEST-*"))
    manifest.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(DataDirError, match=str(tmp_path)):
        NodeStorage.open(tmp_path, CLUSTER, 1)


def test_after_close_every_call_is_a_storage_error(tmp_path: Path) -> None:
    node = NodeStorage.open(tmp_path, CLUSTER, 1)
    shard = node.shard(0)
    node.close()
    with pytest.raises(StorageError, match="closed"):
        shard.get(b"d", b"k")


def test_the_first_membership_is_log_entry_one_committed_so_a_joiner_learns_it_from_the_log(
    tmp_path: Path,
) -> None:
    node = NodeStorage.open(tmp_path, CLUSTER, 1)
    batch = node.new_batch()
    node.shard(4).stage_bootstrap(MEMBERS, batch)
    node.write(batch, sync=True)
    node.close()

    state = NodeStorage.open(tmp_path, CLUSTER, 1).shard(4).initial_state()
    assert state.snapshot_meta is None
    assert state.hard_state == HardState(term=1, vote=None, commit=1)
    [first] = state.entries
    assert (first.index, first.term, first.kind) == (1, 1, EntryKind.MEMBERSHIP)
    assert Membership.decode(first.data) == MEMBERS
