"""A node answers reads of the past and rollbacks as docs/protocol.md (*Reading the past*) says."""

from __future__ import annotations

from tests.server.node_harness import NodeHarness


def test_get_and_list_at_a_version_answer_with_the_values_then(harness: NodeHarness) -> None:
    then = harness.call("put", key="app/a", value=b"old")["version"]
    harness.call("put", key="app/a", value=b"new")
    harness.call("put", key="app/b", value=b"later")

    got = harness.call("get", key="app/a", at_version=then)
    listed = harness.call("list", prefix="app/", at_version=then)

    assert (got["value"], got["version"], got["at_version"]) == (b"old", then, then)
    assert [(i["key"], i["value"]) for i in listed["items"]] == [("app/a", b"old")]


def test_reads_of_the_past_refuse_versions_not_applied_trimmed_or_of_another_log(
    harness: NodeHarness,
) -> None:
    version = harness.call("put", key="app/a", value=b"v")["version"]
    term, index = map(int, version.split(":"))

    future = harness.call("get", key="app/a", at_version=f"{term}:{index + 50}")
    foreign = harness.call("get", key="app/a", at_version=f"{term + 9}:{index}")
    before = harness.call("get", key="app/a", at_version=f"{term}:{index - 1}")

    assert future["error"]["code"] == "INVALID_REQUEST"
    assert foreign["error"]["code"] == "UNKNOWN_VERSION"
    assert before["error"]["code"] == "NOT_FOUND"


def test_a_rollback_restores_the_value_and_the_audit_says_what_it_restored(harness: NodeHarness) -> None:
    good = harness.call("put", key="app/k", value=b"good")["version"]
    bad = harness.call("put", key="app/k", value=b"bad")["version"]

    stale = harness.call("rollback", key="app/k", to_version=good, expected_version=good)
    done = harness.call("rollback", key="app/k", to_version=good, expected_version=bad)

    assert stale["error"]["code"] == "CAS_FAILED"
    assert (done["ok"], done["prev_version"]) == (True, bad)
    assert harness.call("get", key="app/k")["value"] == b"good"
    last = harness.call("audit", prefix="app/")["records"][-1]
    assert (last["op"], last["restored_from"], last["new_version"]) == ("rollback", good, done["version"])
