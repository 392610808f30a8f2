"""Values in and out of confctl: where put and cas read a value, how get prints a bare one, and how a
table shows awkward ones (control characters, long values) while JSON keeps them exact; the
defaults `--help` names. In-process against test_confctl_cli's fake client.
"""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from confctl.client import Version
from confctl.exit_codes import ExitCode
from confctl.render import MAX_VALUE_CHARS
from tests.unit.confctl_fake import Harness

# ---------------------------------------------------------------- reading a value


def test_put_dash_reads_the_value_from_stdin(cli: Harness) -> None:
    assert cli.run("put", "k", "-", stdin=b"from\nstdin").code == ExitCode.OK
    assert cli.client.data["k"] == b"from\nstdin"


def test_put_without_a_value_reads_piped_stdin_as_etcdctl_does(cli: Harness) -> None:
    cli.run("put", "k", stdin=b"piped")
    assert cli.client.data["k"] == b"piped"


def test_put_literal_stores_a_lone_dash(cli: Harness) -> None:
    assert cli.run("put", "k", "-", "--literal", stdin=b"not this").code == ExitCode.OK
    assert cli.client.data["k"] == b"-"


def test_put_literal_without_a_value_is_a_usage_error(cli: Harness) -> None:
    result = cli.run("put", "k", "--literal", stdin=b"x")
    assert result.code == ExitCode.USAGE
    assert "give VALUE" in result.err


def test_put_file_dash_reads_stdin(cli: Harness) -> None:
    assert cli.run("put", "k", "--file", "-", stdin=b"\x00\x01binary").code == ExitCode.OK
    assert cli.client.data["k"] == b"\x00\x01binary"


def test_put_file_reads_the_files_bytes(cli: Harness, tmp_path: Path) -> None:
    path = tmp_path / "v.bin"
    path.write_bytes(b"\xffraw")
    cli.run("put", "k", "-f", str(path))
    assert cli.client.data["k"] == b"\xffraw"


def test_put_of_a_missing_file_is_a_usage_error_naming_it(cli: Harness, tmp_path: Path) -> None:
    result = cli.run("put", "k", "--file", str(tmp_path / "nope"))
    assert result.code == ExitCode.USAGE
    assert "nope" in result.err
    assert cli.client.calls == []


def test_put_with_both_a_value_and_a_file_is_a_usage_error(cli: Harness) -> None:
    assert cli.run("put", "k", "v", "--file", "-").code == ExitCode.USAGE


def test_cas_dash_reads_the_new_value_from_stdin(cli: Harness) -> None:
    cli.run("cas", "k", "-", "--expected-version", "1:1", stdin=b"new")
    assert cli.client.calls[-1] == ("cas", ("k", b"new", Version(1, 1), None))


def test_cas_literal_writes_a_lone_dash_and_the_expected_value_is_always_as_given(cli: Harness) -> None:
    cli.run("cas", "k", "-", "--literal", "--expected-value", "-")
    assert cli.client.calls[-1] == ("cas", ("k", b"-", None, "-"))


def test_cas_reads_the_new_value_from_a_file(cli: Harness, tmp_path: Path) -> None:
    path = tmp_path / "v"
    path.write_bytes(b"from file")
    cli.run("cas", "k", "--file", str(path), "--expected-value", "old")
    assert cli.client.calls[-1] == ("cas", ("k", b"from file", None, "old"))


# ---------------------------------------------------------------- get --print-value-only


def test_get_print_value_only_prints_the_bare_value_and_a_newline(cli: Harness) -> None:
    cli.client.data["k"] = b"postgres://db1:5432"
    result = cli.run("get", "k", "--print-value-only")
    assert (result.code, result.out) == (ExitCode.OK, "postgres://db1:5432\n")


def test_get_print_value_only_prints_binary_values_as_their_bytes(cli: Harness) -> None:
    cli.client.data["k"] = b"\x00\xff\t"
    result = CliRunner().invoke(cli.app, ["-e", "tcp://h:1", "get", "k", "--print-value-only"])
    assert result.stdout_bytes == b"\x00\xff\t\n"


def test_get_print_value_only_with_json_output_is_a_usage_error(cli: Harness) -> None:
    cli.client.data["k"] = b"v"
    assert cli.run("get", "k", "--print-value-only", "-o", "json").code == ExitCode.USAGE


def test_get_print_value_only_of_a_missing_key_prints_nothing_and_exits_3(cli: Harness) -> None:
    result = cli.run("get", "nope", "--print-value-only")
    assert (result.code, result.out) == (ExitCode.NOT_FOUND, "")


# ---------------------------------------------------------------- tables


def test_control_characters_in_a_table_are_escaped_so_columns_stay_aligned(cli: Harness) -> None:
    cli.client.data.update({"a\tb": b"x", "c": b"line1\nline2\x1b"})
    lines = cli.run("ls").out.splitlines()
    assert lines[1].split() == ["a\\tb", "1:1", "x"]
    assert lines[2].split() == ["c", "1:1", "line1\\nline2\\x1b"]
    assert lines[1].index("1:1") == lines[2].index("1:1") == lines[0].index("VERSION")


def test_json_keeps_control_characters_exact(cli: Harness) -> None:
    cli.client.data["a\tb"] = b"x\n"
    row = cli.run("ls", "-o", "json").json()[0]
    assert (row["key"], row["value"]) == ("a\tb", "x\n")


def test_a_long_value_is_cut_short_in_a_table_with_its_size_and_a_note(cli: Harness) -> None:
    cli.client.data["big"] = b"a" * (1 << 20)
    result = cli.run("ls")
    row = result.out.splitlines()[1]
    assert row.endswith("a" * MAX_VALUE_CHARS + "… (1,048,576 bytes)")
    assert len(row) < 120
    assert "-o json" in result.err


def test_a_long_binary_value_is_cut_short_with_its_size_in_bytes(cli: Harness) -> None:
    cli.client.data["big"] = b"\xff" * 1000
    assert cli.run("get", "big").out.splitlines()[1].endswith("… (1,000 bytes)")


def test_json_output_keeps_a_long_value_whole(cli: Harness) -> None:
    cli.client.data["big"] = b"a" * (1 << 20)
    result = cli.run("ls", "-o", "json")
    assert result.json()[0]["value"] == "a" * (1 << 20)
    assert result.err == ""


def test_a_short_value_is_shown_whole_without_a_note(cli: Harness) -> None:
    cli.client.data["k"] = b"a" * MAX_VALUE_CHARS
    result = cli.run("ls")
    assert result.out.splitlines()[1].endswith("a" * MAX_VALUE_CHARS)
    assert result.err == ""


# ---------------------------------------------------------------- help


def help_words(app: typer.Typer, *args: str) -> str:
    """The help's text as one line of words: the boxes and the wrapping taken out."""
    return " ".join(CliRunner().invoke(app, [*args, "--help"]).stdout.replace("│", " ").split())


def test_help_shows_the_defaults_of_the_global_options(cli: Harness) -> None:
    words = help_words(cli.app, "get")
    assert "[default: 5]" in words  # --timeout's
    assert "[default: table]" in words  # --output's


def test_help_says_dash_reads_stdin_and_literal_stores_it(cli: Harness) -> None:
    words = help_words(cli.app, "put")
    assert "'-' reads stdin" in words
    assert "Store VALUE exactly as given, even a lone '-'" in words
