"""`MemoryShard`: a config state machine over a `MemoryKVStore` that numbers its own entries.

The in-memory twin of a shard's apply path, for tests and the simulator: it encodes commands,
gives each entry the next index (at a fixed term unless told otherwise), applies a batch and
persists the WriteSet the way the driver does. It keeps the last WriteSet for inspection.
"""

from __future__ import annotations

from confmand.kv.codec import encode_command
from confmand.kv.commands import Command
from confmand.kv.partitions import Ownership
from confmand.kv.results import WriteResult
from confmand.kv.sessions import SWEEP_RESULTS
from confmand.kv.snapshot import STATE_KINDS
from confmand.kv.state_machine import ConfigStateMachine
from confmand.kv.store import MemoryKVStore, WriteSet
from confmand.protocol.types import Version


class MemoryShard:
    """Entries in, results out; the state is `store`, the last batch's writes `last_writes`."""

    def __init__(
        self,
        store: MemoryKVStore | None = None,
        *,
        term: int = 1,
        history_limit: int = 10,
        session_ttl_ms: int = 3_600_000,
        max_session_results: int = 1024,
        ownership: Ownership | None = None,
        sweep_results: int = SWEEP_RESULTS,
        shard_id: int = 1,
    ) -> None:
        self.store = MemoryKVStore() if store is None else store
        self.term = term
        self.next_index = 1
        self.last_writes = WriteSet()
        self.machine = ConfigStateMachine(
            self.store,
            history_limit=history_limit,
            session_ttl_ms=session_ttl_ms,
            max_session_results=max_session_results,
            ownership=ownership,
            sweep_results=sweep_results,
            shard_id=shard_id,
        )

    def entries(self, *items: Command | bytes) -> list[tuple[Version, bytes]]:
        """Number `items` as the next entries (commands encoded, bytes as they are)."""
        numbered = []
        for item in items:
            data = item if isinstance(item, bytes) else encode_command(item)
            numbered.append((Version(self.term, self.next_index), data))
            self.next_index += 1
        return numbered

    def apply(self, *items: Command | bytes) -> list[WriteResult]:
        """Apply `items` as one batch of committed entries and persist its writes."""
        writes, results = self.machine.apply_batch(self.entries(*items))
        self.store.apply(writes)
        self.last_writes = writes
        return results

    def records(self) -> list[tuple[bytes, bytes, bytes]]:
        """Every state-machine record, `(kind, key, value)` in store order: the state to compare."""
        return [(kind, key, value) for kind in STATE_KINDS for key, value in self.store.scan(kind)]

    def apply_one(self, item: Command | bytes) -> WriteResult:
        (result,) = self.apply(item)
        return result
