"""The checks of a fault test that are not linearizability: each returns readable problems.

Every function takes recorded ops (see `history.Op`) and what was read at the
end of the run, and returns a list of one-line problems; an empty list means
the check passed. Outcomes mean what they mean everywhere: ``ok`` applied,
``fail`` definitely not applied, ``unknown`` maybe applied.

- `check_sets`: a set per key, grown by adds of unique elements; the final
  read must hold every acknowledged element, nothing never attempted, nothing
  definitely failed, nothing twice.
- `check_read_your_writes`: a client's own reads of a key, after its own
  acknowledged write or read of it, never go back in version (compared by
  index: one shard's versions are ordered by index alone) nor return a value
  older than what it wrote. Versions compare only within one shard's log: a key
  whose partition moved has versions of its new shard, which are unrelated
  (the linearizability check orders its values across the move).
- `check_exactly_once`: a per-key log of applied values (e.g. the `history`
  op's versions, oldest first) holds no value twice, nothing never attempted
  or definitely failed, and every acknowledged write.
- `check_change_counts`: a key's `changes` count lies between its
  acknowledged writes and its acknowledged plus unknown writes.

Pure functions; no I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from tests.fault.history import HistoryError, Op, Value, index_of

WRITE_KINDS = frozenset({"put", "cas", "add", "append"})
READ_KINDS = frozenset({"get", "get_version"})


def _by_outcome(ops: Iterable[Op], key: str) -> dict[str, set[Value]]:
    """The values the ops of `key` tried to write, by outcome."""
    found: dict[str, set[Value]] = {"ok": set(), "fail": set(), "unknown": set()}
    for op in ops:
        if op.key == key:
            found[op.outcome].add(_written(op))
    # An element retried after a definite failure and then applied is not "failed".
    found["fail"] -= found["ok"] | found["unknown"]
    return found


def _written(op: Op) -> Value:
    """The value a write op adds: its input, or the `new` of a cas pair."""
    if op.kind == "cas":
        if not isinstance(op.input, tuple) or len(op.input) != 2:
            raise HistoryError(f"a cas input is (expected, new): {op.describe()}")
        return op.input[1]
    return op.input


def _membership(key: str, present: Sequence[Value], attempts: dict[str, set[Value]], noun: str) -> list[str]:
    problems = []
    counts = Counter(present)
    for element, count in sorted(counts.items(), key=repr):
        if count > 1:
            problems.append(f"{key!r}: {element!r} is present {count} times in the {noun}")
    tried = attempts["ok"] | attempts["unknown"] | attempts["fail"]
    for element in sorted(set(present) - tried, key=repr):
        problems.append(f"{key!r}: {element!r} is in the {noun} but was never written")
    for element in sorted(set(present) & attempts["fail"], key=repr):
        problems.append(f"{key!r}: {element!r} is in the {noun} but its write definitely failed")
    for element in sorted(attempts["ok"] - set(present), key=repr):
        problems.append(f"{key!r}: {element!r} was acknowledged but is missing from the {noun} (lost)")
    return problems


def check_sets(final: Mapping[str, Sequence[Value]], adds: Iterable[Op]) -> list[str]:
    """`final[key]` is the set's elements as read at the end; `adds` the ops that tried to add them."""
    adds = list(adds)
    problems = []
    for key in sorted({op.key for op in adds} - set(final)):
        problems.append(f"{key!r}: elements were added but the set was never read at the end")
    for key, present in final.items():
        problems += _membership(key, list(present), _by_outcome(adds, key), "final set")
    return problems


def check_exactly_once(logs: Mapping[str, Sequence[Value]], writes: Iterable[Op]) -> list[str]:
    """`logs[key]`: every value applied to the key, once per application (e.g. its version history)."""
    writes = list(writes)
    problems = []
    for key, applied in logs.items():
        problems += _membership(key, list(applied), _by_outcome(writes, key), "applied log")
    return problems


def check_change_counts(changes: Mapping[str, int], writes: Iterable[Op]) -> list[str]:
    """`changes[key]`: the key's `changes` count at the end (writes applied to it since it was created)."""
    writes = list(writes)
    problems = []
    for key, count in changes.items():
        ok = sum(1 for op in writes if op.key == key and op.outcome == "ok")
        maybe = sum(1 for op in writes if op.key == key and op.outcome == "unknown")
        if count < ok:
            problems.append(f"{key!r}: changes is {count} but {ok} writes were acknowledged (some lost)")
        elif count > ok + maybe:
            problems.append(
                f"{key!r}: changes is {count} but only {ok} acknowledged + {maybe} unknown writes "
                "were made (some applied twice, or a phantom write)"
            )
    return problems


def check_read_your_writes(
    ops: Iterable[Op],
    *,
    write_kinds: Iterable[str] = ("put", "cas"),
    read_kinds: Iterable[str] = READ_KINDS,
) -> list[str]:
    """Per client and key: ok reads never return a version below the client's floor for that key.

    The floor is the highest version the client had seen for the key when the
    read was called: from its own acknowledged writes (and reads) that
    returned before. A read exactly at the floor set by the client's own write
    must return that write's value. Ops without a version token are skipped
    (reads of a missing key count as version 0).
    """
    writes, reads = frozenset(write_kinds), frozenset(read_kinds)
    ops = list(ops)
    version_of: dict[tuple[str, Value, int | None], int] = {}
    for op in ops:
        if op.kind in writes and op.outcome == "ok" and op.version is not None:
            version_of[(op.key, _written(op), op.shard)] = _index(op)
    problems = []
    per_process: dict[int, list[Op]] = {}
    for op in ops:
        if op.outcome == "ok" and (op.kind in writes or op.kind in reads):
            per_process.setdefault(op.process, []).append(op)
    for process, mine in sorted(per_process.items()):
        problems += _session_problems(process, sorted(mine, key=lambda op: op.call_ns), writes, version_of)
    return problems


def _index(op: Op) -> int:
    try:
        index = index_of(op.version)
    except HistoryError as err:
        raise HistoryError(f"{err}: {op.describe()}") from None
    return 0 if index is None else index


def _session_problems(
    process: int, mine: list[Op], writes: frozenset[str], version_of: dict[tuple[str, Value, int | None], int]
) -> list[str]:
    """Walk one client's ops in call order, raising each key's floor (per shard) as its ops return."""
    problems = []
    floors: dict[tuple[str, int | None], tuple[int, Op]] = {}  # (key, shard) -> (index, the op that set it)
    for op in mine:
        is_read = op.kind not in writes
        # A read of a missing key carries no token: it saw version 0. Other ops without one tell nothing.
        if op.version is None and not (is_read and op.output is None):
            continue
        index = _index(op)
        floor = floors.get((op.key, op.shard))
        if is_read and floor is not None:
            floor_index, source = floor
            if source.return_ns is not None and source.return_ns <= op.call_ns:
                problems += _read_problems(
                    process,
                    op,
                    index=index,
                    floor_index=floor_index,
                    source=source,
                    writes=writes,
                    version_of=version_of,
                )
        if floor is None or index > floor[0]:
            floors[(op.key, op.shard)] = (index, op)
    return problems


def _read_problems(
    process: int,
    read: Op,
    *,
    index: int,
    floor_index: int,
    source: Op,
    writes: frozenset[str],
    version_of: dict[tuple[str, Value, int | None], int],
) -> list[str]:
    where = f"p{process} {read.key!r}: {read.describe()} (version {read.version})"
    if index < floor_index:
        return [f"{where} went back below version index {floor_index} seen in {source.describe()}"]
    if source.kind in writes and index == floor_index and read.output != _written(source):
        return [f"{where} has the version of its own write {source.describe()} but another value"]
    written_at = version_of.get((read.key, read.output, read.shard))
    # A move restamps a key (its value, moved away and back, has a later version): the floor set
    # by an op that saw this very value says nothing older was returned.
    same_value = read.output == (_written(source) if source.kind in writes else source.output)
    if written_at is not None and written_at < floor_index and not same_value:
        return [f"{where} returned a value written at index {written_at}, before {source.describe()}"]
    return []
