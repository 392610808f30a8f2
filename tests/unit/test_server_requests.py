"""Client frames become typed requests, or one clear error that echoes the request id."""

from __future__ import annotations

import contextlib
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from confmand.config import Limits
from confmand.kv.commands import Cas, Put, Session, Txn
from confmand.protocol.errors import ErrorCode
from confmand.protocol.ops import GetQuery, ListQuery
from confmand.protocol.types import Consistency, Version
from confmand.server.requests import (
    BadRequest,
    ReadRequest,
    WriteRequest,
    parse_request,
)

INT64 = st.integers(-(2**63), 2**64 - 1)
LIMITS = Limits(max_key_bytes=16, max_value_bytes=64, max_request_bytes=1024, max_txn_ops=4)


def frame(**fields: Any) -> bytes:
    return msgpack.packb({"v": 1, "id": 7, **fields}, use_bin_type=True)


def error_of(payload: bytes) -> tuple[int, ErrorCode]:
    with pytest.raises(BadRequest) as info:
        parse_request(payload, LIMITS)
    return info.value.request_id, info.value.error.code


def test_a_put_with_a_session_becomes_a_write_request() -> None:
    request = parse_request(frame(op="put", key="a/b", value=b"v", client_id=b"c", seq=3, ack=2), LIMITS)

    assert isinstance(request, WriteRequest)
    assert request.operation == Put("a/b", b"v")
    assert request.session == Session(b"c", 3, 2)
    assert request.common.request_id == 7
    assert request.common.principal == "anonymous"


def test_reads_default_to_linearizable_and_lists_to_a_page_of_100() -> None:
    get = parse_request(frame(op="get", key="k"), LIMITS)
    listing = parse_request(frame(op="list", prefix="a/"), LIMITS)

    assert isinstance(get, ReadRequest)
    assert get.query == GetQuery("k")
    assert get.consistency is Consistency.LINEARIZABLE
    assert isinstance(listing, ReadRequest)
    assert listing.query == ListQuery("a/", None, 100, False)


def test_cas_and_txn_carry_their_expectations() -> None:
    cas = parse_request(frame(op="cas", key="k", value=b"2", expected_version="3:9"), LIMITS)
    txn = parse_request(
        frame(
            op="txn",
            compare=[{"key": "k", "target": "exists", "exists": False}],
            success=[{"op": "put", "key": "k", "value": b"1"}],
        ),
        LIMITS,
    )

    assert isinstance(cas, WriteRequest)
    assert cas.operation == Cas("k", b"2", Version(3, 9))
    assert isinstance(txn, WriteRequest)
    assert isinstance(txn.operation, Txn)
    assert txn.operation.failure == ()


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"op": "frobnicate"}, ErrorCode.UNSUPPORTED),
        ({"op": "get"}, ErrorCode.INVALID_REQUEST),
        ({"op": "get", "key": 5}, ErrorCode.INVALID_REQUEST),
        ({"op": "get", "key": ""}, ErrorCode.INVALID_REQUEST),
        ({"op": "get", "key": "a\x00b"}, ErrorCode.INVALID_REQUEST),
        ({"op": "get", "key": "k" * 17}, ErrorCode.TOO_LARGE),
        ({"op": "put", "key": "k", "value": [1]}, ErrorCode.INVALID_REQUEST),
        ({"op": "put", "key": "k", "value": b"x" * 65}, ErrorCode.TOO_LARGE),
        ({"op": "put", "key": "k", "value": b"x", "client_id": b"c", "seq": "1"}, ErrorCode.INVALID_REQUEST),
        (
            {"op": "put", "key": "k", "value": b"x", "client_id": b"c", "seq": 1, "ack": 2},
            ErrorCode.INVALID_REQUEST,
        ),
        ({"op": "cas", "key": "k", "value": b"x"}, ErrorCode.INVALID_REQUEST),
        ({"op": "cas", "key": "k", "value": b"x", "expected_version": "three"}, ErrorCode.INVALID_REQUEST),
        ({"op": "get", "key": "k", "consistency": "eventual"}, ErrorCode.INVALID_REQUEST),
        ({"op": "get", "key": "k", "consistency": "version"}, ErrorCode.INVALID_REQUEST),
        ({"op": "list", "limit": 0}, ErrorCode.INVALID_REQUEST),
        (
            {"op": "txn", "compare": [], "success": [{"op": "put", "key": "k", "value": b"1"}] * 5},
            ErrorCode.TOO_LARGE,
        ),
        (
            {"op": "txn", "compare": [{"key": "k", "target": "colour"}], "success": []},
            ErrorCode.INVALID_REQUEST,
        ),
        ({"op": "put", "key": "k", "value": b"x", "principal": "p" * 200}, ErrorCode.TOO_LARGE),
        ({"op": "get", "key": "k", "hlc": -1}, ErrorCode.INVALID_REQUEST),
    ],
)
def test_a_bad_field_is_refused_with_its_code_and_the_request_id(
    fields: dict[str, Any], code: ErrorCode
) -> None:
    assert error_of(frame(**fields)) == (7, code)


def test_an_unknown_protocol_version_is_unsupported() -> None:
    assert error_of(msgpack.packb({"v": 2, "id": 1, "op": "ping"})) == (1, ErrorCode.UNSUPPORTED)


def test_frames_that_are_not_request_maps_are_refused_without_an_id() -> None:
    assert error_of(b"\xc1") == (-1, ErrorCode.INVALID_REQUEST)
    assert error_of(msgpack.packb([1, 2])) == (-1, ErrorCode.INVALID_REQUEST)
    assert error_of(b"\x00" * 2000) == (-1, ErrorCode.TOO_LARGE)


def test_a_request_over_max_request_bytes_is_refused_under_its_own_id() -> None:
    # The id is read from the map without building its values; without it the client would drop
    # the TOO_LARGE answer and wait out its whole timeout.
    assert error_of(frame(op="put", key="k", value=b"x" * 2000)) == (7, ErrorCode.TOO_LARGE)
    late_id = msgpack.packb({"op": "put", "value": b"x" * 2000, "v": 1, "id": 9}, use_bin_type=True)
    assert error_of(late_id) == (9, ErrorCode.TOO_LARGE)
    assert error_of(msgpack.packb({"value": b"x" * 2000, "id": -4})) == (-1, ErrorCode.TOO_LARGE)
    assert error_of(msgpack.packb({"value": b"x" * 2000})[:1500]) == (-1, ErrorCode.TOO_LARGE)


@given(st.binary(max_size=200))
def test_no_frame_escapes_as_anything_but_a_request_or_BadRequest(payload: bytes) -> None:
    with contextlib.suppress(BadRequest):
        parse_request(payload, LIMITS)


@given(
    st.dictionaries(
        st.sampled_from(
            ["v", "id", "op", "key", "value", "seq", "client_id", "consistency", "compare", "limit"]
        ),
        st.one_of(st.none(), INT64, st.text(max_size=5), st.binary(max_size=5), st.lists(INT64)),
    )
)
def test_no_map_escapes_as_anything_but_a_request_or_BadRequest(fields: dict[str, Any]) -> None:
    with contextlib.suppress(BadRequest):
        parse_request(msgpack.packb(fields, use_bin_type=True), LIMITS)
