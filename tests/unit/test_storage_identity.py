"""A data dir's id and the peers' dir ids as first seen: written once, synced, kept across reopens."""

from __future__ import annotations

from pathlib import Path

import plyvel
import pytest

from confmand.storage import DataDirError, NodeStorage
from confmand.storage.errors import StorageUsageError
from confmand.storage.keys import META_PEER_DIRS


def _open(path: Path) -> NodeStorage:
    return NodeStorage.open(path, "c", 1)


def test_a_new_dir_has_no_id_until_one_is_set_and_keeps_it_across_reopens(tmp_path: Path) -> None:
    storage = _open(tmp_path / "d")
    assert storage.dir_id() is None
    storage.set_dir_id(77)
    storage.close()

    again = _open(tmp_path / "d")

    assert again.dir_id() == 77
    with pytest.raises(StorageUsageError, match="already has an id"):
        again.set_dir_id(78)
    again.close()


def test_each_peers_first_dir_id_is_remembered_and_never_replaced(tmp_path: Path) -> None:
    storage = _open(tmp_path / "d")
    storage.remember_peer_dir(2, 500)
    storage.remember_peer_dir(3, 600)
    storage.close()

    again = _open(tmp_path / "d")

    assert again.peer_dir_ids() == {2: 500, 3: 600}
    with pytest.raises(StorageUsageError, match="known already"):
        again.remember_peer_dir(2, 501)
    again.close()


def test_a_corrupt_peer_dir_record_is_a_data_dir_error(tmp_path: Path) -> None:
    _open(tmp_path / "d").close()
    db = plyvel.DB(str(tmp_path / "d"))
    db.put(META_PEER_DIRS, b"\x00\x00\x00\x00garbage")
    db.close()
    storage = _open(tmp_path / "d")

    with pytest.raises(DataDirError, match="peer_dir_ids"):
        storage.peer_dir_ids()
    storage.close()
