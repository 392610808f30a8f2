"""systemd/confmand.service run for real by systemd, in namespaces of the test's own making.

The unit as shipped, with two changes a drop-in and the ExecStart line make for this checkout:
ExecStart runs this checkout's venv, and the interpreter's install dir (under /root here,
which ProtectHome hides) is bound back in read-only. Everything else (the confman user from
sysusers, Type=notify, the watchdog, the hardening, reload, stop) is the shipped unit's.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from confmand.local_cluster import free_ports
from tests.integration.harness import Conn, Writer, wait_until
from tests.integration.systemd_boot import ROOT, BootedSystemd, unavailable

UNIT = "confmand.service"
WHY_NOT = unavailable()
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")


def _unit_text() -> str:
    venv_confmand = Path(sys.executable).parent / "confmand"
    text = (ROOT / "systemd" / UNIT).read_text()
    return re.sub(r"^ExecStart=\S+", f"ExecStart={venv_confmand}", text, flags=re.M)


def _drop_in() -> str:
    interpreter_home = Path(sys.base_prefix).resolve()
    return f"[Service]\nProtectHome=tmpfs\nBindReadOnlyPaths={interpreter_home}\n"


def _config(client_port: int, peer_port: int) -> str:
    return f"""
[node]
cluster_id = "systemd-test"
node_id = 1
data_dir = "/var/lib/confman"

[[peers]]
id = 1
peer_address = "tcp://127.0.0.1:{peer_port}"
client_address = "tcp://127.0.0.1:{client_port}"

[log]
level = "info"
"""


@pytest.fixture
def booted(tmp_path: Path) -> Iterator[tuple[BootedSystemd, Conn]]:
    client_port, peer_port = free_ports(2)
    system = BootedSystemd.start(
        tmp_path / "systemd", UNIT, _unit_text(), _drop_in(), _config(client_port, peer_port)
    )
    conn = Conn(f"tcp://127.0.0.1:{client_port}")
    try:
        yield system, conn
    finally:
        conn.close()
        system.stop()


def test_the_shipped_unit_starts_serves_reloads_and_stops_cleanly_under_systemd(
    booted: tuple[BootedSystemd, Conn],
) -> None:
    system, conn = booted

    def active() -> str | None:
        state = system.show("ActiveState")
        if state == "failed":
            raise AssertionError(f"{UNIT} failed:\n{system.journal()}\n{system.boot_log()}")
        return state if state == "active" else None

    wait_until(active, 60.0, f"{UNIT} active (READY=1 sent)")

    def both_led() -> str | None:
        text = system.show("StatusText")
        return text if text.startswith("leader of 2/2") else None

    status_text = wait_until(both_led, 20.0, "the STATUS= line to show both shards led here")
    user = system.show("User")
    writer = Writer({1: conn.address})  # READY=1 may come while its shards still elect: retried
    put = writer.put("app/under-systemd", b"1", timeout_s=15.0)
    writer.close()
    main_pid = system.show("MainPID")
    reloaded = system.systemctl("reload", UNIT)
    wait_until(lambda: "SIGHUP: reloaded" in system.journal() or None, 20.0, "the reload in the journal")
    stopped = system.systemctl("stop", UNIT)

    assert status_text == "leader of 2/2 shards, 0 lagging, 0 without a leader"
    assert user == "confman"
    assert put is not None
    assert reloaded.returncode == 0, reloaded.stderr
    assert system.show("MainPID") in ("0", ""), "stopped"
    assert stopped.returncode == 0, stopped.stderr
    assert system.show("Result") == "success", system.journal()
    assert system.show("ExecMainStatus") == "0"
    assert main_pid not in ("0", "")
