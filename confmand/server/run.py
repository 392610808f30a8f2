"""Running a node: logging, the asyncio (uvloop) loop, signals, systemd notification, clean stop.

The loop does nothing but wait for socket input or the next tick and then
run one `Node.turn()`; everything else lives in the node. SIGINT and SIGTERM
stop the loop after the current turn, then sockets and LevelDB are closed, so
a stop never leaves a half-written batch (LevelDB batches are atomic anyway).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket

import uvloop

from confmand import native
from confmand.config import NodeConfig
from confmand.server.gc_tuning import tune_collector
from confmand.server.node import Node
from confmand.server.wiring import LocalNode
from confmand.transport.readiness import SocketWaiter

log = logging.getLogger(__name__)

HAND_OFF_S = 2.0  # how long a stopping leader waits for its successor before it just goes
EXIT_FATAL = 1  # a bug: logged with its traceback; systemd restarts the node


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


async def serve(
    node: Node, waiter: SocketWaiter, stop: asyncio.Event, hand_off_s: float = HAND_OFF_S
) -> None:
    """Turn until `stop`; then, if leading, hand leadership away (bounded) so clients see no gap."""
    try:
        while not stop.is_set():
            await waiter.wait(node.seconds_to_next_turn())
            node.turn()
        if hand_off_s > 0 and node.hand_off_leadership():
            loop = asyncio.get_running_loop()
            deadline = loop.time() + hand_off_s
            while node.leads_any() and loop.time() < deadline:
                await waiter.wait(min(node.seconds_to_next_turn(), deadline - loop.time()))
                node.turn()
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
    notify_systemd("READY=1")
    try:
        await serve(node, SocketWaiter(local.sockets), stop)
    except Exception:
        # Crash-only: a turn that failed half-way leaves no state worth keeping in memory;
        # everything acknowledged is on disk, and a restart (systemd's) recovers from there.
        log.exception("node %d: unexpected error in the loop; stopping", config.node_id)
        raise SystemExit(EXIT_FATAL) from None
    finally:
        notify_systemd("STOPPING=1")
        local.close()
        log.info("node %d stopped", config.node_id)


def run(config: NodeConfig) -> None:
    configure_logging(config.log.level)
    uvloop.run(_main(config))


def notify_systemd(state: str) -> None:
    """sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET, if systemd gave us one."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(address)
            sock.sendall(state.encode())
        except OSError as exc:
            log.warning("could not notify systemd (%s): %s", address, exc)
