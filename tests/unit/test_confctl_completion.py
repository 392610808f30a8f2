"""Shell completion: confctl completes its subcommands, their options and the options' choices.

Driven the way the shell's script drives it (what `confctl --show-completion bash` prints):
`_CONFCTL_COMPLETE=complete_bash` with `COMP_WORDS` (the line so far) and `COMP_CWORD` (the
index of the word being completed) in the environment; confctl prints one candidate a line.
"""

from __future__ import annotations

from typer.testing import CliRunner

from confctl.cli import build_app

SUBCOMMANDS = {"put", "get", "del", "cas", "ls", "history", "txn", "status", "shards", "audit", "version"}


def complete_bash(line: str) -> list[str]:
    """The candidates bash is offered for the last word of `line` (empty after a trailing space)."""
    words = line.split(" ")
    env = {"_CONFCTL_COMPLETE": "complete_bash", "COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1)}
    result = CliRunner().invoke(build_app(), [], env=env, prog_name="confctl")
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def test_an_empty_word_after_confctl_completes_to_every_subcommand() -> None:
    assert set(complete_bash("confctl ")) >= SUBCOMMANDS


def test_a_prefix_completes_to_the_subcommands_it_starts() -> None:
    assert complete_bash("confctl s") == ["status", "shards", "split", "snapshot"]


def test_a_dash_dash_after_a_subcommand_completes_to_its_options_and_the_global_ones() -> None:
    options = set(complete_bash("confctl get --"))
    assert {"--consistency", "--min-version", "--print-value-only", "--endpoints", "--output"} <= options
    assert "--expected-version" not in options  # cas's, not get's


def test_an_option_with_choices_completes_to_them() -> None:
    assert complete_bash("confctl get k --consistency ") == ["linearizable", "version", "stale"]
    assert complete_bash("confctl -o ") == ["table", "json"]


def test_show_completion_prints_a_bash_script_that_calls_confctl_back() -> None:
    result = CliRunner().invoke(build_app(), ["--show-completion", "bash"], prog_name="confctl")
    assert result.exit_code == 0
    assert "_CONFCTL_COMPLETE=complete_bash" in result.stdout
    assert "complete -o default -F _confctl_completion confctl" in result.stdout


def test_the_help_offers_to_install_completion() -> None:
    assert "--install-completion" in CliRunner().invoke(build_app(), ["--help"]).stdout
