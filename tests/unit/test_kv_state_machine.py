"""The config state machine, op by op: put, delete, cas, txn, history, audit, batches, bad entries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from confmand.kv.commands import Cas, Command, Compare, Delete, Operation, Put, Session, Txn, TxnOp
from confmand.kv.harness import MemoryShard
from confmand.kv.queries import KeyRecord, audit_records, get_key, key_history
from confmand.kv.records import AUDIT, DATA, HISTORY, HISTORY_HEADER
from confmand.kv.results import CAS_FAILED, INVALID_REQUEST, NOT_FOUND
from confmand.kv.state_machine import ConfigStateMachine
from confmand.kv.store import MemoryKVStore
from confmand.protocol.types import ABSENT, TxnOpResult, Version


def cmd(op: Operation, hlc: int = 1 << 16, principal: str = "alice") -> Command:
    return Command(op, hlc, principal)


def v(index: int, term: int = 1) -> Version:
    return Version(term, index)


@pytest.fixture
def shard() -> MemoryShard:
    return MemoryShard(history_limit=3)


# ---------------------------------------------------------------- put


def test_put_creates_a_key_with_create_and_mod_version_of_its_entry(shard: MemoryShard) -> None:
    result = shard.apply_one(cmd(Put("app/url", b"http://a")))
    assert result.ok
    assert result.to_reply() == {"version": "1:1", "prev_version": None}
    assert get_key(shard.store, "app/url") == KeyRecord("app/url", b"http://a", v(1), v(1), 1)


def test_put_over_a_key_keeps_create_version_and_counts_the_change(shard: MemoryShard) -> None:
    shard.apply(cmd(Put("k", b"1")))
    result = shard.apply_one(cmd(Put("k", b"2")))
    assert result.to_reply() == {"version": "1:2", "prev_version": "1:1"}
    assert get_key(shard.store, "k") == KeyRecord("k", b"2", v(2), v(1), 2)


# ---------------------------------------------------------------- delete


def test_delete_removes_the_key_and_answers_its_last_version(shard: MemoryShard) -> None:
    shard.apply(cmd(Put("k", b"1")))
    result = shard.apply_one(cmd(Delete("k")))
    assert result.to_reply() == {"version": "1:2", "prev_version": "1:1"}
    assert get_key(shard.store, "k") is None


def test_delete_of_an_absent_key_is_not_found_and_writes_nothing(shard: MemoryShard) -> None:
    shard.apply(cmd(Put("other", b"1")))  # the session sweep's first position is written here
    result = shard.apply_one(cmd(Delete("k")))
    assert (result.ok, result.error_code) == (False, NOT_FOUND)
    assert "'k'" in result.error_message
    assert len(shard.last_writes) == 0


def test_a_key_deleted_and_created_again_starts_afresh(shard: MemoryShard) -> None:
    shard.apply(cmd(Put("k", b"1")), cmd(Put("k", b"2")), cmd(Delete("k")), cmd(Put("k", b"3")))
    assert get_key(shard.store, "k") == KeyRecord("k", b"3", v(4), v(4), 1)


# ---------------------------------------------------------------- cas


def test_cas_with_absent_expectation_creates_a_missing_key(shard: MemoryShard) -> None:
    result = shard.apply_one(cmd(Cas("k", b"1", expected_version=ABSENT)))
    assert result.to_reply() == {"version": "1:1", "prev_version": None}


def test_cas_with_absent_expectation_fails_on_an_existing_key(shard: MemoryShard) -> None:
    shard.apply(cmd(Put("k", b"1")))
    result = shard.apply_one(cmd(Cas("k", b"2", expected_version=ABSENT)))
    assert (result.ok, result.error_code) == (False, CAS_FAILED)
    assert result.to_reply() == {"current_version": "1:1"}
    assert get_key(shard.store, "k") == KeyRecord("k", b"1", v(1), v(1), 1)


def test_cas_on_the_current_version_writes(shard: MemoryShard) -> None:
    shard.apply(cmd(Put("k", b"1")))
    result = shard.apply_one(cmd(Cas("k", b"2", expected_version=v(1))))
    assert result.to_reply() == {"version": "1:2", "prev_version": "1:1"}


def test_cas_on_a_stale_version_fails_with_the_current_version(shard: MemoryShard) -> None:
    shard.apply(cmd(Put("k", b"1")), cmd(Put("k", b"2")))
    result = shard.apply_one(cmd(Cas("k", b"3", expected_version=v(1))))
    assert (result.error_code, result.current_version) == (CAS_FAILED, v(2))


def test_cas_on_a_missing_key_reports_it_absent(shard: MemoryShard) -> None:
    result = shard.apply_one(cmd(Cas("k", b"3", expected_version=v(1))))
    assert result.to_reply() == {"current_version": "0:0"}


def test_cas_on_the_expected_value_writes_and_on_another_fails(shard: MemoryShard) -> None:
    shard.apply(cmd(Put("k", b"1")))
    good, bad = shard.apply(
        cmd(Cas("k", b"2", expected_value=b"1")), cmd(Cas("k", b"3", expected_value=b"1"))
    )
    assert good.ok
    assert (bad.error_code, bad.current_version) == (CAS_FAILED, v(2))


def test_cas_on_an_expected_value_of_a_missing_key_fails(shard: MemoryShard) -> None:
    result = shard.apply_one(cmd(Cas("k", b"", expected_value=b"")))
    assert (result.error_code, result.current_version) == (CAS_FAILED, ABSENT)


# ---------------------------------------------------------------- txn


def test_txn_whose_compares_hold_applies_success_ops_in_order_at_one_version(shard: MemoryShard) -> None:
    shard.apply(cmd(Put("a", b"1")))
    txn = Txn(
        compare=(Compare("a", "value", value=b"1"), Compare("b", "exists", exists=False)),
        success=(TxnOp("put", "b", b"2"), TxnOp("delete", "a"), TxnOp("put", "c", b"3")),
        failure=(TxnOp("put", "z", b"no"),),
    )
    result = shard.apply_one(cmd(txn))
    assert result.succeeded is True
    assert result.results == (
        TxnOpResult("put", "b", v(2), None),
        TxnOpResult("delete", "a", v(2), v(1)),
        TxnOpResult("put", "c", v(2), None),
    )
    assert result.to_reply()["version"] == "1:2"
    assert [get_key(shard.store, k) is not None for k in "abcz"] == [False, True, True, False]


def test_txn_whose_compare_fails_applies_the_failure_ops(shard: MemoryShard) -> None:
    txn = Txn((Compare("a", "version", version=v(9)),), (TxnOp("put", "s", b""),), (TxnOp("put", "f", b""),))
    result = shard.apply_one(cmd(txn))
    assert result.to_reply() == {
        "succeeded": False,
        "version": "1:1",
        "results": [{"op": "put", "key": "f", "version": "1:1", "prev_version": None}],
    }
    assert get_key(shard.store, "s") is None


def test_txn_delete_of_an_absent_key_is_a_no_op_not_an_error(shard: MemoryShard) -> None:
    result = shard.apply_one(cmd(Txn((), (TxnOp("delete", "ghost"),))))
    assert result.ok
    assert result.results == (TxnOpResult("delete", "ghost", None, None),)


def test_txn_ops_see_the_writes_of_the_ops_before_them(shard: MemoryShard) -> None:
    txn = Txn((), (TxnOp("put", "k", b"1"), TxnOp("put", "k", b"2")))
    result = shard.apply_one(cmd(txn))
    assert result.results[1].prev_version == v(1)
    assert get_key(shard.store, "k") == KeyRecord("k", b"2", v(1), v(1), 2)


def test_txn_compares_on_version_of_an_absent_key_use_absent(shard: MemoryShard) -> None:
    result = shard.apply_one(cmd(Txn((Compare("k", "version", version=ABSENT),), (TxnOp("put", "k", b"x"),))))
    assert result.succeeded is True


# ---------------------------------------------------------------- history and audit


def test_history_keeps_the_newest_versions_up_to_the_limit(shard: MemoryShard) -> None:
    shard.apply(*(cmd(Put("k", str(i).encode())) for i in range(5)), cmd(Delete("k")))
    history = key_history(shard.store, "k")
    assert [(h.version, h.op, h.value) for h in history] == [
        (v(6), "delete", None),
        (v(5), "put", b"4"),
        (v(4), "put", b"3"),
    ]
    assert len(list(shard.store.scan(HISTORY))) == 3


def test_history_trims_across_batches_as_within_one() -> None:
    one, many = MemoryShard(history_limit=2), MemoryShard(history_limit=2)
    commands = [cmd(Put("k", bytes([i]))) for i in range(6)]
    one.apply(*commands)
    for c in commands:
        many.apply(c)
    assert list(one.store.scan(HISTORY)) == list(many.store.scan(HISTORY))
    assert len(list(one.store.scan(HISTORY))) == 2


def test_a_lowered_history_limit_trims_a_keys_excess_on_its_next_write() -> None:
    roomy = MemoryShard(history_limit=5)
    roomy.apply(*(cmd(Put("k", bytes([i]))) for i in range(5)))
    tight = MemoryShard(roomy.store, history_limit=2)
    tight.next_index = roomy.next_index
    tight.apply(cmd(Put("k", b"new")))
    assert [h.value for h in key_history(tight.store, "k")] == [b"new", bytes([4])]


def test_history_of_one_key_is_not_trimmed_by_another_keys_writes(shard: MemoryShard) -> None:
    shard.apply(cmd(Put("k", b"1")), *(cmd(Put("k2", b"x")) for _ in range(5)))
    assert [h.value for h in key_history(shard.store, "k")] == [b"1"]


def test_history_records_when_and_by_whom(shard: MemoryShard) -> None:
    shard.apply(cmd(Put("k", b"1"), hlc=77, principal="bob"))
    (h,) = key_history(shard.store, "k")
    assert h.to_wire() == {"version": "1:1", "op": "put", "value": b"1", "hlc": 77, "principal": "bob"}


def test_every_change_leaves_one_audit_record_in_hlc_order(shard: MemoryShard) -> None:
    shard.apply(
        cmd(Put("a", b"1"), hlc=10),
        cmd(Txn((), (TxnOp("put", "b", b"2"), TxnOp("delete", "a"), TxnOp("delete", "nope"))), hlc=20),
        cmd(Delete("absent"), hlc=30),
        cmd(Cas("b", b"3", expected_version=v(2)), hlc=40),
    )
    records = [r.to_wire() for r in audit_records(shard.store).records]
    assert [(r["hlc"], r["op"], r["key"], r["prev_version"], r["new_version"]) for r in records] == [
        (10, "put", "a", None, "1:1"),
        (20, "txn", "b", None, "1:2"),
        (20, "txn", "a", "1:1", None),
        (40, "cas", "b", "1:2", "1:4"),
    ]
    assert all(r["principal"] == "alice" for r in records)


# ---------------------------------------------------------------- batches and bad entries


def test_entries_of_one_batch_see_each_others_writes(shard: MemoryShard) -> None:
    results = shard.apply(
        cmd(Put("k", b"1")), cmd(Cas("k", b"2", expected_version=v(1))), cmd(Delete("k")), cmd(Delete("k"))
    )
    assert [r.ok for r in results] == [True, True, True, False]
    assert results[3].error_code == NOT_FOUND


def test_an_undecodable_entry_answers_invalid_request_and_writes_nothing(shard: MemoryShard) -> None:
    shard.apply(cmd(Put("k", b"1")))
    result = shard.apply_one(b"\x93garbage")
    assert (result.ok, result.error_code, result.version) == (False, INVALID_REQUEST, v(2))
    assert result.to_reply() == {}
    assert len(shard.last_writes) == 0


def test_an_undecodable_entry_does_not_stop_the_rest_of_the_batch(shard: MemoryShard) -> None:
    results = shard.apply(b"", cmd(Put("k", b"1")))
    assert [r.error_code for r in results] == [INVALID_REQUEST, None]


def test_applying_writes_nothing_to_the_store_itself() -> None:
    store = MemoryKVStore()
    writes, _ = ConfigStateMachine(store).apply_batch(
        [(v(1), MemoryShard().entries(cmd(Put("k", b"")))[0][1])]
    )
    assert list(store.scan(DATA)) == []
    assert (DATA, b"k") in writes.changes
    assert any(kind == AUDIT for kind, _ in writes.changes)


def test_entries_out_of_order_are_refused_as_a_driver_bug() -> None:
    data = MemoryShard().entries(cmd(Put("k", b"")))[0][1]
    with pytest.raises(ValueError, match="out of order"):
        ConfigStateMachine(MemoryKVStore()).apply_batch([(v(2), data), (v(2), data)])


@pytest.mark.parametrize("bad", [{"history_limit": 0}, {"session_ttl_ms": -1}, {"max_session_results": 0}])
def test_limits_below_one_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be an int >= 1"):
        ConfigStateMachine(MemoryKVStore(), **bad)


# ---------------------------------------------------------------- layout: no scans on the write path


class ScanCountingStore(MemoryKVStore):
    scans: int = 0

    def scan(
        self, kind: bytes, start: bytes = b"", stop: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        self.scans += 1
        return super().scan(kind, start, stop, reverse)


def test_puts_from_acking_sessions_never_scan_the_store() -> None:
    store = ScanCountingStore()
    shard = MemoryShard(store, history_limit=2)
    for seq in range(1, 30):
        shard.apply(Command(Put(f"k{seq % 3}", b"v"), 1 << 16, "p", Session(b"c", seq, seq - 1)))
    store.scans = 0
    shard.apply(Command(Put("k1", b"v"), 1 << 16, "p", Session(b"c", 30, 29)))
    assert store.scans == 0


def test_a_deleted_key_keeps_its_history_and_a_recreated_key_continues_it(shard: MemoryShard) -> None:
    shard.apply(cmd(Put("k", b"1")), cmd(Put("k", b"2")), cmd(Delete("k")))
    assert [h.op for h in key_history(shard.store, "k")] == ["delete", "put", "put"]
    shard.apply(cmd(Put("k", b"3")))
    assert [h.version.index for h in key_history(shard.store, "k")] == [4, 3, 2]
    assert len(list(shard.store.scan(HISTORY))) == 3
    assert list(shard.store.scan(HISTORY_HEADER)) == []
