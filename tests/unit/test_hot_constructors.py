"""The dataclasses that write their `__init__` out (so that mypyc compiles it: raft/messages.py
says why) take exactly their fields, in order, with the same defaults, and set every one."""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest

import confmand
from confmand.config import Limits
from confmand.kv.records import DataRecord, SessionHeader, SweepState
from confmand.protocol.errors import ErrorCode
from confmand.protocol.types import Version
from confmand.raft.messages import AppendEntries, AppendEntriesResponse, Heartbeat, HeartbeatResponse
from confmand.raft.ready import Ready, SoftState
from confmand.raft.types import (
    Entry,
    EntryKind,
    HardState,
    Membership,
    ProposalOutcome,
    ProposalStatus,
    ReadState,
    Role,
    Snapshot,
    SnapshotMeta,
)
from confmand.server.errors import RequestError
from confmand.server.node import _Incoming
from confmand.server.pending import ClientSink, ForwardSink, PendingRead, PendingWrite, Reply
from confmand.server.requests import ReadRequest, parse_request
from confmand.storage.state import ShardState
from confmand.transport.codec import ForwardReply, ForwardRequest, PeerBatch

FROZEN = [
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    HardState,
    ReadState,
    ProposalOutcome,
    SoftState,
    ShardState,
    PeerBatch,
    ForwardRequest,
    ForwardReply,
    DataRecord,
    SessionHeader,
    SweepState,
    ClientSink,
    ForwardSink,
    _Incoming,
]
MUTABLE = [Ready, Reply, PendingWrite, PendingRead]


def _read_request(n: int) -> ReadRequest:
    frame = msgpack.packb({"v": 1, "id": n, "op": "get", "key": f"ns/k{n}"})
    request = parse_request(frame, Limits())
    assert isinstance(request, ReadRequest)
    return request


def _message(n: int) -> HeartbeatResponse:
    return HeartbeatResponse(1, n, 1, 2, n, n)


# A value of each field type, different for every n: the compiled constructors check the types.
SAMPLES: dict[str, Callable[[int], object]] = {
    "int": lambda n: n,
    "str": lambda n: f"s{n}",
    "ShardId": lambda n: n,
    "NodeId": lambda n: n,
    "int | None": lambda n: n,
    "NodeId | None": lambda n: n,
    "float": lambda n: n + 0.5,
    "bool": lambda n: n % 2 == 1,
    "bytes": lambda n: bytes([n]),
    "bytes | None": lambda n: bytes([n]),
    "tuple[int, int]": lambda n: (n, n + 1),
    "tuple[int, ...]": lambda n: (n,),
    "tuple[bytes, ...]": lambda n: (bytes([n]),),
    "tuple[Entry, ...]": lambda n: (Entry(1, n, EntryKind.NORMAL, b"x"),),
    "list[Entry]": lambda n: [Entry(1, n, EntryKind.NORMAL, b"x")],
    "list[Message]": lambda n: [_message(n)],
    "list[tuple[int, Message]]": lambda n: [(1, _message(n))],
    "list[ReadState]": lambda n: [ReadState(b"r", n)],
    "list[ProposalOutcome]": lambda n: [ProposalOutcome(1, n, n, ProposalStatus.COMMITTED)],
    "list[ForwardRequest]": lambda n: [ForwardRequest(n, 1, b"q")],
    "list[ForwardReply]": lambda n: [ForwardReply(n, b"a")],
    "dict[str, object]": lambda n: {"n": n},
    "HardState | None": lambda n: HardState(n, None, n),
    "SnapshotMeta | None": lambda n: SnapshotMeta(n, 1, Membership(frozenset({1}))),
    "Snapshot | None": lambda n: Snapshot(SnapshotMeta(n, 1, Membership(frozenset({1}))), b"s"),
    "SoftState": lambda n: SoftState(Role.LEADER, n),
    "Role": lambda n: list(Role)[n % len(Role)],
    "ProposalStatus": lambda n: list(ProposalStatus)[n % len(ProposalStatus)],
    "Version": lambda n: Version(1, n),
    "ReplySink": lambda n: ForwardSink(n, n),
    "ReadRequest": _read_request,
    "RequestError | None": lambda n: RequestError(ErrorCode.TIMEOUT, f"late {n}"),
}


def _source(cls: type) -> ast.ClassDef:
    """The class as written: the compiled twin keeps neither annotation strings nor signatures."""
    path = Path(confmand.__file__).parent.parent / (cls.__module__.replace(".", "/") + ".py")
    tree = ast.parse(path.read_text())
    return next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls.__name__)


def _fields(cls: type) -> list[tuple[str, str, str | None]]:
    """(name, annotation, default) of each field, in order, from the class body."""
    return [
        (s.target.id, ast.unparse(s.annotation), None if s.value is None else ast.unparse(s.value))
        for s in _source(cls).body
        if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
    ]


def _init_params(cls: type) -> list[tuple[str, str, str | None]]:
    init = next(s for s in _source(cls).body if isinstance(s, ast.FunctionDef) and s.name == "__init__")
    args = init.args
    assert (args.vararg, args.kwarg, args.kwonlyargs, args.posonlyargs) == (None, None, [], [])
    positional = args.args[1:]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    return [
        (a.arg, ast.unparse(a.annotation) if a.annotation else "", None if d is None else ast.unparse(d))
        for a, d in zip(positional, defaults, strict=True)
    ]


def _values(cls: type) -> dict[str, object]:
    return {name: SAMPLES[annotation](i + 3) for i, (name, annotation, _) in enumerate(_fields(cls))}


@pytest.mark.parametrize("cls", FROZEN + MUTABLE, ids=lambda c: c.__name__)
def test_a_written_out_constructor_takes_exactly_the_fields_in_order(cls: type) -> None:
    params = _init_params(cls)
    for (name, annotation, default), (p_name, p_annotation, p_default) in zip(
        _fields(cls), params, strict=True
    ):
        assert p_name == name
        if default is not None and default.startswith("field(default_factory="):
            # Ready's lists: None stands for a new one
            assert (p_annotation, p_default) == (f"{annotation} | None", "None")
        else:
            assert (p_annotation, p_default) == (annotation, default), f"{cls.__name__}.{name}"


@pytest.mark.parametrize("cls", FROZEN + MUTABLE, ids=lambda c: c.__name__)
def test_a_written_out_constructor_sets_every_field(cls: type) -> None:
    values = _values(cls)
    made = cls(**values)
    assert {name: getattr(made, name) for name in values} == values
    assert made == cls(*values.values())


@pytest.mark.parametrize("cls", FROZEN, ids=lambda c: c.__name__)
def test_a_frozen_class_with_a_written_out_constructor_stays_frozen(cls: type) -> None:
    made = cls(**_values(cls))
    for name in _values(cls):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(made, name, None)
