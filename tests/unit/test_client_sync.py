"""`Client` over real zmq sockets against fake nodes (confctl.testing) on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from confctl.client import Client, Compare, NotFound, TxnOp, Unavailable, Version
from confctl.testing import FakeCluster, FakeNode, free_address


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster()


@pytest.fixture
def leader(cluster: FakeCluster) -> Iterator[FakeNode]:
    node = FakeNode(cluster, 1, leader=True)
    yield node
    node.stop()


@pytest.fixture
def follower(cluster: FakeCluster, leader: FakeNode) -> Iterator[FakeNode]:
    node = FakeNode(cluster, 2)
    yield node
    node.stop()


def test_a_put_then_get_round_trips_the_value_and_version(leader: FakeNode) -> None:
    with Client([leader.address]) as client:
        written = client.put("app/url", "https://x")
        read = client.get("app/url")
    assert (read.value, read.version) == (b"https://x", written.version)


def test_a_follower_answers_not_leader_and_the_client_follows_the_hint(
    leader: FakeNode, follower: FakeNode
) -> None:
    with Client([follower.address]) as client:
        client.put("k", b"v")
        assert client.core.router.leader == leader.address
    assert [r["op"] for r in follower.requests] == ["put"]
    assert [r["op"] for r in leader.requests] == ["put"]


def test_a_dropped_write_is_retried_with_the_same_seq_and_applied_once(
    cluster: FakeCluster, leader: FakeNode
) -> None:
    leader.drop_next = 1
    with Client([leader.address], timeout_s=2.0, attempt_timeout_s=0.2) as client:
        client.put("k", b"v")
    first, retry = leader.wait_for_requests(2)
    assert (first["client_id"], first["seq"]) == (retry["client_id"], retry["seq"])
    assert first["id"] != retry["id"]
    assert cluster.applied_writes == 1


def test_a_dead_endpoint_is_skipped_for_the_next_one(leader: FakeNode) -> None:
    with Client([free_address(), leader.address], timeout_s=2.0, attempt_timeout_s=0.1) as client:
        assert client.put("k", b"v").version == Version(1, 1)


def test_when_no_node_answers_the_client_raises_unavailable_listing_the_endpoints() -> None:
    dead = [free_address(), free_address()]
    with Client(dead, timeout_s=0.3) as client, pytest.raises(Unavailable) as caught:
        client.get("k")
    assert all(address in str(caught.value) for address in dead)


def test_after_a_write_a_version_read_on_a_follower_never_sees_older_data(
    leader: FakeNode, follower: FakeNode
) -> None:
    follower.frozen_applied = (1, 0)  # the follower has not applied anything yet
    with Client([leader.address]) as writer_client:
        written = writer_client.put("k", b"new")
    with Client([follower.address]) as client:
        client.core.session.observe_version(written.version)  # as if this client had written
        read = client.get("k", consistency="version")
    assert read.value == b"new"
    not_caught_up, served = follower.requests[0], leader.requests[-1]
    assert not_caught_up["min_version"] == served["min_version"] == str(written.version)


def test_replies_with_unknown_ids_and_junk_frames_are_ignored(leader: FakeNode) -> None:
    leader.stray_replies = True
    with Client([leader.address]) as client:
        client.put("a", b"1")
        assert client.get("a").value == b"1"


def test_non_retryable_errors_raise_at_once(leader: FakeNode) -> None:
    with Client([leader.address]) as client, pytest.raises(NotFound):
        client.get("missing")
    assert len(leader.requests) == 1


def test_list_txn_history_and_audit_speak_the_protocol(leader: FakeNode) -> None:
    with Client([leader.address], principal="ops") as client:
        client.put("app/a", b"1")
        outcome = client.txn([Compare("app/a", "value", value=b"1")], [TxnOp("put", "app/b", b"2")])
        page = client.list("app/", limit=1)
        history = client.history("app/a")
        audit = client.audit()
    assert outcome.succeeded
    assert [r.key for r in outcome.results] == ["app/b"]
    assert ([i.key for i in page.items], page.more, page.next) == (["app/a"], True, "app/a")
    assert [e.principal for e in history.versions] == ["ops"]
    assert [r.key for r in audit.records] == ["app/a", "app/b"]


def test_status_all_shows_a_dead_node_as_unreachable(leader: FakeNode, follower: FakeNode) -> None:
    dead = free_address()
    with Client([leader.address, follower.address, dead], attempt_timeout_s=0.2) as client:
        statuses = client.status_all()
    assert [(s.endpoint, s.reachable, s.role) for s in statuses] == [
        (leader.address, True, "leader"),
        (follower.address, True, "follower"),
        (dead, False, None),
    ]


def test_status_of_one_endpoint_is_that_nodes_view(leader: FakeNode, follower: FakeNode) -> None:
    with Client([leader.address, follower.address]) as client:
        view = client.status(follower.address)
    assert (view.node_id, view.role, view.leader_id) == (2, "follower", 1)


def test_a_closed_client_refuses_calls(leader: FakeNode) -> None:
    client = Client([leader.address])
    client.close()
    with pytest.raises(Unavailable):
        client.get("k")
