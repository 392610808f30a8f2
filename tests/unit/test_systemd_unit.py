"""The shipped systemd unit and sysusers file, checked offline by systemd's own tools.

`./dev test` installs Debian's systemd package where it can (root with apt); elsewhere these skip.
The exposure score is recorded in docs/deploy.md.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from confmand.cli import EXIT_CONFIG, EXIT_DATA_DIR

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "confmand.service"
SYSUSERS = ROOT / "systemd" / "confman.sysusers"
INSTALLED_CONFMAND = "/opt/confman/venv/bin/confmand"
MAX_EXPOSURE = 2.0  # systemd-analyze security: "OK" is below 4.0; this unit scores 1.2

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (Debian: systemd)"
)


def _settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            name, value = line.split("=", 1)
            settings.setdefault(name.strip(), []).append(value.strip())
    return settings


@needs_analyze
def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify insists that ExecStart's program exists: point it at this checkout's confmand.
    confmand = Path(sys.executable).parent / "confmand"
    unit = tmp_path / "confmand.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED_CONFMAND, str(confmand)))

    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )

    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@needs_analyze
def test_the_unit_is_hardened_to_an_ok_exposure_score() -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(UNIT)],
        capture_output=True,
        text=True,
        check=False,
    )

    found = re.search(r"Overall exposure level for confmand.service: ([\d.]+)", result.stdout + result.stderr)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers not installed")
def test_the_sysusers_file_creates_the_user_the_unit_runs_as(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    settings = _settings(UNIT.read_text())

    subprocess.run(["systemd-sysusers", f"--root={tmp_path}", str(SYSUSERS)], capture_output=True, check=True)

    passwd = (tmp_path / "etc/passwd").read_text().splitlines()
    users = {line.split(":")[0]: line.split(":") for line in passwd}
    groups = {line.split(":")[0] for line in (tmp_path / "etc/group").read_text().splitlines()}
    (user,) = settings["User"]
    (group,) = settings["Group"]
    assert user in users
    assert group in groups
    assert users[user][6] == "/usr/sbin/nologin"


def test_the_unit_is_a_watched_notify_service_that_stops_restarting_on_a_bad_config_or_data_dir() -> None:
    settings = _settings(UNIT.read_text())

    assert settings["Type"] == ["notify"]
    assert settings["NotifyAccess"] == ["main"]
    assert int(settings["WatchdogSec"][0]) > 0
    assert settings["Restart"] == ["on-failure"]
    assert set(settings["RestartPreventExitStatus"][0].split()) == {str(EXIT_CONFIG), str(EXIT_DATA_DIR)}
    assert settings["StateDirectory"] == ["confman"]
    assert settings["ConfigurationDirectory"] == ["confman"]
    assert settings["ExecStart"][0].startswith(INSTALLED_CONFMAND + " run --config /etc/confman/")
