"""EventWindow: the changes a replica keeps for watchers, whole entries at a time."""

from __future__ import annotations

import pytest

from confmand.kv.store import ChangeEvent
from confmand.protocol.types import Version
from confmand.server.watch_window import EventWindow


def put(index: int, key: str, value: bytes = b"v", term: int = 1) -> ChangeEvent:
    return (index, term, "put", key, value, 1000 + index)


def test_changes_after_an_index_come_in_log_order_and_say_whether_they_reach_the_top() -> None:
    window = EventWindow(Version(1, 2))
    window.extend([put(3, "a"), put(5, "b")], Version(1, 6))

    events, complete = window.after(3, max_events=10, max_bytes=1 << 20)

    assert [e[0] for e in events] == [5]
    assert complete
    assert window.top == Version(1, 6)


def test_a_limit_never_splits_an_entry() -> None:
    window = EventWindow(Version(1, 0))
    window.extend([put(1, "a"), put(2, "b"), put(2, "c"), put(2, "d"), put(3, "e")], Version(1, 3))

    events, complete = window.after(0, max_events=2, max_bytes=1 << 20)

    assert [(e[0], e[3]) for e in events] == [(1, "a"), (2, "b"), (2, "c"), (2, "d")]
    assert not complete


def test_one_entry_larger_than_the_byte_limit_still_comes_whole() -> None:
    window = EventWindow(Version(1, 0))
    window.extend([put(1, "a", b"x" * 100), put(1, "b", b"x" * 100), put(2, "c")], Version(1, 2))

    events, complete = window.after(0, max_events=100, max_bytes=10)

    assert [e[3] for e in events] == ["a", "b"]
    assert not complete


def test_eviction_drops_whole_entries_and_raises_the_floor() -> None:
    window = EventWindow(Version(1, 0), max_events=3)
    window.extend([put(1, "a"), put(2, "b"), put(2, "c")], Version(1, 2))
    window.extend([put(3, "d"), put(3, "e")], Version(1, 3))

    assert window.floor == Version(1, 2)  # entries 1 and 2 went: 2's changes are never half kept
    assert not window.serves(1)
    assert window.serves(2)
    events, _ = window.after(2, max_events=10, max_bytes=1 << 20)
    assert [e[3] for e in events] == ["d", "e"]


def test_a_snapshot_install_empties_the_window_at_its_version() -> None:
    window = EventWindow(Version(1, 0))
    window.extend([put(1, "a")], Version(1, 1))

    window.reset(Version(2, 50))

    assert window.floor == window.top == Version(2, 50)
    assert not window.serves(1)
    assert window.after(50, 10, 1 << 20) == ([], True)


def test_applied_never_goes_back() -> None:
    window = EventWindow(Version(1, 5))
    with pytest.raises(ValueError, match="went back"):
        window.extend([], Version(1, 4))
    with pytest.raises(ValueError, match="not after"):
        window.extend([put(5, "a")], Version(1, 6))
