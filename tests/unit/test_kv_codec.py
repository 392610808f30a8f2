"""The command codec: every valid command round-trips; every malformed entry is a CommandDecodeError."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from confmand.kv.codec import InvalidCommandError, decode_command, encode_command
from confmand.kv.commands import (
    Cas,
    Command,
    CommandDecodeError,
    Compare,
    Delete,
    Put,
    Session,
    Txn,
    TxnOp,
)
from confmand.protocol.types import ABSENT, Version

U64 = st.integers(min_value=0, max_value=2**64 - 1)
keys = st.text(min_size=1, max_size=12).filter(lambda k: "\x00" not in k and k.isprintable())
values = st.binary(max_size=16)
versions = st.builds(Version, U64, U64)


def compares() -> st.SearchStrategy[Compare]:
    return st.one_of(
        st.builds(Compare, keys, st.just("version"), version=versions),
        st.builds(Compare, keys, st.just("value"), value=values),
        st.builds(Compare, keys, st.just("exists"), exists=st.booleans()),
    )


txn_ops = st.one_of(st.builds(TxnOp, st.just("put"), keys, values), st.builds(TxnOp, st.just("delete"), keys))
branches = st.lists(txn_ops, max_size=4).map(tuple)
operations = st.one_of(
    st.builds(Put, keys, values),
    st.builds(Delete, keys),
    st.builds(Cas, keys, values, expected_version=versions),
    st.builds(Cas, keys, values, expected_value=values),
    st.builds(Txn, st.lists(compares(), max_size=4).map(tuple), branches, branches),
)
sessions = st.builds(
    Session, st.binary(min_size=1, max_size=64), st.integers(1, 2**64 - 1), st.integers(0, 2**64 - 1)
)
commands = st.builds(
    Command,
    operations,
    U64,
    st.text(max_size=20).filter(lambda p: len(p.encode("utf-8", "surrogatepass")) <= 128 and p.isprintable()),
    st.none() | sessions,
)


@given(commands)
def test_every_valid_command_decodes_to_an_equal_command(cmd: Command) -> None:
    assert decode_command(encode_command(cmd)) == cmd


@given(commands)
def test_equal_commands_encode_to_identical_bytes(cmd: Command) -> None:
    assert encode_command(cmd) == encode_command(Command(cmd.op, cmd.hlc, cmd.principal, cmd.session))


@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_raise_only_command_decode_error(data: bytes) -> None:
    outcome = decode_or_reason(data)
    assert isinstance(outcome, Command) or outcome  # a command, or a non-empty reason


wire_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.text(max_size=4)
    | st.binary(max_size=4),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=12,
)
command_shaped = st.tuples(st.just(1), st.integers(0, 5), wire_values, wire_values, wire_values, wire_values)


@given(command_shaped)
def test_command_shaped_garbage_decodes_or_raises_only_command_decode_error(fields: tuple[Any, ...]) -> None:
    outcome = decode_or_reason(msgpack.packb(list(fields)))
    assert isinstance(outcome, Command) or outcome


def decode_or_reason(data: bytes) -> Command | str:
    try:
        return decode_command(data)
    except CommandDecodeError as exc:  # any other exception type fails the test
        return str(exc)


def wire(*fields: Any) -> bytes:
    packed: bytes = msgpack.packb(list(fields))
    return packed


GOOD_PUT = [1, 1, 7, "alice", None, ["a/b", b"v"]]


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ([2, *GOOD_PUT[1:]], "format"),
        ([1, 99, 7, "alice", None, ["a"]], "unknown op code"),
        ([1, True, 7, "alice", None, ["a", b"v"]], "unknown op code"),
        ([1, 1, -1, "alice", None, ["a", b"v"]], "hlc"),
        ([1, 1, 7, b"alice", None, ["a", b"v"]], "principal"),
        ([1, 1, 7, "x" * 129, None, ["a", b"v"]], "principal"),
        ([1, 1, 7, "alice", None, ["a", "v"]], "put.value"),
        ([1, 1, 7, "alice", None, ["a"]], "put: want 2 fields"),
        ([1, 1, 7, "alice", None, [b"a", b"v"]], "put.key"),
        ([1, 1, 7, "alice", None, ["", b"v"]], "empty"),
        ([1, 1, 7, "alice", None, ["a\x00b", b"v"]], "NUL"),
        ([1, 1, 7, "alice", [b"", 1, 0], ["a", b"v"]], "client_id"),
        ([1, 1, 7, "alice", [b"c", 0, 0], ["a", b"v"]], "seq"),
        ([1, 1, 7, "alice", [b"c", 1, False], ["a", b"v"]], "ack"),
        ([1, 3, 7, "alice", None, ["a", b"v", None, None]], "exactly one"),
        ([1, 3, 7, "alice", None, ["a", b"v", [1, 2], b"x"]], "exactly one"),
        ([1, 3, 7, "alice", None, ["a", b"v", [1], None]], "expected_version"),
        ([1, 4, 7, "alice", None, [[["a", "size", 1]], [], []]], "target"),
        ([1, 4, 7, "alice", None, [[["a", "exists", 1]], [], []]], "exists"),
        ([1, 4, 7, "alice", None, [[], [["delete", "a", b"v"]], []]], "carries no value"),
        ([1, 4, 7, "alice", None, [[], [["put", "a", None]], []]], "value"),
        ([1, 4, 7, "alice", None, [[], [["move", "a", None]], []]], "op"),
        ([1, 4, 7, "alice", None, [{}, [], []]], "compare"),
    ],
)
def test_malformed_commands_are_refused_with_a_message_naming_the_fault(
    fields: list[Any], complaint: str
) -> None:
    with pytest.raises(CommandDecodeError, match=complaint):
        decode_command(wire(*fields))


def test_trailing_bytes_after_the_command_are_refused() -> None:
    with pytest.raises(CommandDecodeError, match="not msgpack"):
        decode_command(wire(*GOOD_PUT) + b"\x00")


def test_invalid_utf8_in_a_key_is_refused() -> None:
    bad = msgpack.packb([1, 2, 7, "alice", None, ["a"]]).replace(b"\xa1a", b"\xa1\xff")
    with pytest.raises(CommandDecodeError):
        decode_command(bad)


def test_a_good_put_decodes() -> None:
    assert decode_command(wire(*GOOD_PUT)) == Command(Put("a/b", b"v"), 7, "alice")


@pytest.mark.parametrize(
    "cmd",
    [
        Command(Put("", b"v"), 1),
        Command(Put("a\x00", b"v"), 1),
        Command(Put("\udcff", b"v"), 1),
        Command(Cas("a", b"v"), 1),
        Command(Cas("a", b"v", expected_version=ABSENT, expected_value=b""), 1),
        Command(Put("a", b"v"), -5),
        Command(Put("a", b"v"), 1, session=Session(b"c", 0)),
        Command(Txn((Compare("a", "version"),), ()), 1),
        Command(Txn((Compare("a", "exists", exists=True, value=b"x"),), ()), 1),
        Command(Txn((), (TxnOp("put", "a"),)), 1),
    ],
)
def test_encoding_an_invalid_command_raises_invalid_command_error(cmd: Command) -> None:
    with pytest.raises(InvalidCommandError):
        encode_command(cmd)


def test_a_non_bytes_entry_is_refused() -> None:
    with pytest.raises(CommandDecodeError, match="want bytes"):
        decode_command(42)  # type: ignore[arg-type]
