"""The one definition of the wire: codes and what they promise, versions, envelopes both ways."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from confctl.client import errors as client_errors
from confctl.client import replies, requests
from confctl.client.call import ClientCore, Send
from confctl.client.routing import Router
from confctl.client.session import Session as ClientSession
from confmand.config import Limits
from confmand.protocol import (
    ABSENT,
    CLIENT_CODES,
    SERVER_CODES,
    AuditRecord,
    ClientErrorCode,
    ErrorBody,
    ErrorCode,
    LeaderHint,
    ReplyEnvelope,
    RequestEnvelope,
    Session,
    Version,
    WireError,
    decode_reply,
    ops,
)
from confmand.protocol.types import Compare, Consistency, TxnOp
from confmand.server.requests import ReadRequest, WriteRequest, parse_request

VERSIONS = st.builds(Version, st.integers(0, 2**63), st.integers(0, 2**63))


def test_every_code_says_whether_it_is_retryable_whether_a_write_may_have_applied_and_how_to_retry() -> None:
    assert set(SERVER_CODES) == set(ErrorCode)
    assert set(CLIENT_CODES) == set(ClientErrorCode)
    assert all(info.retry_with for info in (*SERVER_CODES.values(), *CLIENT_CODES.values()))


def test_only_an_unknown_outcome_may_have_applied() -> None:
    applied = {code for code in ErrorCode if code.may_have_applied}
    assert applied == {ErrorCode.TIMEOUT, ErrorCode.SESSION_EXPIRED, ErrorCode.INTERNAL}
    assert ClientErrorCode.UNAVAILABLE.may_have_applied
    assert not ClientErrorCode.INVALID_ARGUMENT.may_have_applied


def test_the_retryable_codes_are_those_a_client_retries() -> None:
    retryable = {code for code in ErrorCode if code.retryable}
    assert retryable == {
        ErrorCode.NOT_LEADER,
        ErrorCode.NO_QUORUM,
        ErrorCode.TIMEOUT,
        ErrorCode.NOT_CAUGHT_UP,
        ErrorCode.WRONG_SHARD,
        ErrorCode.PARTITION_MOVING,
        ErrorCode.STORAGE,
        ErrorCode.SLOW_WATCHER,
        ErrorCode.OVERLOADED,
    }


def test_the_client_has_one_exception_per_code_agreeing_on_retryable() -> None:
    for code in ErrorCode:
        cls = client_errors.SERVER_ERRORS[str(code)]
        assert cls.default_retryable is code.retryable, code
    assert client_errors.Unavailable.code == ClientErrorCode.UNAVAILABLE


@given(VERSIONS, VERSIONS)
def test_versions_order_by_log_position_index_first_then_term(a: Version, b: Version) -> None:
    assert (a < b) == ((a.index, a.term) < (b.index, b.term))
    assert a.newer_than(b) == (b < a)
    assert Version.parse(str(a)) == a


@given(VERSIONS, VERSIONS)
def test_versions_are_equal_and_hash_alike_exactly_when_term_and_index_are(a: Version, b: Version) -> None:
    same = (a.term, a.index) == (b.term, b.index)
    assert (a == b) is same
    assert (a != b) is not same
    assert len({a, b, Version(a.term, a.index)}) == (1 if same else 2)


def test_a_version_is_its_log_position_not_its_term() -> None:
    assert Version(2, 10) > Version(9, 3)
    assert Version(1, 1) > ABSENT
    assert ABSENT.newer_than(None)
    with pytest.raises(ValueError, match="term:index"):
        Version.parse("3-7")


def test_a_request_envelope_carries_the_session_the_mode_and_the_ops_fields() -> None:
    envelope = RequestEnvelope(
        7,
        "get",
        hlc=99,
        principal="ops",
        timeout_ms=900,
        consistency=Consistency.VERSION,
        min_version=Version(3, 17),
    )
    write = RequestEnvelope(8, "put", session=Session(b"c" * 16, 4, 2))

    assert msgpack.unpackb(envelope.encode({"key": "a/b"}), raw=False) == {
        "v": 1,
        "id": 7,
        "op": "get",
        "key": "a/b",
        "hlc": 99,
        "principal": "ops",
        "timeout_ms": 900,
        "consistency": "version",
        "min_version": "3:17",
    }
    sent = msgpack.unpackb(write.encode({"key": "k", "value": b"v"}), raw=False)
    assert (sent["client_id"], sent["seq"], sent["ack"], sent["value"]) == (b"c" * 16, 4, 2, b"v")


def test_a_reply_envelope_round_trips_through_the_clients_decoder() -> None:
    error = ErrorBody.of(ErrorCode.CAS_FAILED, "version is 3:9", {"current_version": "3:9"})
    frame = ReplyEnvelope(5, 2, 1234, LeaderHint(1, "tcp://127.0.0.1:7101"), error).encode({})

    reply = decode_reply(frame)

    assert reply is not None
    assert reply["leader"] == {"id": 1, "address": "tcp://127.0.0.1:7101"}
    assert (reply["id"], reply["ok"], reply["node"], reply["hlc"]) == (5, False, 2, 1234)
    assert ErrorBody.from_wire(reply["error"]) == error


def test_an_unknown_code_keeps_the_retryable_flag_it_came_with_and_a_known_one_defaults_to_its_own() -> None:
    assert ErrorBody.from_wire({"code": "NEW_THING", "message": "m", "retryable": True}).retryable
    assert not ErrorBody.from_wire({"code": "NEW_THING"}).retryable
    assert ErrorBody.from_wire({"code": "TIMEOUT"}).retryable
    with pytest.raises(WireError):
        ErrorBody.from_wire({"message": "no code"})


def test_what_is_not_a_reply_with_an_integer_id_is_not_ours() -> None:
    assert decode_reply(b"\xc1") is None
    assert decode_reply(msgpack.packb({"id": True})) is None
    assert decode_reply(msgpack.packb([1])) is None


def test_an_audit_record_round_trips_through_its_wire_form() -> None:
    record = AuditRecord(77, Version(2, 9), "ops", "delete", "a/b", Version(1, 3), None)
    assert AuditRecord.from_wire(record.to_wire()) == record
    with pytest.raises(WireError, match="hlc"):
        AuditRecord.from_wire({**record.to_wire(), "hlc": "soon"})


def test_a_client_refused_with_CLOCK_SKEW_by_an_older_server_drops_its_stamp() -> None:
    core = ClientCore(ClientSession(b"c" * 16, hlc=5 << 40), Router(("tcp://10.0.0.1:7101",)))
    call = core.call(requests.get("k"), replies.get_result("k"), now=0)
    first = call.start(0)
    assert isinstance(first, Send)
    refused = {
        "v": 1,
        "id": first.request_id,
        "ok": False,
        "error": {"code": "CLOCK_SKEW", "message": "ahead", "retryable": False},
    }

    call.on_reply(refused, 0.1)

    assert core.session.hlc == 0


WRITE_SHAPES: list[ops.Operation] = [
    ops.Put("a/k", b"v"),
    ops.Put("a/k", b"v", lease=12),
    ops.Cas("a/k", b"v", expected_version=ABSENT, lease=12),
    ops.Rollback("a/k", Version(2, 5), expected_version=Version(2, 9)),
    ops.LeaseGrant("locks/", 5_000),
    ops.LeaseRevoke("locks/", 12),
    ops.Delete("a/k"),
    ops.Cas("a/k", b"v", expected_version=Version(3, 9)),
    ops.Cas("a/k", b"v", expected_value=b"old"),
    ops.Txn(
        (
            Compare("a/k", "version", version=ABSENT),
            Compare("a/k", "value", value=b"x"),
            Compare("a/j", "exists", exists=False),
        ),
        (TxnOp("put", "a/k", b"v"), TxnOp("delete", "a/j")),
        (TxnOp("put", "a/j", b"w"),),
    ),
]
READ_SHAPES = [
    ops.GetQuery("a/k"),
    ops.ListQuery("a/", after="a/b", limit=7, keys_only=True),
    ops.ListQuery("a/"),
    ops.HistoryQuery("a/k", limit=3),
    ops.AuditQuery(after_hlc=99, limit=5),
    ops.AuditQuery(),
]


OP_NAMES: dict[type, str] = {
    ops.Put: "put",
    ops.Delete: "delete",
    ops.Cas: "cas",
    ops.Txn: "txn",
    ops.Rollback: "rollback",
    ops.LeaseGrant: "lease_grant",
    ops.LeaseRevoke: "lease_revoke",
}


@pytest.mark.parametrize("shape", WRITE_SHAPES, ids=repr)
def test_a_write_op_the_client_encodes_is_the_one_the_server_parses(shape: ops.Operation) -> None:
    names = {ops.Put: "put", ops.Delete: "delete", ops.Cas: "cas", ops.Txn: "txn", ops.Rollback: "rollback"}
    name = (
        names.get(type(shape))
        or {ops.LeaseGrant: "lease_grant", ops.LeaseRevoke: "lease_revoke"}[type(shape)]
    )
    frame = RequestEnvelope(3, name, session=Session(b"c", 2, 2)).encode(shape.to_wire())

    request = parse_request(frame, Limits())

    assert isinstance(request, WriteRequest)
    assert request.operation == shape
    assert request.session == Session(b"c", 2, 2)


@pytest.mark.parametrize("shape", READ_SHAPES, ids=repr)
def test_a_read_the_client_encodes_is_the_one_the_server_parses(shape: ops.Query) -> None:
    name = {ops.GetQuery: "get", ops.ListQuery: "list", ops.HistoryQuery: "history", ops.AuditQuery: "audit"}
    envelope = RequestEnvelope(
        4, name[type(shape)], consistency=Consistency.VERSION, min_version=Version(2, 5)
    )

    request = parse_request(envelope.encode(shape.to_wire()), Limits())

    assert isinstance(request, ReadRequest)
    assert (request.query, request.consistency, request.min_version) == (
        shape,
        Consistency.VERSION,
        Version(2, 5),
    )
