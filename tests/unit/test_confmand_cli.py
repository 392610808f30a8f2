"""`confmand run` and `confmand check-config` name the node's config one way: `--config FILE`.

The CLI runs in-process (`CliRunner`); no test here starts a node: `run` is only
given configs it must refuse before starting anything. The last tests read the
repository's docs, example configs and unit files, so that none of them teaches a
form the CLI refuses.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from confmand.cli import EXIT_CONFIG, app

ROOT = Path(__file__).resolve().parents[2]
SINGLE = ROOT / "config" / "single.toml"
EXAMPLES = sorted((ROOT / "config").rglob("*.toml"))
USAGE = 2  # click's exit code for a command line it cannot parse


def confmand(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def broken_config(tmp_path: Path) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(SINGLE.read_text().replace("election_ticks = 10", 'election_ticks = "ten"'))
    return path


# ------------------------------------------------------------------ check-config


@pytest.mark.parametrize("flag", ["--config", "-c"])
def test_check_config_takes_the_file_as_config_like_run(flag: str) -> None:
    result = confmand("check-config", flag, str(SINGLE))

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"{SINGLE}: valid (node 1 of cluster 'single')"


def test_check_config_still_accepts_the_old_positional_path() -> None:
    result = confmand("check-config", str(SINGLE))

    assert result.exit_code == 0, result.output
    assert "valid (node 1" in result.stdout


def test_check_config_usage_shows_only_the_config_option() -> None:
    usage = confmand("check-config", "--help").stdout

    assert re.search(r"Usage: \S+ check-config \[OPTIONS\] *\n", usage), usage
    assert "--config" in usage


def test_check_config_without_a_file_is_a_usage_error_naming_config() -> None:
    result = confmand("check-config")

    assert result.exit_code == USAGE
    assert "--config" in result.stderr


def test_check_config_refuses_two_different_files() -> None:
    result = confmand("check-config", "--config", str(SINGLE), str(EXAMPLES[0]))

    assert result.exit_code == USAGE
    assert "one config file at a time" in result.stderr


def test_check_config_on_an_invalid_file_exits_2_naming_the_field(tmp_path: Path) -> None:
    result = confmand("check-config", "--config", str(broken_config(tmp_path)))

    assert result.exit_code == EXIT_CONFIG
    assert "raft.election_ticks" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_config_is_valid(path: Path) -> None:
    result = confmand("check-config", "--config", str(path))

    assert result.exit_code == 0, result.output


# ------------------------------------------------------------------ run


@pytest.mark.parametrize("flag", ["--config", "-c"])
def test_run_reads_the_file_given_as_config_and_refuses_an_invalid_one(tmp_path: Path, flag: str) -> None:
    result = confmand("run", flag, str(broken_config(tmp_path)))

    assert result.exit_code == EXIT_CONFIG
    assert "raft.election_ticks" in result.stderr


def test_run_without_config_is_a_usage_error() -> None:
    result = confmand("run")

    assert result.exit_code == USAGE
    assert "--config" in result.stderr


def test_run_refuses_a_positional_path() -> None:
    result = confmand("run", str(SINGLE))

    assert result.exit_code == USAGE


def test_a_config_flag_without_a_command_is_refused() -> None:
    """`confmand --config FILE` (what the example configs once said) names no command."""
    result = confmand("--config", str(SINGLE))

    assert result.exit_code == USAGE


# ------------------------------------------------------------------ what the repository teaches

TEACHING = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "config").rglob("*")),
    *sorted((ROOT / "systemd").glob("*")),
]
# A `confmand` command line, as docs, comments and unit files write it.
COMMAND = re.compile(r"\bconfmand((?:\s+[-\w./:=~]+)+)")


def commands_taught() -> list[tuple[str, str]]:
    found = []
    for path in TEACHING:
        if not path.is_file():
            continue
        for match in COMMAND.finditer(path.read_text()):
            words = match.group(1).split()
            if words and words[0] in {"run", "check-config", "--config", "-c"}:
                found.append((str(path.relative_to(ROOT)), " ".join(words)))
    return found


def test_the_docs_show_run_and_check_config_with_config_only() -> None:
    taught = commands_taught()
    # A bare mention ("`confmand run` exits 2 ...") is fine; a command line must use --config.
    wrong = [
        (path, words)
        for path, words in taught
        if words.split()[0] not in {"run", "check-config"} or words.split()[1:2] not in ([], ["--config"])
    ]

    assert any(words.startswith("run --config") for _, words in taught), taught
    assert not wrong, f"command lines the CLI refuses, or forms we do not document: {wrong}"
