"""The state machine against a naive dict model, and its determinism, over random command sequences."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from confmand.kv.commands import Cas, Command, Compare, Delete, Operation, Put, Session, Txn, TxnOp
from confmand.kv.harness import MemoryShard
from confmand.kv.queries import get_key, list_keys
from confmand.kv.results import CAS_FAILED, NOT_FOUND, WriteResult
from confmand.protocol.types import ABSENT, Version

KEYS = ["a", "a/x", "a/y", "b", "b/z"]
keys = st.sampled_from(KEYS)
values = st.sampled_from([b"", b"1", b"2"])
versions = st.sampled_from([ABSENT]) | st.builds(Version, st.just(1), st.integers(1, 12))
compares = st.one_of(
    st.builds(Compare, keys, st.just("version"), version=versions),
    st.builds(Compare, keys, st.just("value"), value=values),
    st.builds(Compare, keys, st.just("exists"), exists=st.booleans()),
)
txn_ops = st.one_of(st.builds(TxnOp, st.just("put"), keys, values), st.builds(TxnOp, st.just("delete"), keys))
branch = st.lists(txn_ops, max_size=3).map(tuple)
operations: st.SearchStrategy[Operation] = st.one_of(
    st.builds(Put, keys, values),
    st.builds(Delete, keys),
    st.builds(Cas, keys, values, expected_version=versions),
    st.builds(Cas, keys, values, expected_value=values),
    st.builds(Txn, st.lists(compares, max_size=2).map(tuple), branch, branch),
)


@dataclass
class Row:
    value: bytes
    create: int
    mod: int
    changes: int


@dataclass
class Model:
    """What the state machine should do, written the obvious way."""

    rows: dict[str, Row] = field(default_factory=dict)

    def put(self, key: str, value: bytes, index: int) -> int | None:
        old = self.rows.get(key)
        self.rows[key] = Row(value, old.create if old else index, index, old.changes + 1 if old else 1)
        return old.mod if old else None

    def delete(self, key: str) -> int | None:
        old = self.rows.pop(key, None)
        return old.mod if old else None

    def holds(self, c: Compare) -> bool:
        row = self.rows.get(c.key)
        if c.target == "version":
            assert c.version is not None
            return (row.mod if row else 0) == c.version.index
        if c.target == "value":
            return row is not None and row.value == c.value
        return (row is not None) == c.exists

    def apply(self, op: Operation, index: int) -> tuple[str | None, object]:
        """(error code, what the result says: prev index, or txn's succeeded)."""
        if isinstance(op, Put):
            return None, self.put(op.key, op.value, index)
        if isinstance(op, Delete):
            prev = self.delete(op.key)
            return (NOT_FOUND, None) if prev is None else (None, prev)
        if isinstance(op, Cas):
            row = self.rows.get(op.key)
            if op.expected_version is not None:
                ok = (row.mod if row else 0) == op.expected_version.index
            else:
                ok = row is not None and row.value == op.expected_value
            return (None, self.put(op.key, op.value, index)) if ok else (CAS_FAILED, None)
        assert isinstance(op, Txn), op  # the model draws no rollbacks (tests/unit/test_kv_past.py)
        succeeded = all(self.holds(c) for c in op.compare)
        for o in op.success if succeeded else op.failure:
            if o.op == "put":
                assert o.value is not None
                self.put(o.key, o.value, index)
            else:
                self.delete(o.key)
        return None, succeeded


def observed(result: WriteResult) -> tuple[str | None, object]:
    if result.op == "txn":
        return result.error_code, result.succeeded
    prev = result.prev_version.index if result.prev_version else None
    return result.error_code, prev


@settings(max_examples=60, deadline=None)
@given(st.lists(operations, max_size=30), st.lists(st.integers(1, 5), min_size=1))
def test_results_and_final_state_match_a_dict_model(ops: list[Operation], cuts: list[int]) -> None:
    shard, model = MemoryShard(history_limit=2), Model()
    commands = [Command(op, hlc=i << 16) for i, op in enumerate(ops)]
    position, turn = 0, 0
    while position < len(commands):  # random batch boundaries: batches must not change anything
        batch = commands[position : position + cuts[turn % len(cuts)]]
        results = shard.apply(*batch)
        for offset, (c, r) in enumerate(zip(batch, results, strict=True)):
            assert observed(r) == model.apply(ops[position + offset], position + offset + 1), c
        position, turn = position + len(batch), turn + 1
    expected = {k: (row.value, row.create, row.mod, row.changes) for k, row in model.rows.items()}
    actual = {
        r.key: (r.value, r.create_version.index, r.version.index, r.changes)
        for r in list_keys(shard.store).items
    }
    assert actual == expected
    for key in KEYS:
        assert (get_key(shard.store, key) is None) == (key not in model.rows)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(operations, st.none() | st.integers(1, 4)), max_size=25),
    st.lists(st.integers(1, 6), min_size=1, max_size=4),
)
def test_two_replicas_given_the_same_entries_hold_byte_identical_stores(
    ops: list[tuple[Operation, int | None]], cuts: list[int]
) -> None:
    commands = [
        Command(
            op,
            hlc=(i * 400) << 16,
            principal="p",
            session=None if seq is None else Session(b"c", seq, seq - 1),
        )
        for i, (op, seq) in enumerate(ops)
    ]
    whole = MemoryShard(history_limit=2, session_ttl_ms=1000, max_session_results=2)
    whole.apply(*commands)
    pieces = MemoryShard(history_limit=2, session_ttl_ms=1000, max_session_results=2)
    position, turn = 0, 0
    while position < len(commands):
        size = cuts[turn % len(cuts)]
        pieces.apply(*commands[position : position + size])
        position, turn = position + size, turn + 1
    assert whole.records() == pieces.records()
