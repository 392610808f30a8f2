"""`confctl lock NAME -- CMD` and `confctl elect NAME`: a lock or a leadership held on a lease.

`lock` takes the lock NAME (a key; `locks/NAME` when NAME has no `/`: confctl/client/locks.py),
runs CMD with the fencing token in `$CONFMAN_LOCK_TOKEN` and the lock key in `$CONFMAN_LOCK_KEY`,
keeps the lease alive while CMD runs, and gives the lock up when CMD ends, exiting with CMD's
code. If the lock is lost while CMD runs (the lease ended: the cluster was unreachable for the
TTL), CMD is sent SIGTERM and confctl exits 5: anything CMD still writes must be fenced with the
token, which the lock's next holder has made stale.

`elect` campaigns for NAME with `--value` (default: this host and PID) as the leader's name,
prints `leader` with its token once elected, and holds the leadership until Ctrl-C or until it
is lost (exit 5). Who leads is what `confctl get locks/NAME` says.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from confctl.commands.common import Env, UsageProblem, command
from confctl.exit_codes import ExitCode

if TYPE_CHECKING:
    from confctl.client.locks import HeldLock

NameArg = Annotated[str, typer.Argument(help="A key, or a name under locks/.", show_default=False)]
ValueOpt = Annotated[str | None, typer.Option("--value", help="This candidate's name (default: host:pid).")]
TtlOpt = Annotated[int, typer.Option("--ttl-ms", min=1000, max=86_400_000, help="The lock's lease TTL.")]
WaitOpt = Annotated[float | None, typer.Option("--wait", min=0.0, help="Give up after this many seconds.")]


@command
def lock(
    env: Env,
    name: NameArg,
    cmd: Annotated[list[str], typer.Argument(help="The command to run while holding it (after --).")],
    *,
    ttl_ms: TtlOpt = 10_000,
    wait: WaitOpt = None,
) -> ExitCode:
    """Hold the lock NAME while CMD runs; CMD gets the fencing token in $CONFMAN_LOCK_TOKEN."""
    from confctl.client import locks  # noqa: PLC0415  (lazy, as the client is)

    if not cmd:
        raise UsageProblem("give the command to run after --, e.g. confctl lock deploy -- ./deploy.sh")
    key = locks.lock_key(name)
    held = locks.acquire(env.client, key, _owner(), ttl_ms=ttl_ms, wait_s=wait)
    env.renderer.note(f"holding {key} (token {held.token})")
    child_env = {**os.environ, "CONFMAN_LOCK_KEY": key, "CONFMAN_LOCK_TOKEN": str(held.token)}
    try:
        child = subprocess.Popen(cmd, env=child_env)
    except OSError as exc:
        locks.release(env.client, held)
        raise UsageProblem(f"cannot run {cmd[0]!r}: {exc.strerror}") from exc
    lost = _hold_while(env, held, lambda: child.poll() is None)
    if lost:
        child.send_signal(signal.SIGTERM)
        child.wait()
        env.renderer.error(f"lost the lock {key} while the command ran (its lease ended): it was stopped")
        return ExitCode.UNAVAILABLE
    locks.release(env.client, held)
    if child.returncode != 0:
        raise typer.Exit(child.returncode if child.returncode > 0 else ExitCode.ERROR)  # CMD's own code
    return ExitCode.OK


@command
def elect(
    env: Env,
    name: Annotated[
        str, typer.Argument(help="The election: a key, or a name under locks/.", show_default=False)
    ],
    *,
    value: Annotated[
        str | None, typer.Option("--value", help="This candidate's name (default: host:pid).")
    ] = None,
    ttl_ms: TtlOpt = 10_000,
) -> ExitCode:
    """Campaign for NAME; once elected, print it and lead until Ctrl-C (or exit 5 if it is lost)."""
    from confctl.client import locks  # noqa: PLC0415

    key = locks.lock_key(name)
    held = locks.acquire(env.client, key, value or _owner(), ttl_ms=ttl_ms)
    env.renderer.record({"leader": value or _owner(), "key": key, "token": str(held.token)})
    try:
        lost = _hold_while(env, held, lambda: True)
    except KeyboardInterrupt:
        locks.release(env.client, held)
        return ExitCode.OK
    assert lost
    env.renderer.error(f"lost the leadership of {key} (its lease ended)")
    return ExitCode.UNAVAILABLE


def _hold_while(env: Env, held: HeldLock, going: Callable[[], bool]) -> bool:
    """Keep the lock's lease alive while `going()`; True if the lock was lost meanwhile."""
    from confctl.client import locks  # noqa: PLC0415
    from confctl.client.errors import ConfmanError, NotFound  # noqa: PLC0415

    interval = held.ttl_ms / 3000
    while going():
        time.sleep(min(interval, 0.2))
        if time.monotonic() - (held.good_until - held.ttl_ms / 1000) < interval:
            continue
        try:
            locks.keep_alive(env.client, held)
        except NotFound:
            return True
        except ConfmanError:
            if time.monotonic() >= held.good_until:
                return True  # unanswered for the whole TTL: it may have ended
    return False


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def register(app: typer.Typer) -> None:
    app.command("lock")(lock)
    app.command("elect")(elect)
