"""Running a node: logging, the asyncio (uvloop) loop, signals, systemd notification, clean stop.

The loop does nothing but wait for socket input or the next tick and then
run one `Node.turn()`; everything else lives in the node. SIGINT and SIGTERM
stop the loop after the current turn, then sockets and LevelDB are closed, so
a stop never leaves a half-written batch (LevelDB batches are atomic anyway);
SIGHUP re-reads the config between turns (reload.py).
Under systemd the loop also pings the watchdog and reports a STATUS= line
between turns (sd_notify.py).
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import time
from collections.abc import Callable
from typing import Protocol

import uvloop

from confmand import native
from confmand.config import NodeConfig
from confmand.server.gc_tuning import tune_collector
from confmand.server.log_format import configure_logging
from confmand.server.node import Node
from confmand.server.reload import reload_config
from confmand.server.sd_notify import SystemdNotifier
from confmand.server.status import status_line
from confmand.server.wiring import LocalNode
from confmand.storage import DataDirError
from confmand.transport.readiness import SocketWaiter

log = logging.getLogger(__name__)

HAND_OFF_S = 2.0  # how long a stopping leader waits for its successor before it just goes
EXIT_FATAL = 1  # a bug: logged with its traceback; systemd restarts the node


class LoopNode(Protocol):
    """What the loop drives: `Node`, or a test's stand-in."""

    def seconds_to_next_turn(self) -> float: ...
    def turn(self) -> None: ...
    def hand_off_leadership(self) -> bool: ...
    def leads_any(self) -> bool: ...


class Waiter(Protocol):
    async def wait(self, timeout_s: float) -> None: ...
    def close(self) -> None: ...


async def serve(
    node: LoopNode,
    waiter: Waiter,
    stop: asyncio.Event,
    hand_off_s: float = HAND_OFF_S,
    *,
    notifier: SystemdNotifier | None = None,
    status: Callable[[], str] = str,
) -> None:
    """Turn until `stop`; then, if leading, hand leadership away (bounded) so clients see no gap.

    `notifier` is pinged after turns, so a loop stuck inside one goes silent (sd_notify.py);
    `status` makes its STATUS= line."""
    systemd = notifier or SystemdNotifier(None)

    async def one_turn(limit_s: float) -> None:
        ping_s = systemd.seconds_to_ping(time.monotonic())
        await waiter.wait(min(node.seconds_to_next_turn(), ping_s, limit_s))
        node.turn()
        systemd.after_turn(time.monotonic(), status)

    try:
        while not stop.is_set():
            await one_turn(math.inf)
        if hand_off_s > 0 and node.hand_off_leadership():
            systemd.send("STATUS=stopping: handing leadership to peers")
            deadline = time.monotonic() + hand_off_s
            while node.leads_any() and time.monotonic() < deadline:
                await one_turn(deadline - time.monotonic())
    finally:
        waiter.close()


async def _main(config: NodeConfig) -> None:
    local = LocalNode(config)
    node = local.node
    tune_collector()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # Runs on the loop, between turns: the node never sees a config change mid-turn.
    loop.add_signal_handler(signal.SIGHUP, _reload, node, config.limits.max_request_bytes)
    log.info(
        "node %d serving clients at %s, peers at %s, data in %s",
        config.node_id,
        config.client_address,
        config.peer_address,
        config.data_dir,
    )
    log.info("hot modules: %s", native.STATUS.describe())
    if not config.storage.fsync:
        log.warning("fsync is OFF: a crash of this host may lose acknowledged writes (tests/benchmarks only)")
    http = None
    if config.http.address is not None:
        # Imported only when configured: aiohttp is most of a node's start-up imports otherwise.
        from confmand.server.http_endpoints import HttpBindError, start_http  # noqa: PLC0415

        try:
            http = await start_http(node, config.http)
        except HttpBindError as exc:
            log.error("node %d: %s", config.node_id, exc)
            local.close()
            raise SystemExit(EXIT_FATAL) from None
    systemd = SystemdNotifier.from_environ()
    if systemd.watchdog_s is not None:
        log.info("systemd watchdog: pinged every %.1f s from the loop", systemd.watchdog_s / 2)
    # Recovered (the data dir is read, every hosted shard's replica is open and electing or
    # following), sockets bound: ready to serve.
    systemd.ready(f"serving; {status_line(node)}")
    try:
        await serve(
            node, SocketWaiter(local.sockets), stop, notifier=systemd, status=lambda: status_line(node)
        )
    except DataDirError as exc:
        # A peer told this node it lost its state: a restart would not help (exit code 3, which
        # systemd does not restart; cli.py prints the message).
        log.error("node %d: %s", config.node_id, exc)
        raise
    except Exception:
        # Crash-only: a turn that failed half-way leaves no state worth keeping in memory;
        # everything acknowledged is on disk, and a restart (systemd's) recovers from there.
        log.exception("node %d: unexpected error in the loop; stopping", config.node_id)
        raise SystemExit(EXIT_FATAL) from None
    finally:
        systemd.stopping("stopping: closing sockets and storage")
        if http is not None:
            await http.cleanup()
        local.close()
        systemd.close()
        log.info("node %d stopped", config.node_id)


def _reload(node: Node, bound_request_bytes: int) -> None:
    plan = reload_config(node.config, bound_request_bytes)
    if plan is not None:
        configure_logging(plan.config.log.level, plan.config.log.format)
        node.reconfigure(plan.config)


def run(config: NodeConfig) -> None:
    configure_logging(config.log.level, config.log.format)
    uvloop.run(_main(config))
