"""The daemon's HTTP endpoints, for load balancers and monitoring (docs/daemon.md, *HTTP endpoints*).

    GET /health        200 {"status": "ok", ...}: the process is up and its loop answers
    GET /health/ready  200 or 503 {"ready": ..., "reasons": [...], "shards": {...}} (health.py)
    GET /metrics       the Prometheus text format (metrics.py)

Served by aiohttp on the node's own event loop, between its turns: a handler reads the node as
it stands, never mid-turn, and a loop stuck in a turn answers nothing, so /health fails exactly
when the node cannot serve. Off unless `[http] address` is set in the config.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from confmand import __version__
from confmand.config import HttpSettings
from confmand.server.health import readiness
from confmand.server.metrics import NodeFigures, render

if TYPE_CHECKING:
    from confmand.server.node import Node

log = logging.getLogger(__name__)


class HttpBindError(Exception):
    """The configured HTTP address cannot be served (in use, not an address of this host)."""


def make_app(node: Node) -> web.Application:
    """The endpoints of `node`; its `config.http` is read per request (SIGHUP may change it)."""

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "node_id": node.node_id, "version": __version__})

    async def ready(_: web.Request) -> web.Response:
        is_ready, body = readiness(node, node.config.http.ready_max_lag_entries)
        return web.json_response(body, status=200 if is_ready else 503)

    async def metrics(_: web.Request) -> web.Response:
        figures = NodeFigures.of(node)  # on the loop, between turns: a consistent copy
        response = web.Response(body=await asyncio.to_thread(render, figures))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/metrics", metrics)
    return app


async def start_http(node: Node, settings: HttpSettings) -> web.AppRunner:
    """Serve the endpoints at `settings.address`; the runner's `cleanup()` stops them."""
    host, port = settings.host_port
    runner = web.AppRunner(make_app(node), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise HttpBindError(f"cannot serve HTTP at {settings.address}: {exc.strerror or exc}") from exc
    log.info("HTTP endpoints (/health, /health/ready, /metrics) at http://%s", settings.address)
    return runner
