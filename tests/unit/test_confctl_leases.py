"""`confctl lease grant|keepalive|revoke` and `put --lease` over the fake client."""

from __future__ import annotations

from tests.unit.confctl_fake import Harness


def test_grant_prints_the_lease_and_put_attaches_a_key_to_it(cli: Harness) -> None:
    granted = cli.run("lease", "grant", "locks/", "5000", "-o", "json").json()[0]
    cli.run("put", "locks/a", "me", "--lease", str(granted["lease"]))

    assert granted["ttl_ms"] == 5000
    assert cli.client.calls[-1] == ("put", ("locks/a", b"me", granted["lease"]))


def test_keepalive_sends_as_many_as_asked_and_revoke_names_the_lease(cli: Harness) -> None:
    cli.run("lease", "keepalive", "locks/", "7")
    cli.run("lease", "revoke", "locks/", "7")

    assert [name for name, _ in cli.client.calls] == ["lease_keepalive", "lease_revoke"]


def test_a_ttl_below_a_second_is_a_usage_error(cli: Harness) -> None:
    assert cli.run("lease", "grant", "locks/", "10").code == 2
