"""A write batch: the raw puts and deletes of one loop turn, across every shard of the node.

Only `NodeStorage.write` writes a batch to LevelDB; the `ShardStorage.stage_*`
methods fill it. Besides its operations, a batch remembers, per shard it
touched, the shard's staged state after it (`after`), which becomes the
durable cached state when the batch is written.

Invariants (enforced by `NodeStorage`, documented in docs/storage.md):
- Batches are staged into in creation order: `new_batch()` seals the
  previous batch, and staging into a sealed batch is refused. So each
  batch's `after` is the tip of the shards it touched at the time it sealed.
- Non-empty batches are written in creation order, each exactly once; a batch
  whose write failed is retried (the same object) before any later one.
- Operations keep their order; a delete after a put of one key deletes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from confmand.storage.errors import StorageUsageError
from confmand.storage.state import ShardState

Op = tuple[bytes, bytes | None]  # (key, value); None: delete


@dataclass(slots=True, eq=False)
class WriteBatch:
    number: int
    owner_token: object  # the NodeStorage session that made it; batches do not cross reopens by the caller
    _on_first_op: Callable[[WriteBatch], None]
    ops: list[Op] = field(default_factory=list)
    after: dict[int, ShardState] = field(default_factory=dict)
    sealed: bool = False
    written: bool = False

    def put_raw(self, key: bytes, value: bytes) -> None:
        self._add((key, value))

    def delete_raw(self, key: bytes) -> None:
        self._add((key, None))

    def extend(self, ops: list[Op]) -> None:
        """Add `ops` in order (a put has bytes, a delete None): one check for the lot."""
        if not ops:
            return
        self.check_open_for_staging()
        if not self.ops:
            self._on_first_op(self)
        self.ops.extend(ops)

    def keys_with_prefix(self, prefix: bytes) -> Iterator[bytes]:
        for key, value in self.ops:
            if value is not None and key.startswith(prefix):
                yield key

    def check_open_for_staging(self) -> None:
        if self.sealed:
            raise StorageUsageError(f"batch {self.number} is sealed: stage into the newest batch only")
        if self.written:
            raise StorageUsageError(f"batch {self.number} is already written")

    def __len__(self) -> int:
        return len(self.ops)

    def _add(self, op: Op) -> None:
        self.check_open_for_staging()
        if not self.ops:
            self._on_first_op(self)
        self.ops.append(op)
