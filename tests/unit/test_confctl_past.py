"""`confctl get --at-version`, `confctl diff` and `confctl rollback` over the fake client."""

from __future__ import annotations

from confctl.client import Version
from confctl.exit_codes import ExitCode
from tests.unit.confctl_fake import Harness


def test_get_at_a_version_prints_the_value_then(cli: Harness) -> None:
    cli.client.past = {4: {"app/k": b"old"}}

    row = cli.run("get", "app/k", "--at-version", "1:4", "-o", "json").json()[0]

    assert (row["value"], row["at_version"]) == ("old", "1:4")
    assert cli.client.calls[-1] == ("get_at", ("app/k", "1:4"))


def test_diff_of_a_key_shows_a_unified_diff_and_exits_1_when_it_changed(cli: Harness) -> None:
    cli.client.past = {3: {"app/k": b"a\nb\n"}}
    cli.client.data = {"app/k": b"a\nc\n"}

    result = cli.run("diff", "app/k", "1:3")

    assert result.code == 1
    assert "-b" in result.out.splitlines()
    assert "+c" in result.out.splitlines()
    assert "app/k@1:3" in result.out


def test_diff_of_a_prefix_names_keys_added_and_removed_and_exits_0_when_equal(cli: Harness) -> None:
    cli.client.past = {3: {"app/a": b"1", "app/gone": b"x"}, 7: {"app/a": b"1", "app/new": b"y"}}

    changed = cli.run("diff", "--prefix", "app/", "1:3", "1:7")
    same = cli.run("diff", "--prefix", "app/", "1:3", "1:3")

    assert "+ app/new (added)" in changed.out
    assert "- app/gone (removed)" in changed.out
    assert "app/a" not in changed.out
    assert (changed.code, same.code, same.out) == (1, ExitCode.OK, "")


def test_rollback_is_guarded_by_the_version_the_key_is_at_now(cli: Harness) -> None:
    cli.client.data = {"app/k": b"bad"}

    row = cli.run("rollback", "app/k", "--to", "1:3", "-o", "json").json()[0]

    assert cli.client.calls[-1] == ("rollback", ("app/k", "1:3", str(Version(1, 2))))
    assert row["restored"] == "1:3"


def test_rollback_of_a_key_absent_now_expects_it_absent(cli: Harness) -> None:
    cli.run("rollback", "app/k", "--to", "1:3")

    assert cli.client.calls[-1] == ("rollback", ("app/k", "1:3", "0:0"))
