"""LevelDB without block compression, and data dirs written with Snappy before (docs/storage.md)."""

from __future__ import annotations

from pathlib import Path

import plyvel

from confmand.storage.dbio import open_plyvel


def test_a_data_dir_written_with_snappy_compression_opens_and_reads_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "db"
    old = plyvel.DB(str(path), create_if_missing=True, compression="snappy")
    values = {b"k%05d" % i: b"config value %d " % i * 20 for i in range(2000)}
    with old.write_batch() as batch:
        for key, value in values.items():
            batch.put(key, value)
    old.compact_range()  # into compressed table files, not only the log
    old.close()

    db = open_plyvel(path, False)
    try:
        assert dict(db.iterator()) == values
        db.put(b"new", b"uncompressed from here on")
        db.compact_range()
        assert db.get(b"k01999") == values[b"k01999"]
        assert db.get(b"new") == b"uncompressed from here on"
    finally:
        db.close()


def test_new_tables_are_written_without_compression(tmp_path: Path) -> None:
    # Incompressible-looking but highly compressible data: with Snappy the tables would be far
    # smaller than what was written.
    db = open_plyvel(tmp_path / "db", True)
    try:
        with db.write_batch() as batch:
            for i in range(4000):
                batch.put(b"k%05d" % i, b"a" * 1000)
        db.compact_range()
    finally:
        db.close()
    tables = sum(p.stat().st_size for p in (tmp_path / "db").glob("*.ldb"))
    assert tables > 4000 * 1000
