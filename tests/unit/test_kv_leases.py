"""Leases in the state machine (kv/leases.py): granted by an entry, holding keys, ending with them."""

from __future__ import annotations

from confmand.kv.codec import decode_command, encode_command
from confmand.kv.commands import Cas, Command, Delete, LeaseExpire, LeaseGrant, LeaseRevoke, Put
from confmand.kv.harness import MemoryShard
from confmand.kv.leases import all_leases, attached_keys, lease_id
from confmand.kv.queries import get_key
from confmand.kv.records import DataRecord
from confmand.kv.results import INVALID_REQUEST, NOT_FOUND, WriteResult
from confmand.protocol.types import ABSENT, Version


def run(shard: MemoryShard, op: object) -> WriteResult:
    return shard.apply_one(Command(op, hlc=1 << 20, principal="ops", session=None))  # type: ignore[arg-type]


def grant(shard: MemoryShard, ttl_ms: int = 5_000) -> int:
    result = run(shard, LeaseGrant("locks/", ttl_ms))
    assert result.ok, result
    assert result.to_reply()["lease"] == result.lease == lease_id(1, result.version.index)
    return result.lease


def test_a_lease_is_the_index_of_its_grant_and_revoking_it_deletes_exactly_its_keys() -> None:
    shard = MemoryShard()
    lease = grant(shard)
    assert run(shard, Put("locks/a", b"1", lease)).ok
    assert run(shard, Cas("locks/b", b"2", expected_version=ABSENT, lease=lease)).ok
    assert run(shard, Put("locks/c", b"3")).ok

    revoked = run(shard, LeaseRevoke("locks/", lease))

    assert revoked.ok
    assert [get_key(shard.store, k) is None for k in ("locks/a", "locks/b", "locks/c")] == [True, True, False]
    assert all_leases(shard.store) == []
    assert attached_keys(shard.store, lease) == []


def test_a_key_written_again_without_its_lease_is_no_longer_held_by_it() -> None:
    shard = MemoryShard()
    lease = grant(shard)
    run(shard, Put("locks/a", b"1", lease))
    run(shard, Put("locks/a", b"2"))

    run(shard, LeaseExpire(lease))

    record = get_key(shard.store, "locks/a")
    assert record is not None
    assert record.value == b"2"


def test_a_key_moved_to_another_lease_goes_with_that_one() -> None:
    shard = MemoryShard()
    first, second = grant(shard), grant(shard)
    run(shard, Put("locks/a", b"1", first))
    run(shard, Put("locks/a", b"2", second))

    run(shard, LeaseRevoke("locks/", first))
    assert get_key(shard.store, "locks/a") is not None
    run(shard, LeaseRevoke("locks/", second))
    assert get_key(shard.store, "locks/a") is None


def test_a_deleted_key_leaves_its_lease_and_an_ended_lease_cannot_hold_keys() -> None:
    shard = MemoryShard()
    lease = grant(shard)
    run(shard, Put("locks/a", b"1", lease))
    run(shard, Delete("locks/a"))
    assert attached_keys(shard.store, lease) == []
    run(shard, LeaseExpire(lease))

    late = run(shard, Put("locks/a", b"1", lease))
    again = run(shard, LeaseRevoke("locks/", lease))

    assert (late.ok, late.error_code) == (False, NOT_FOUND)
    assert (again.ok, again.error_code) == (False, NOT_FOUND)


def test_a_ttl_out_of_range_is_refused() -> None:
    shard = MemoryShard()
    assert run(shard, LeaseGrant("locks/", 10)).error_code == INVALID_REQUEST
    assert run(shard, LeaseGrant("locks/", 10**12)).error_code == INVALID_REQUEST


def test_lease_ops_and_leased_writes_survive_the_log_encoding() -> None:
    for op in (
        LeaseGrant("locks/", 5_000),
        LeaseRevoke("locks/", 7),
        LeaseExpire(7),
        Put("a/b", b"v", 7),
        Cas("a/b", b"v", expected_version=ABSENT, lease=7),
    ):
        command = Command(op, 5, "ops", None)
        assert decode_command(encode_command(command)) == command


def test_a_data_record_names_its_lease_and_records_without_one_are_as_before() -> None:
    leased = DataRecord(b"v", Version(1, 2), Version(1, 3), 2, (2, 3), lease=9)
    plain = DataRecord(b"v", Version(1, 2), Version(1, 3), 2, (2, 3))

    assert DataRecord.decode(leased.encode()) == leased
    assert DataRecord.decode(plain.encode()) == plain
    assert len(plain.encode()) < len(leased.encode())
