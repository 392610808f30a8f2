"""OverlayStore reads exactly what the base store would hold once the pending writes are applied."""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from confmand.kv.overlay import OverlayStore
from confmand.kv.store import MemoryKVStore, WriteSet

kinds = st.sampled_from([b"d", b"v"])
small_keys = st.binary(max_size=3)
changes = st.lists(st.tuples(kinds, small_keys, st.none() | st.binary(max_size=2)), max_size=20)


def store_with(records: list[tuple[bytes, bytes, bytes | None]]) -> MemoryKVStore:
    store = MemoryKVStore()
    writes = WriteSet()
    for kind, key, value in records:
        if value is not None:
            writes.put(kind, key, value)
    store.apply(writes)
    return store


@settings(max_examples=80, deadline=None)
@given(changes, changes, st.tuples(kinds, small_keys, st.none() | small_keys, st.booleans()))
def test_overlay_scans_and_gets_match_the_applied_store(
    base_records: list[tuple[bytes, bytes, bytes | None]],
    pending: list[tuple[bytes, bytes, bytes | None]],
    scan: tuple[bytes, bytes, bytes | None, bool],
) -> None:
    kind, start, stop, reverse = scan
    base = store_with(base_records)
    overlay = OverlayStore(base)
    for k, key, value in pending:
        if value is None:
            overlay.delete(k, key)
        else:
            overlay.put(k, key, value)
    applied = copy.deepcopy(base)
    applied.apply(overlay.writes)
    assert list(overlay.scan(kind, start, stop, reverse)) == list(applied.scan(kind, start, stop, reverse))
    for k, key, _ in base_records + pending:
        assert overlay.get(k, key) == applied.get(k, key)


def test_an_overlay_built_on_a_write_set_sees_its_changes() -> None:
    writes = WriteSet()
    writes.put(b"d", b"b", b"2")
    writes.put(b"d", b"a", b"1")
    assert list(OverlayStore(MemoryKVStore(), writes).scan(b"d")) == [(b"a", b"1"), (b"b", b"2")]


def test_a_pending_delete_hides_the_base_record() -> None:
    base = store_with([(b"d", b"k", b"v")])
    overlay = OverlayStore(base)
    overlay.delete(b"d", b"k")
    assert (overlay.get(b"d", b"k"), list(overlay.scan(b"d"))) == (None, [])
    assert base.get(b"d", b"k") == b"v"
