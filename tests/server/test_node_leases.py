"""A node keeps leases as docs/protocol.md (*Leases*) says: one node, real sockets, turned by the test."""

from __future__ import annotations

import time

from tests.server.node_harness import NodeHarness

TTL_MS = 1_000


def grant(harness: NodeHarness) -> int:
    reply = harness.call("lease_grant", key="locks/", ttl_ms=TTL_MS)
    assert reply["ok"], reply
    lease: int = reply["lease"]
    return lease


def test_a_lease_not_kept_alive_expires_through_the_log_and_takes_its_keys(harness: NodeHarness) -> None:
    asked_at = time.monotonic()  # the lease counts from its grant, applied after this
    lease = grant(harness)
    assert harness.call("put", key="locks/a", value=b"held", lease=lease)["ok"]

    harness.turn_until(lambda: harness.node.counters["leases_expired"] >= 1)
    harness.turn_until(lambda: harness.call("get", key="locks/a").get("ok") is False)

    assert time.monotonic() - asked_at >= TTL_MS / 1000
    expiry = harness.call("audit", prefix="locks/")["records"][-1]
    assert (expiry["op"], expiry["key"], expiry["principal"]) == ("lease_expire", "locks/a", "confmand")
    assert harness.call("lease_keepalive", key="locks/", lease=lease)["error"]["code"] == "NOT_FOUND"


def test_keepalives_hold_a_lease_past_its_ttl(harness: NodeHarness) -> None:
    lease = grant(harness)
    harness.call("put", key="locks/a", value=b"held", lease=lease)
    until = time.monotonic() + 2.5 * TTL_MS / 1000

    while time.monotonic() < until:
        reply = harness.call("lease_keepalive", key="locks/", lease=lease)
        assert (reply["ok"], reply["ttl_ms"]) == (True, TTL_MS), reply
        harness.turn_until(lambda: True)  # one turn; the next keepalive follows at once

    assert harness.call("get", key="locks/a")["value"] == b"held"
    assert harness.node.counters["leases_expired"] == 0


def test_a_revoked_lease_deletes_its_keys_at_once_and_a_put_on_it_is_refused(harness: NodeHarness) -> None:
    lease = grant(harness)
    harness.call("put", key="locks/a", value=b"held", lease=lease)

    revoked = harness.call("lease_revoke", key="locks/", lease=lease)
    late = harness.call("put", key="locks/b", value=b"x", lease=lease)

    assert revoked["ok"], revoked
    assert harness.call("get", key="locks/a")["error"]["code"] == "NOT_FOUND"
    assert late["error"]["code"] == "NOT_FOUND"


def test_a_keepalive_is_linearizable_only(harness: NodeHarness) -> None:
    lease = grant(harness)

    reply = harness.call("lease_keepalive", key="locks/", lease=lease, consistency="stale")

    assert reply["error"]["code"] == "INVALID_REQUEST"
