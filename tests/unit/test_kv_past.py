"""Reads of the past (kv/past.py) and the rollback write, over the in-memory apply path."""

from __future__ import annotations

import pytest

from confmand.kv.commands import Command, Delete, Put, Rollback
from confmand.kv.harness import MemoryShard
from confmand.kv.past import HistoryTrimmed, key_at, list_at
from confmand.kv.queries import audit_records
from confmand.kv.records import decode_audit, encode_audit
from confmand.kv.results import CAS_FAILED, COMPACTED, NOT_FOUND
from confmand.protocol.types import AuditRecord, Version


def cmd(op: Put | Delete | Rollback) -> Command:
    return Command(op, hlc=1 << 20, principal="ops", session=None)


def write(shard: MemoryShard, op: Put | Delete | Rollback) -> Version:
    result = shard.apply_one(cmd(op))
    assert result.ok, result
    return result.version


def test_a_key_at_a_version_is_its_newest_change_at_or_below_it() -> None:
    shard = MemoryShard()
    v1 = write(shard, Put("app/k", b"one"))
    v2 = write(shard, Put("app/k", b"two"))
    write(shard, Put("app/other", b"x"))

    assert key_at(shard.store, "app/k", v1, 10).value == b"one"
    assert key_at(shard.store, "app/k", Version(1, v2.index + 1), 10).value == b"two"
    assert key_at(shard.store, "app/k", Version(1, v2.index + 1), 10).version == v2


def test_a_key_is_absent_before_its_first_write_and_after_its_delete() -> None:
    shard = MemoryShard()
    write(shard, Put("app/other", b"x"))
    put_at = write(shard, Put("app/k", b"v"))
    deleted_at = write(shard, Delete("app/k"))

    assert key_at(shard.store, "app/k", Version(1, 1), 10).value is None
    assert key_at(shard.store, "app/k", put_at, 10).value == b"v"
    assert key_at(shard.store, "app/k", deleted_at, 10).value is None
    assert key_at(shard.store, "app/never", deleted_at, 10).value is None


def test_a_version_whose_history_was_trimmed_is_refused_naming_the_oldest_kept() -> None:
    shard = MemoryShard(history_limit=2)
    first = write(shard, Put("app/k", b"0"))
    write(shard, Put("app/k", b"1"))
    second_kept = write(shard, Put("app/k", b"2"))

    with pytest.raises(HistoryTrimmed) as trimmed:
        key_at(shard.store, "app/k", first, 2)

    assert trimmed.value.oldest == Version(1, second_kept.index - 1)


def test_a_prefix_at_a_version_lists_the_keys_that_existed_then_with_their_values() -> None:
    shard = MemoryShard()
    write(shard, Put("app/a", b"a1"))
    write(shard, Put("app/b", b"b1"))
    then = write(shard, Put("app/c", b"c1"))
    write(shard, Delete("app/b"))
    write(shard, Put("app/a", b"a2"))
    write(shard, Put("app/d", b"d1"))

    page = list_at(shard.store, "app/", after=None, limit=10, at=then, history_limit=10)

    assert [(i.key, i.value) for i in page.items] == [("app/a", b"a1"), ("app/b", b"b1"), ("app/c", b"c1")]
    assert not page.more


def test_a_rollback_writes_the_old_value_back_as_a_new_version_and_audits_what_it_restored() -> None:
    shard = MemoryShard()
    good = write(shard, Put("app/k", b"good"))
    bad = write(shard, Put("app/k", b"bad"))

    result = shard.apply_one(cmd(Rollback("app/k", good, expected_version=bad)))

    assert result.ok, result
    assert (result.op, result.prev_version) == ("rollback", bad)
    assert key_at(shard.store, "app/k", result.version, 10).value == b"good"
    last = audit_records(shard.store).records[-1]
    assert (last.op, last.restored_from, last.prev_version) == ("rollback", good, bad)


def test_a_rollback_to_before_a_key_existed_deletes_it() -> None:
    shard = MemoryShard()
    before = write(shard, Put("app/other", b"x"))
    write(shard, Put("app/k", b"new"))

    result = shard.apply_one(cmd(Rollback("app/k", before)))

    assert result.ok, result
    assert key_at(shard.store, "app/k", result.version, 10).value is None


def test_a_rollback_guarded_by_a_version_the_key_left_writes_nothing() -> None:
    shard = MemoryShard()
    good = write(shard, Put("app/k", b"good"))
    seen = write(shard, Put("app/k", b"bad"))
    write(shard, Put("app/k", b"newer"))

    result = shard.apply_one(cmd(Rollback("app/k", good, expected_version=seen)))

    assert (result.ok, result.error_code) == (False, CAS_FAILED)
    assert key_at(shard.store, "app/k", Version(1, 99), 10).value == b"newer"


def test_a_rollback_past_the_kept_history_or_to_absent_when_absent_fails_typed() -> None:
    shard = MemoryShard(history_limit=1)
    first = write(shard, Put("app/k", b"0"))
    write(shard, Put("app/k", b"1"))
    write(shard, Put("app/x", b"x"))

    trimmed = shard.apply_one(cmd(Rollback("app/k", first)))
    absent = shard.apply_one(cmd(Rollback("app/never", first)))

    assert (trimmed.ok, trimmed.error_code) == (False, COMPACTED)
    assert (absent.ok, absent.error_code) == (False, NOT_FOUND)


def test_an_audit_record_keeps_its_restored_version_and_older_seven_field_records_still_decode() -> None:
    restored = AuditRecord(
        5, Version(2, 9), "ops", "rollback", "k", Version(2, 8), Version(2, 9), Version(1, 3)
    )
    plain = AuditRecord(5, Version(2, 9), "ops", "put", "k", None, Version(2, 9))

    assert decode_audit(encode_audit(restored)) == restored
    assert decode_audit(encode_audit(plain)) == plain
    assert plain.restored_from is None
