"""Reads: get, paged list, history and paged audit, and the reply fields protocol.md names."""

from __future__ import annotations

import pytest

from confmand.kv.commands import Command, Delete, Put, Txn, TxnOp
from confmand.kv.harness import MemoryShard
from confmand.kv.queries import (
    MAX_LIMIT,
    QueryError,
    audit_records,
    get_key,
    history_reply,
    key_history,
    list_keys,
)
from confmand.kv.store import MemoryKVStore


def put(key: str, value: bytes = b"v", hlc: int = 0) -> Command:
    return Command(Put(key, value), hlc)


@pytest.fixture
def shard() -> MemoryShard:
    s = MemoryShard()
    s.apply(*(put(k) for k in ["app/a", "app/b", "app/c", "apq", "ap", "other/x", "app/b/deep"]))
    return s


def test_get_answers_value_versions_and_change_count(shard: MemoryShard) -> None:
    record = get_key(shard.store, "app/a")
    assert record is not None
    assert record.to_reply() == {"value": b"v", "version": "1:1", "create_version": "1:1", "changes": 1}


def test_get_of_a_missing_key_is_none(shard: MemoryShard) -> None:
    assert get_key(shard.store, "nope") is None


def test_list_returns_the_keys_under_a_prefix_in_order(shard: MemoryShard) -> None:
    page = list_keys(shard.store, "app/")
    assert [r.key for r in page.items] == ["app/a", "app/b", "app/b/deep", "app/c"]
    assert (page.more, page.next) == (False, None)


def test_list_pages_follow_each_other_without_gaps_or_repeats(shard: MemoryShard) -> None:
    first = list_keys(shard.store, "app/", limit=2)
    second = list_keys(shard.store, "app/", after=first.next, limit=2)
    assert [r.key for r in first.items] == ["app/a", "app/b"]
    assert (first.more, first.next) == (True, "app/b")
    assert [r.key for r in second.items] == ["app/b/deep", "app/c"]
    assert second.more is False


def test_list_with_an_empty_prefix_lists_every_key(shard: MemoryShard) -> None:
    assert len(list_keys(shard.store).items) == 7


def test_list_keys_only_leaves_values_out(shard: MemoryShard) -> None:
    reply = list_keys(shard.store, "other/", keys_only=True).to_reply()
    assert reply == {
        "items": [{"key": "other/x", "version": "1:6", "create_version": "1:6", "changes": 1}],
        "more": False,
        "next": None,
    }


def test_list_items_carry_key_and_value(shard: MemoryShard) -> None:
    items = list_keys(shard.store, "other/").to_reply()["items"]
    assert items == [
        {"key": "other/x", "value": b"v", "version": "1:6", "create_version": "1:6", "changes": 1}
    ]


def test_list_after_a_key_before_the_prefix_starts_at_the_prefix(shard: MemoryShard) -> None:
    assert list_keys(shard.store, "app/", after="a").items[0].key == "app/a"


def test_list_after_the_empty_string_starts_at_the_first_key(shard: MemoryShard) -> None:
    assert list_keys(shard.store, after="") == list_keys(shard.store)


def test_list_of_a_prefix_ending_in_the_highest_code_point_is_bounded() -> None:
    s = MemoryShard()
    s.apply(put("\U0010ffff"), put("\U0010ffffz"), put("zz"))
    assert [r.key for r in list_keys(s.store, "\U0010ffff").items] == ["\U0010ffff", "\U0010ffffz"]


@pytest.mark.parametrize(
    "call",
    [
        lambda st: list_keys(st, limit=0),
        lambda st: list_keys(st, limit=MAX_LIMIT + 1),
        lambda st: list_keys(st, limit=True),
        lambda st: list_keys(st, "a\x00"),
        lambda st: list_keys(st, after="a\x00"),
        lambda st: get_key(st, ""),
        lambda st: key_history(st, "k", limit=-1),
        lambda st: audit_records(st, after_hlc=-1),
        lambda st: audit_records(st, after_hlc="1"),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments_raise_query_error(call: object) -> None:
    with pytest.raises(QueryError):
        call(MemoryKVStore())  # type: ignore[operator]


def test_history_is_newest_first_and_limited() -> None:
    s = MemoryShard()
    s.apply(put("k", b"1", hlc=5), put("k", b"2", hlc=6), Command(Delete("k"), 7))
    reply = history_reply(key_history(s.store, "k", limit=2))
    assert reply == {
        "versions": [
            {"version": "1:3", "op": "delete", "value": None, "hlc": 7, "principal": "anonymous"},
            {"version": "1:2", "op": "put", "value": b"2", "hlc": 6, "principal": "anonymous"},
        ]
    }


def test_history_of_a_key_excludes_keys_it_prefixes() -> None:
    s = MemoryShard()
    s.apply(put("k", b"1"), put("k2", b"2"), put("k/x", b"3"))
    assert [h.value for h in key_history(s.store, "k")] == [b"1"]


def test_audit_pages_are_oldest_first_and_strictly_after_the_hlc() -> None:
    s = MemoryShard()
    s.apply(*(put(f"k{i}", hlc=10 * i) for i in range(1, 6)))
    page = audit_records(s.store, after_hlc=20, limit=2)
    assert [r.hlc for r in page.records] == [30, 40]
    assert page.more is True
    last = audit_records(s.store, after_hlc=page.records[-1].hlc, limit=2)
    assert ([r.hlc for r in last.records], last.more) == ([50], False)


def test_an_audit_page_never_splits_the_changes_of_one_entry() -> None:
    s = MemoryShard()
    s.apply(Command(Txn((), tuple(TxnOp("put", f"k{i}", b"") for i in range(3))), 10), put("z", hlc=20))
    page = audit_records(s.store, limit=2)
    assert ([r.key for r in page.records], page.more) == (["k0", "k1", "k2"], True)
    assert page.to_reply()["more"] is True


def test_audit_after_the_largest_hlc_is_empty() -> None:
    assert audit_records(MemoryKVStore(), after_hlc=2**64 - 1).records == ()


def test_an_audit_with_a_prefix_keeps_only_the_records_of_keys_under_it() -> None:
    s = MemoryShard()
    s.apply(*(put(f"{'app' if i % 2 else 'db'}/k{i}", hlc=10 * i) for i in range(1, 7)))

    page = audit_records(s.store, limit=2, prefix="app/")
    rest = audit_records(s.store, after_hlc=page.next_hlc, limit=2, prefix="app/")

    assert ([r.key for r in page.records], page.more, page.next_hlc) == (["app/k1", "app/k3"], True, 30)
    assert ([r.key for r in rest.records], rest.more) == (["app/k5"], False)


def test_a_filtered_audit_page_stops_after_its_scan_limit_and_says_where_to_go_on() -> None:
    s = MemoryShard()
    s.apply(*(put(f"db/k{i}", hlc=10 * i) for i in range(1, 6)), put("app/late", hlc=60))

    page = audit_records(s.store, limit=2, prefix="app/", scan_limit=3)
    rest = audit_records(s.store, after_hlc=page.next_hlc, limit=2, prefix="app/", scan_limit=3)

    assert (page.records, page.more, page.next_hlc) == ((), True, 30)
    assert ([r.key for r in rest.records], rest.more) == (["app/late"], False)
