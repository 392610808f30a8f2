"""Bad client input gets its error code (or is dropped when it cannot be answered), and the node goes on.

One shared cluster with small limits; every case is sent to the leader on
a fresh DEALER, and afterwards the same node must still serve a put and a
get. A hypothesis fuzz sends arbitrary frames and maps the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.harness import Cluster, ClusterOptions, Conn, ok

MAX_KEY = 64
MAX_VALUE = 4096
MAX_REQUEST = 16384
RID = 77
ERROR_CODES = frozenset(
    {
        "NOT_LEADER",
        "NO_QUORUM",
        "TIMEOUT",
        "NOT_CAUGHT_UP",
        "INVALID_REQUEST",
        "UNSUPPORTED",
        "TOO_LARGE",
        "NOT_FOUND",
        "CAS_FAILED",
        "SESSION_EXPIRED",
        "CLOCK_SKEW",
    }
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    limits = {"max_key_bytes": MAX_KEY, "max_value_bytes": MAX_VALUE, "max_request_bytes": MAX_REQUEST}
    cluster = Cluster(tmp_path_factory.mktemp("bad-input"), ClusterOptions(limits=limits))
    try:
        cluster.boot()
        yield cluster
    finally:
        cluster.close()


def pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def req(**fields: Any) -> bytes:
    """A request frame: a valid put with `fields` changed (a field set to ... is removed)."""
    body: dict[str, Any] = {"v": 1, "id": RID, "op": "put", "key": "bad/k", "value": b"v"}
    body.update(fields)
    return pack({k: v for k, v in body.items() if v is not ...})


@dataclass(frozen=True)
class Case:
    name: str
    frames: list[bytes]
    code: str | None  # None: dropped, no reply
    request_id: int = RID


CASES = [
    Case("not msgpack", [b"\xc1\xc1 not msgpack"], "INVALID_REQUEST", -1),
    Case("truncated msgpack", [b"\xdd\xff\xff\xff\xff"], "INVALID_REQUEST", -1),
    Case("msgpack non-map", [pack([1, 2, 3])], "INVALID_REQUEST", -1),
    Case("map without v", [req(v=...)], "INVALID_REQUEST"),
    Case("map without id", [req(id=...)], "INVALID_REQUEST", -1),
    Case("map without op", [req(op=...)], "INVALID_REQUEST"),
    Case("negative id", [req(id=-5)], "INVALID_REQUEST", -1),
    Case("unknown op", [req(op="explode")], "UNSUPPORTED"),
    Case("unknown protocol version", [req(v=2)], "UNSUPPORTED"),
    Case("key over max_key_bytes", [req(key="k" * (MAX_KEY + 1))], "TOO_LARGE"),
    Case("value over max_value_bytes", [req(value=b"x" * (MAX_VALUE + 1))], "TOO_LARGE"),
    Case("request over max_request_bytes", [req(padding=b"x" * MAX_REQUEST)], "TOO_LARGE"),
    Case("key as int", [req(key=42)], "INVALID_REQUEST"),
    Case("value as list", [req(value=[1, 2])], "INVALID_REQUEST"),
    Case("seq as string", [req(client_id=b"c" * 8, seq="1")], "INVALID_REQUEST"),
    Case("empty key", [req(key="")], "INVALID_REQUEST"),
    Case("bad version token", [req(op="get", consistency="version", min_version="3-7")], "INVALID_REQUEST"),
    Case("version read without a token", [req(op="get", consistency="version")], "INVALID_REQUEST"),
    Case("unknown consistency", [req(op="get", consistency="eventual")], "INVALID_REQUEST"),
    Case(
        "cas with both expectations",
        [req(op="cas", expected_version="0:0", expected_value=b"v")],
        "INVALID_REQUEST",
    ),
    Case("non-map in a txn", [req(op="txn", compare=[], success=[7])], "INVALID_REQUEST"),
    Case("many frames", [b"frame"] * 40 + [req()], None),
]


def still_serves(cluster: Cluster, node_id: int) -> None:
    value = os.urandom(8)
    put = cluster.put(node_id, "bad/after", value)
    got = ok(cluster.call(node_id, {"op": "get", "key": "bad/after"}))
    assert (got["value"], got["version"]) == (value, put["version"])


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_its_error_code_and_the_node_goes_on_serving(cluster: Cluster, case: Case) -> None:
    leader = cluster.wait_for_leader()
    conn = Conn(cluster.client_address(leader))
    try:
        conn.send_frames(case.frames)
        reply = conn.receive(1.0 if case.code is None else 3.0)
    finally:
        conn.close()

    if case.code is None:
        assert reply is None, f"a message that cannot be answered was answered: {reply}"
    else:
        assert reply is not None, "no reply"
        assert reply["ok"] is False
        assert (reply["error"]["code"], reply["id"], reply["error"]["retryable"]) == (
            case.code,
            case.request_id,
            False,
        ), reply
    still_serves(cluster, leader)


def test_a_frame_over_the_transport_limit_drops_only_that_client(cluster: Cluster) -> None:
    leader = cluster.wait_for_leader()
    conn = Conn(cluster.client_address(leader))
    try:
        conn.send_frames([req(value=b"x" * (3 << 20))])  # over the socket's 2 MiB MAXMSGSIZE
        reply = conn.receive(1.0)
    finally:
        conn.close()

    assert reply is None
    still_serves(cluster, leader)


SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.text(max_size=20), st.binary(max_size=20)
)
FIELDS = st.sampled_from(
    [
        "v",
        "id",
        "op",
        "key",
        "value",
        "consistency",
        "min_version",
        "client_id",
        "seq",
        "ack",
        "hlc",
        "timeout_ms",
        "prefix",
        "limit",
        "expected_version",
        "expected_value",
        "compare",
        "success",
    ]
)
OPS = st.sampled_from(["put", "get", "delete", "cas", "list", "txn", "history", "audit", "ping", "status"])
MAPS = st.builds(
    lambda base, extra: {**base, **extra},
    st.fixed_dictionaries({"v": st.just(1), "id": st.integers(0, 2**31), "op": OPS}),
    st.dictionaries(FIELDS, st.one_of(SCALARS, st.lists(SCALARS, max_size=3)), max_size=5),
)
FRAMES = st.one_of(st.binary(max_size=64), MAPS.map(pack), st.lists(SCALARS, max_size=4).map(pack))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame=FRAMES)
def test_any_frame_gets_a_well_formed_reply_with_a_documented_code(cluster: Cluster, frame: bytes) -> None:
    leader = cluster.wait_for_leader()
    conn = cluster.conn(leader)

    conn.send_frames([frame])
    reply = conn.receive(3.0)

    assert reply is not None, f"no reply to {frame!r}"
    assert {"v", "id", "ok", "node", "hlc", "leader"} <= reply.keys(), reply
    if not reply["ok"]:
        assert reply["error"]["code"] in ERROR_CODES, reply
    assert ok(cluster.call(leader, {"op": "ping"}))["node"] == leader
