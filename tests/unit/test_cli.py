"""The console scripts answer `version` with the package version, run in-process."""

from __future__ import annotations

from importlib.metadata import version as installed_version

import typer
from typer.testing import CliRunner

import confctl
import confctl.cli
import confmand
import confmand.cli


def run(app: typer.Typer, *args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_confmand_version_prints_the_version() -> None:
    assert run(confmand.cli.app, "version").strip() == confmand.__version__


def test_confctl_version_prints_the_version() -> None:
    assert run(confctl.cli.app, "version").strip() == confctl.__version__


def test_both_commands_and_the_installed_distribution_share_one_version() -> None:
    assert confctl.__version__ == confmand.__version__ == installed_version("confman")
