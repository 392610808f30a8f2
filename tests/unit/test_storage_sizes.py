"""A shard's size on disk: LevelDB's estimate covers its log and its state, and no other shard's."""

from __future__ import annotations

import random
from pathlib import Path

from confmand.storage import NodeStorage
from confmand.storage.keys import shard_prefix

STATE = b"d"  # a kind of the state machine's (storage knows none of their names)


def test_a_shards_estimated_size_counts_its_records_and_no_other_shards(tmp_path: Path) -> None:
    storage = NodeStorage.open(tmp_path / "data", "sizes", 1)
    batch, rng = storage.new_batch(), random.Random(0)  # random bytes: LevelDB compresses the rest
    for i in range(2000):
        batch.put_raw(shard_prefix(STATE, 1) + i.to_bytes(4, "big"), rng.randbytes(500))
        batch.put_raw(shard_prefix(STATE, 2) + i.to_bytes(4, "big"), b"x")
    storage.write(batch, sync=True)
    storage.close()
    storage = NodeStorage.open(tmp_path / "data", "sizes", 1)  # reopening moves the log into a table

    one, two, absent = (storage.approximate_bytes(s, [STATE]) for s in (1, 2, 3))
    storage.close()

    assert one > 500_000 > two
    assert absent == 0
