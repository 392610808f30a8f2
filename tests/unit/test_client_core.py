"""The client's sans-I/O core, without sockets: session, routing decisions, calls, requests, replies."""

from __future__ import annotations

import ast
import random
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from confctl.client import replies, requests
from confctl.client.call import ClientCore, Done, Fail, Send
from confctl.client.errors import (
    CasFailed,
    InvalidArgument,
    NotFound,
    NotLeader,
    ProtocolError,
    ServerError,
    TooLarge,
    Unavailable,
)
from confctl.client.routing import Backoff, Router
from confctl.client.session import Session
from confctl.client.types import ABSENT, Compare, TxnOp, Version

A, B, C = "tcp://10.0.0.1:7101", "tcp://10.0.0.2:7101", "tcp://10.0.0.3:7101"
ROOT = Path(__file__).resolve().parents[2]


def make_core(*endpoints: str, timeout_s: float = 5.0) -> ClientCore:
    return ClientCore(
        Session(b"c" * 16),
        Router(tuple(endpoints or (A, B, C))),
        timeout_s=timeout_s,
        attempt_timeout_s=1.0,
        backoff=Backoff(rng=random.Random(1)),
    )


def sent(step: object) -> dict[str, Any]:
    assert isinstance(step, Send), step
    msg: dict[str, Any] = msgpack.unpackb(step.frame, raw=False)
    return msg


def ok(rid: int, **fields: object) -> dict[str, Any]:
    return {"v": 1, "id": rid, "ok": True, "node": 1, "hlc": 5, "leader": None, **fields}


def failed(
    rid: int, code: str, retryable: bool, leader: str | None = None, **extra: object
) -> dict[str, Any]:
    hint = {"id": 9, "address": leader} if leader else None
    error = {"code": code, "message": "m", "retryable": retryable, **extra}
    return {"v": 1, "id": rid, "ok": False, "node": 2, "hlc": 5, "leader": hint, "error": error}


WRITE_OK = {"version": "2:10", "prev_version": None}

# ---------------------------------------------------------------- session


def test_writes_take_consecutive_seqs_and_ack_is_the_lowest_unanswered() -> None:
    session = Session(b"x")
    first, second = session.begin_write(), session.begin_write()
    assert (first, second, session.ack) == (1, 2, 1)
    session.finish_write(first)
    assert session.ack == 2
    session.finish_write(second)
    assert session.ack == 3


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 20))))
def test_ack_matches_a_naive_model_of_outstanding_writes(script: list[tuple[bool, int]]) -> None:
    session, started, answered = Session(b"x"), list[int](), set[int]()
    for begin, pick in script:
        if begin or not started:
            started.append(session.begin_write())
        else:
            seq = started[pick % len(started)]
            answered.add(seq)
            session.finish_write(seq)
        waiting = [s for s in started if s not in answered]
        assert session.ack == (min(waiting) if waiting else len(started) + 1)


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 1000))))
def test_the_session_token_only_grows_to_the_newest_index(seen: list[tuple[int, int]]) -> None:
    session = Session(b"x")
    for term, index in seen:
        session.observe_version(Version(term, index))
    newest = max(seen, key=lambda v: (v[1], v[0]), default=None)
    assert session.token == (Version(*newest) if newest else None)


def test_version_reads_default_to_the_session_token_only_with_read_your_writes() -> None:
    assert Session(b"x").read_floor(None) == ABSENT
    session = Session(b"x", token=Version(3, 40))
    assert session.read_floor(None) == Version(3, 40)
    assert session.read_floor(Version(1, 2)) == Version(1, 2)
    assert Session(b"x", read_your_writes=False, token=Version(3, 40)).read_floor(None) == ABSENT


# ---------------------------------------------------------------- calls: routing and retries


def test_a_call_goes_to_the_first_endpoint_then_to_the_known_leader() -> None:
    core = make_core()
    first = core.call(*_put(), now=0).start(0)
    assert isinstance(first, Send)
    assert first.endpoint == A
    core.router.learn_leader(B)
    second = core.call(*_put(), now=0).start(0)
    assert isinstance(second, Send)
    assert second.endpoint == B


def _put() -> tuple[requests.Request, Any]:
    return requests.put("k", b"v"), replies.write_result


def test_not_leader_with_a_hint_goes_straight_to_the_hint_with_the_same_seq() -> None:
    core = make_core()
    call = core.call(*_put(), now=0)
    first = call.start(0)
    retry = call.on_reply(failed(sent(first)["id"], "NOT_LEADER", True, leader=C), 0.1)
    assert isinstance(retry, Send)
    assert isinstance(first, Send)
    assert (retry.endpoint, retry.delay_s) == (C, 0.0)
    assert sent(retry)["seq"] == sent(first)["seq"] == 1
    assert sent(retry)["id"] != sent(first)["id"]
    assert core.router.leader == C


def test_silence_moves_to_the_next_endpoint_and_forgets_a_silent_leader() -> None:
    core = make_core()
    core.router.learn_leader(B)
    call = core.call(*_put(), now=0)
    assert isinstance(call.start(0), Send)
    step = call.on_silence(1.0)
    assert isinstance(step, Send)
    assert step.endpoint == C
    assert core.router.leader is None


def test_a_silent_head_of_the_list_costs_one_attempt_once_not_in_every_call() -> None:
    core = make_core(A, B, C)
    first = core.call(*_put(), now=0)
    assert isinstance(first.start(0), Send)
    to_b = first.on_silence(1.0)
    assert isinstance(to_b, Send)
    assert isinstance(first.on_reply(ok(sent(to_b)["id"], **WRITE_OK), 1.1), Done)
    second = core.call(*_put(), now=2)
    step = second.start(2)
    assert isinstance(step, Send)
    assert step.endpoint == B


def test_a_call_gets_through_behind_more_dead_nodes_than_its_timeout_covers() -> None:
    """Each call has time for two attempts; three dead nodes come first: the second call still gets in."""
    alive = "tcp://10.0.0.4:7101"
    core = make_core(A, B, C, alive, timeout_s=2.0)
    first = core.call(*_put(), now=0)
    first.start(0)
    first.on_silence(1.0)
    assert isinstance(first.on_silence(2.0), Fail)
    second = core.call(*_put(), now=3)
    assert isinstance(second.start(3), Send)
    to_alive = second.on_silence(4.0)
    assert isinstance(to_alive, Send)
    assert to_alive.endpoint == alive
    assert isinstance(second.on_reply(ok(sent(to_alive)["id"], **WRITE_OK), 4.1), Done)


def test_an_endpoint_already_tried_is_retried_only_after_a_backoff() -> None:
    core = make_core(A, B)
    call = core.call(*_put(), now=0)
    call.start(0)
    to_b = call.on_reply(failed(call.request_id, "NO_QUORUM", True), 0.01)
    assert isinstance(to_b, Send)
    assert to_b.endpoint == B
    assert to_b.delay_s == 0
    back_to_a = call.on_reply(failed(call.request_id, "NO_QUORUM", True), 0.02)
    assert isinstance(back_to_a, Send)
    assert back_to_a.endpoint == A
    assert back_to_a.delay_s > 0


def test_a_timeout_on_a_write_is_retried_with_the_same_seq() -> None:
    core = make_core()
    call = core.call(*_put(), now=0)
    first = sent(call.start(0))
    retry = sent(call.on_reply(failed(first["id"], "TIMEOUT", True), 0.5))
    assert (retry["client_id"], retry["seq"]) == (first["client_id"], first["seq"])


def test_a_non_retryable_error_fails_at_once_and_releases_the_seq() -> None:
    core = make_core()
    call = core.call(*_put(), now=0)
    step = call.on_reply(failed(sent(call.start(0))["id"], "TOO_LARGE", False), 0.1)
    assert isinstance(step, Fail)
    assert isinstance(step.error, TooLarge)
    assert core.session.ack == 2


def test_a_request_over_max_request_bytes_fails_TOO_LARGE_at_once_and_is_never_sent() -> None:
    core = make_core()
    core.max_request_bytes = 1024
    call = core.call(requests.put("k", b"x" * 2000), replies.write_result, now=0)

    step = call.start(0)

    assert isinstance(step, Fail)
    assert isinstance(step.error, TooLarge)
    assert "max_request_bytes=1024" in step.error.message
    assert core.session.ack == 2  # the seq is released: nothing was sent under it


def test_by_default_the_client_refuses_what_a_default_server_would_refuse() -> None:
    core = make_core()
    just_under = core.call(requests.put("k", b"x" * (2 * 1024 * 1024 - 200)), replies.write_result, now=0)
    over = core.call(requests.put("k", b"x" * (2 * 1024 * 1024)), replies.write_result, now=0)

    assert isinstance(just_under.start(0), Send)
    assert isinstance(over.start(0), Fail)


def test_at_the_deadline_the_call_fails_unavailable_naming_the_endpoints_tried() -> None:
    core = make_core(A, B, timeout_s=2.0)
    call = core.call(*_put(), now=0)
    call.start(0)
    call.on_silence(1.0)
    step = call.on_silence(2.0)
    assert isinstance(step, Fail)
    assert isinstance(step.error, Unavailable)
    assert A in step.error.message
    assert B in step.error.message
    assert step.error.endpoints_tried == (A, B)


def test_a_success_raises_the_session_token_and_learns_the_leader() -> None:
    core = make_core()
    call = core.call(*_put(), now=0)
    reply = ok(sent(call.start(0))["id"], **WRITE_OK, leader={"id": 3, "address": C})
    step = call.on_reply(reply, 0.1)
    assert isinstance(step, Done)
    assert step.value.version == Version(2, 10)
    assert core.session.token == Version(2, 10)
    assert core.router.leader == C
    assert core.session.hlc == 5


def test_a_version_read_carries_the_session_token_as_min_version() -> None:
    core = make_core()
    core.session.observe_version(Version(2, 10))
    msg = sent(core.call(requests.get("k", "version"), replies.get_result("k"), now=0).start(0))
    assert (msg["consistency"], msg["min_version"]) == ("version", "2:10")
    assert "seq" not in msg


def test_not_caught_up_follows_the_leader_hint() -> None:
    core = make_core()
    call = core.call(requests.get("k", "version"), replies.get_result("k"), now=0)
    call.start(0)
    step = call.on_reply(failed(call.request_id, "NOT_CAUGHT_UP", True, leader=C), 0.1)
    assert isinstance(step, Send)
    assert step.endpoint == C


def test_a_pinned_call_never_leaves_its_endpoint() -> None:
    core = make_core()
    call = core.call(requests.status(), replies.status_result(B), now=0, endpoint=B)
    call.start(0)
    step = call.on_reply(failed(call.request_id, "NOT_LEADER", True, leader=C), 0.1)
    assert isinstance(step, Send)
    assert step.endpoint == B


# ---------------------------------------------------------------- replies and errors


@pytest.mark.parametrize(
    ("code", "cls", "retryable"),
    [("NOT_LEADER", NotLeader, True), ("NOT_FOUND", NotFound, False), ("CAS_FAILED", CasFailed, False)],
)
def test_error_replies_map_to_their_exception_class(
    code: str, cls: type[ServerError], retryable: bool
) -> None:
    err = replies.error(failed(1, code, retryable, leader=B))
    assert type(err) is cls
    assert (err.code, err.message, err.retryable) == (code, "m", retryable)
    assert err.leader is not None
    assert err.leader.address == B


def test_an_unknown_error_code_keeps_the_servers_retryable() -> None:
    err = replies.error(failed(1, "REBALANCING", True))
    assert (type(err), err.code, err.retryable) == (ServerError, "REBALANCING", True)


def test_cas_failed_carries_the_current_version() -> None:
    err = replies.error(failed(1, "CAS_FAILED", False, current_version="3:7"))
    assert isinstance(err, CasFailed)
    assert err.current_version == Version(3, 7)


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\xc1",
        msgpack.packb([1, 2]),
        msgpack.packb({"id": "x"}),
        msgpack.packb({"ok": True}),
        b"\x92\x01",
    ],
)
def test_frames_that_are_not_replies_decode_to_none(frame: bytes) -> None:
    assert replies.decode(frame) is None


@given(st.binary(max_size=64))
def test_decode_never_raises(frame: bytes) -> None:
    replies.decode(frame)


def test_a_malformed_reply_to_our_request_is_a_protocol_error() -> None:
    core = make_core()
    call = core.call(*_put(), now=0)
    step = call.on_reply(ok(sent(call.start(0))["id"], version=7), 0.1)
    assert isinstance(step, Fail)
    assert isinstance(step.error, ProtocolError)


def test_a_hint_that_is_not_an_endpoint_is_ignored() -> None:
    assert replies.leader_hint({"leader": {"id": 1, "address": "rm -rf /"}}) is None


# ---------------------------------------------------------------- request validation


@pytest.mark.parametrize(
    "build",
    [
        lambda: requests.put("", b"v"),
        lambda: requests.put("k", 3),
        lambda: requests.get("k", "eventual"),
        lambda: requests.get("k", "linearizable", "1:2"),
        lambda: requests.get("k", "version", "12"),
        lambda: requests.cas("k", b"v"),
        lambda: requests.cas("k", b"v", "1:1", b"old"),
        lambda: requests.list_("p", limit=0),
        lambda: requests.list_("p", limit=True),
        lambda: requests.txn([Compare("k", "version", value=b"x")], []),
        lambda: requests.txn([], [TxnOp("put", "k")]),
        lambda: requests.audit(after_hlc=-1),
    ],
)
def test_bad_arguments_raise_invalid_argument_before_sending(build: Any) -> None:
    with pytest.raises(InvalidArgument):
        build()


def test_invalid_argument_is_also_a_value_error() -> None:
    assert issubclass(InvalidArgument, ValueError)


@given(st.integers(0, 2**63), st.integers(0, 2**63))
def test_version_tokens_round_trip_through_text(term: int, index: int) -> None:
    assert Version.parse(str(Version(term, index))) == Version(term, index)


def test_endpoints_must_be_addresses() -> None:
    with pytest.raises(InvalidArgument):
        Router(("localhost",))
    with pytest.raises(InvalidArgument):
        Router(())


# ---------------------------------------------------------------- boundaries

PURE = ("requests", "replies", "session", "routing", "call", "operations", "types", "errors")
IO_MODULES = {"zmq", "asyncio", "time", "os", "socket", "threading", "selectors"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", PURE)
def test_the_client_core_does_no_io(module: str) -> None:
    assert not _imports(ROOT / "confctl" / "client" / f"{module}.py") & IO_MODULES


def test_confctl_imports_nothing_of_confmand_but_the_protocol() -> None:
    def confmand_imports(path: Path) -> set[str]:
        tree = ast.parse(path.read_text())
        found = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        found |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        return {name for name in found if name.split(".")[0] == "confmand"}

    offenders = {
        str(p.relative_to(ROOT)): sorted(names)
        for p in (ROOT / "confctl").rglob("*.py")
        if (names := {n for n in confmand_imports(p) if not n.startswith("confmand.protocol")})
    }
    assert offenders == {}


def test_a_txn_reply_with_a_delete_that_found_nothing_parses_with_no_version() -> None:
    # The server answers a txn delete of an absent key with version nil (a no-op).
    reply = ok(
        1,
        succeeded=True,
        version="2:11",
        results=[
            {"op": "delete", "key": "ghost", "version": None, "prev_version": None},
            {"op": "put", "key": "k", "version": "2:11", "prev_version": "2:10"},
        ],
    )

    result = replies.txn_result(reply)

    assert [(r.key, r.version, r.prev_version) for r in result.results] == [
        ("ghost", None, None),
        ("k", Version(2, 11), Version(2, 10)),
    ]
