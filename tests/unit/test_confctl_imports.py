"""What confctl loads to start: no client, zmq, asyncio or pydantic until a command needs them.

A structural guard of what keeps a confctl call quick (bench/confctl_latency.py measures the
time): `import confctl.cli`, `confctl version` and shell completion load none of them; a
command that talks to the cluster loads the blocking client and zmq, still not asyncio (only
`AsyncClient` uses it) nor pydantic (confctl.coercion converts the values). Each check runs in a
fresh interpreter: this one has loaded everything long ago.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import confctl.client
from confctl.testing import free_address

NEVER = ("asyncio", "confctl.client.aio", "pydantic")
CLIENT = ("zmq", "msgpack", "confctl.client.sync", "confctl.client.errors", "confmand")


def modules_after(code: str, env: dict[str, str] | None = None) -> set[str]:
    """The modules a fresh interpreter holds after running `code` (which may exit)."""
    script = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: sys.__stderr__.write('MODULES ' + json.dumps(sorted(sys.modules))))\n"
        f"{code}\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )
    marker = done.stderr.rpartition("MODULES ")[2]
    assert marker, f"no module list; exit {done.returncode}: {done.stderr[-2000:]}"
    return set(json.loads(marker))


def run_confctl(*args: str) -> str:
    return f"import sys\nsys.argv = ['confctl', *{list(args)!r}]\nimport confctl.cli\nconfctl.cli.main()"


def test_importing_the_cli_loads_no_client_zmq_asyncio_or_pydantic() -> None:
    loaded = modules_after("import confctl.cli")
    assert "confctl.cli" in loaded
    assert loaded.isdisjoint(NEVER + CLIENT)


def test_confctl_version_runs_without_the_client_or_pydantic() -> None:
    loaded = modules_after(run_confctl("version"))
    assert loaded.isdisjoint(NEVER + CLIENT)


def test_shell_completion_runs_without_the_client_or_pydantic() -> None:
    env = {"_CONFCTL_COMPLETE": "complete_bash", "COMP_WORDS": "confctl get --", "COMP_CWORD": "2"}
    loaded = modules_after(run_confctl(), env)
    assert "confctl.cli" in loaded
    assert loaded.isdisjoint(NEVER + CLIENT)


def test_a_command_that_talks_to_a_node_loads_the_blocking_client_but_not_asyncio_or_pydantic() -> None:
    # A dead endpoint and a short timeout: the call fails fast, having loaded all it needs.
    loaded = modules_after(run_confctl("--endpoints", free_address(), "--timeout", "0.1", "get", "k"))
    assert set(CLIENT) <= loaded
    assert loaded.isdisjoint(NEVER)


def test_every_name_the_client_package_exports_resolves_on_first_use() -> None:
    assert sorted(confctl.client.__all__) == sorted(confctl.client._EXPORTS)
    for name in confctl.client.__all__:
        home = importlib.import_module(confctl.client._EXPORTS[name])
        assert getattr(confctl.client, name) is getattr(home, name)
