"""Storage keys sort numerically, and sealed records round-trip or fail with RecordError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from confmand.raft.types import Entry, EntryKind, HardState
from confmand.storage.keys import log_key
from confmand.storage.records import (
    RecordError,
    decode_entry,
    decode_hard_state,
    encode_entry,
    encode_hard_state,
)

shards = st.integers(0, 2**32 - 1)
indexes = st.integers(0, 2**64 - 1)


@given(shards, indexes, shards, indexes)
def test_log_keys_sort_as_shard_then_index(s1: int, i1: int, s2: int, i2: int) -> None:
    assert (log_key(s1, i1) < log_key(s2, i2)) == ((s1, i1) < (s2, i2))


@given(st.integers(0, 2**63), st.integers(1, 2**40), st.sampled_from(EntryKind), st.binary(max_size=64))
def test_an_entry_round_trips(term: int, index: int, kind: EntryKind, data: bytes) -> None:
    key = log_key(0, index)
    assert decode_entry(key, encode_entry(key, Entry(term, index, kind, data))) == Entry(
        term, index, kind, data
    )


def test_an_intact_value_under_the_wrong_key_is_refused() -> None:
    value = encode_entry(log_key(0, 7), Entry(1, 7, EntryKind.NORMAL, b"x"))
    with pytest.raises(RecordError, match="checksum"):
        decode_entry(log_key(0, 8), value)


@pytest.mark.parametrize("value", [b"", b"\x00\x01", b"\x00\x00\x00\x00\xc1"])
def test_garbage_is_a_record_error(value: bytes) -> None:
    with pytest.raises(RecordError):
        decode_hard_state(b"h\x00\x00\x00\x00", value)


def test_a_hard_state_round_trips_with_and_without_a_vote() -> None:
    key = b"h\x00\x00\x00\x01"
    for hs in (HardState(), HardState(term=3, vote=2, commit=9)):
        assert decode_hard_state(key, encode_hard_state(key, hs)) == hs
