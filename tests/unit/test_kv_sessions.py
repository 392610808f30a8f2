"""Exactly-once writes: cached replies for retried seqs, ack, the cap, SESSION_EXPIRED and ttl expiry."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from confmand.kv.commands import Cas, Command, Delete, Operation, Put, Session
from confmand.kv.harness import MemoryShard
from confmand.kv.queries import get_key
from confmand.kv.records import RESULT, SESSION, SessionHeader, decode_result, result_prefix
from confmand.kv.results import CAS_FAILED, NOT_FOUND, SESSION_EXPIRED, WriteResult
from confmand.kv.sessions import SWEEP_BATCH
from confmand.protocol.types import ABSENT, Version

CLIENT = b"client-1"
TTL_MS = 1_000


def at_ms(ms: int) -> int:
    """An HLC stamp at physical time `ms`."""
    return ms << 16


def write(op: Operation, seq: int, ack: int = 0, ms: int = 0, client: bytes = CLIENT) -> Command:
    return Command(op, at_ms(ms), "alice", Session(client, seq, ack))


@pytest.fixture
def shard() -> MemoryShard:
    return MemoryShard(session_ttl_ms=TTL_MS, max_session_results=4)


def test_a_retried_seq_gets_the_first_reply_and_writes_nothing(shard: MemoryShard) -> None:
    first = shard.apply_one(write(Put("k", b"1"), seq=1))
    retry = shard.apply_one(write(Put("k", b"1"), seq=1))
    assert retry == first
    assert len(shard.last_writes) == 0
    assert changes_of(shard, "k") == 1


def changes_of(shard: MemoryShard, key: str) -> int:
    record = get_key(shard.store, key)
    assert record is not None
    return record.changes


def test_a_retry_inside_the_same_batch_is_also_applied_once(shard: MemoryShard) -> None:
    first, retry = shard.apply(write(Put("k", b"1"), seq=1), write(Put("k", b"1"), seq=1))
    assert retry == first
    assert changes_of(shard, "k") == 1


def test_error_replies_are_cached_too(shard: MemoryShard) -> None:
    first = shard.apply_one(write(Delete("k"), seq=1))
    shard.apply(Command(Put("k", b"now here"), at_ms(0)))
    retry = shard.apply_one(write(Delete("k"), seq=1))
    assert retry == first
    assert retry.error_code == NOT_FOUND


def test_a_cached_cas_failure_keeps_its_current_version(shard: MemoryShard) -> None:
    shard.apply(Command(Put("k", b"1"), at_ms(0)))
    first = shard.apply_one(write(Cas("k", b"2", expected_version=ABSENT), seq=1))
    assert shard.apply_one(write(Cas("k", b"2", expected_version=ABSENT), seq=1)) == first
    assert first.error_code == CAS_FAILED


def test_seqs_of_one_session_may_arrive_out_of_order(shard: MemoryShard) -> None:
    results = shard.apply(write(Put("a", b""), seq=2), write(Put("b", b""), seq=1))
    assert all(r.ok for r in results)
    assert shard.apply_one(write(Put("b", b""), seq=1)) == results[1]


def test_an_acknowledged_seq_is_forgotten_and_then_expired(shard: MemoryShard) -> None:
    shard.apply(write(Put("k", b"1"), seq=1), write(Put("k", b"2"), seq=2, ack=2))
    result = shard.apply_one(write(Put("k", b"1"), seq=1))
    assert (result.ok, result.error_code) == (False, SESSION_EXPIRED)
    assert len(shard.last_writes) == 0
    record = get_key(shard.store, "k")
    assert record is not None
    assert record.value == b"2"


def test_the_cache_keeps_at_most_the_cap_and_expires_the_oldest(shard: MemoryShard) -> None:
    shard.apply(*(write(Put("k", bytes([i])), seq=i) for i in range(1, 7)))
    assert cached_seqs(shard) == [3, 4, 5, 6]
    assert shard.apply_one(write(Put("k", b"x"), seq=2)).error_code == SESSION_EXPIRED
    assert shard.apply_one(write(Put("k", bytes([3])), seq=3)).ok


def cached_seqs(shard: MemoryShard, client: bytes = CLIENT) -> list[int]:
    prefix = result_prefix(client)
    return [int.from_bytes(k[len(prefix) :], "big") for k, _ in shard.store.scan(RESULT) if k[:-8] == prefix]


def test_sessions_are_independent(shard: MemoryShard) -> None:
    a = shard.apply_one(write(Put("k", b"a"), seq=1, client=b"a"))
    b = shard.apply_one(write(Put("k", b"b"), seq=1, client=b"b"))
    assert a.version != b.version


def test_a_session_unused_for_longer_than_the_ttl_starts_afresh(shard: MemoryShard) -> None:
    shard.apply(write(Put("k", b"1"), seq=1, ms=0))
    later = shard.apply_one(write(Put("k", b"1"), seq=1, ms=TTL_MS + 1))
    assert later.ok
    assert later.version == Version(1, 2)  # applied again: the cached reply expired with the session


def test_a_session_used_within_the_ttl_stays_alive(shard: MemoryShard) -> None:
    first = shard.apply_one(write(Put("k", b"1"), seq=1, ms=0))
    shard.apply(write(Put("j", b"1"), seq=2, ms=TTL_MS))
    assert shard.apply_one(write(Put("k", b"1"), seq=1, ms=2 * TTL_MS - 1)) == first


def test_the_sweep_deletes_expired_sessions_once_time_has_passed(shard: MemoryShard) -> None:
    shard.apply(write(Put("k", b"1"), seq=1, ms=0, client=b"old"))
    shard.apply(write(Put("k", b"2"), seq=1, ms=TTL_MS, client=b"young"))
    shard.apply(Command(Put("tick", b""), at_ms(TTL_MS + TTL_MS // 2)))
    assert [cid for cid, _ in shard.store.scan(SESSION)] == [b"young"]


def test_a_sweep_examines_a_bounded_number_of_sessions_per_entry(shard: MemoryShard) -> None:
    clients = [i.to_bytes(2, "big") for i in range(SWEEP_BATCH + 10)]
    shard.apply(*(write(Put("k", b""), seq=1, client=c) for c in clients))
    shard.apply(Command(Put("tick", b""), at_ms(2 * TTL_MS)))
    assert len(list(shard.store.scan(SESSION))) == 10  # one entry swept one batch of sessions
    shard.apply(Command(Put("tick", b""), at_ms(2 * TTL_MS)))
    assert list(shard.store.scan(SESSION)) == []


def test_sweeping_is_the_same_whatever_the_batching() -> None:
    entries = [write(Put("k", bytes([i])), seq=1, ms=i * 300, client=bytes([i])) for i in range(12)]
    one, many = MemoryShard(session_ttl_ms=TTL_MS), MemoryShard(session_ttl_ms=TTL_MS)
    one.apply(*entries)
    for e in entries:
        many.apply(e)
    assert one.records() == many.records()


def test_session_results_survive_the_cache_round_trip(shard: MemoryShard) -> None:
    first = shard.apply_one(write(Put("k", b"1"), seq=1))
    cached = decode_result(shard.store.get(RESULT, result_prefix(CLIENT) + (1).to_bytes(8, "big")) or b"")
    assert cached == first
    assert WriteResult.from_wire(cached.to_wire()) == cached


# ---------------------------------------------------------------- layout: one record per cached result


@dataclass
class SessionModel:
    """The exactly-once rules written the obvious way: a dict of results and a floor."""

    results: dict[int, int] = field(default_factory=dict)  # seq -> index of the entry that applied it
    floor: int = 1

    def write(self, seq: int, ack: int, index: int, cap: int) -> int | None:
        """The index whose result answers (None: SESSION_EXPIRED)."""
        if seq in self.results:
            return self.results[seq]
        if seq < self.floor:
            return None
        self.floor = max(self.floor, ack)
        self.results = {s: i for s, i in self.results.items() if s >= self.floor}
        self.results[seq] = index
        for s in sorted(self.results)[: max(0, len(self.results) - cap)]:
            del self.results[s]
            self.floor = max(self.floor, s + 1)
        return index


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 12), st.integers(0, 14)), max_size=30),
    st.integers(1, 4),
    st.integers(1, 5),
)
def test_sessions_match_a_naive_model_and_keep_exactly_its_results(
    writes: list[tuple[int, int]], cap: int, batch: int
) -> None:
    shard, model = MemoryShard(max_session_results=cap), SessionModel()
    commands = [write(Put("k", b""), seq=seq, ack=ack) for seq, ack in writes]
    for start in range(0, len(commands), batch):
        results = shard.apply(*commands[start : start + batch])
        for offset, result in enumerate(results):
            seq, ack = writes[start + offset]
            index = model.write(seq, ack, start + offset + 1, cap)
            if index is None:
                assert result.error_code == SESSION_EXPIRED
            else:
                assert result.version.index == index
    assert cached_seqs(shard) == sorted(model.results)  # nothing leaks, nothing is lost
    if writes:
        header = SessionHeader.decode(shard.store.get(SESSION, CLIENT) or b"")
        assert (header.floor, header.count) == (model.floor, len(cached_seqs(shard)))


def test_a_write_at_the_cap_changes_a_bounded_number_of_records() -> None:
    shard = MemoryShard(max_session_results=500)
    shard.apply(*(write(Put("k", b""), seq=i) for i in range(1, 600)))
    shard.apply(write(Put("k", b""), seq=600))
    session_changes = [k for k in shard.last_writes.changes if k[0] in (SESSION, RESULT)]
    assert len(session_changes) == 3  # the header, the new result, the oldest result dropped
    assert cached_seqs(shard)[0] == 101


def test_a_session_that_acks_keeps_only_its_unacknowledged_results() -> None:
    shard = MemoryShard()
    for seq in range(1, 50):
        shard.apply(write(Put("k", b""), seq=seq, ack=seq - 1))
    assert cached_seqs(shard) == [48, 49]


def test_a_large_ack_jump_forgets_every_result_below_it(shard: MemoryShard) -> None:
    shard.apply(write(Put("k", b""), seq=1), write(Put("k", b""), seq=2))
    shard.apply(write(Put("k", b""), seq=10**12, ack=10**12))
    assert cached_seqs(shard) == [10**12]


def test_an_expired_session_reused_leaves_no_stale_results(shard: MemoryShard) -> None:
    shard.apply(*(write(Put("k", b""), seq=i, ms=0) for i in range(1, 4)))
    shard.apply(write(Put("k", b""), seq=9, ms=TTL_MS + 1))
    assert cached_seqs(shard) == [9]


def test_the_sweep_deletes_the_results_of_expired_sessions_within_a_budget() -> None:
    shard = MemoryShard(session_ttl_ms=TTL_MS, max_session_results=4, sweep_results=3)
    shard.apply(*(write(Put("k", b""), seq=i, ms=0, client=c) for c in (b"a", b"b") for i in (1, 2)))
    shard.apply(Command(Put("tick", b""), at_ms(2 * TTL_MS)))
    assert [cid for cid, _ in shard.store.scan(SESSION)] == [b"b"]  # "b" waits for the next entry
    assert len(list(shard.store.scan(RESULT))) == 1
    shard.apply(Command(Put("tick", b""), at_ms(2 * TTL_MS)))
    assert (list(shard.store.scan(SESSION)), list(shard.store.scan(RESULT))) == ([], [])
