"""`confctl lease grant|keepalive|revoke`: leases, whose keys go when they do (docs/protocol.md, *Leases*).

A lease lives in the shard of a namespace (KEY names it: `locks/`, or any key of it) and holds
keys of that namespace written with `put --lease ID`. Kept alive, it holds; let go (no
keepalive for its TTL) or revoked, its keys are deleted, by one log entry.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer

from confctl.commands.common import Env, command

NamespaceArg = Annotated[
    str, typer.Argument(help="A key of the lease's namespace, e.g. locks/.", show_default=False)
]
LeaseArg = Annotated[
    int, typer.Argument(min=1, help="The lease id (lease grant printed it).", show_default=False)
]


@command
def grant(
    env: Env,
    key: NamespaceArg,
    ttl_ms: Annotated[int, typer.Argument(min=1000, max=86_400_000, help="Its time to live, in ms.")],
) -> None:
    """Grant a lease of TTL_MS in the shard of KEY's namespace; prints its id."""
    result = env.client.lease_grant(key, ttl_ms)
    env.renderer.record({"lease": result.lease, "ttl_ms": result.ttl_ms, "shard": result.meta.shard})


@command
def keepalive(
    env: Env,
    key: NamespaceArg,
    lease: LeaseArg,
    *,
    count: Annotated[int, typer.Option("--count", min=0, help="Keepalives to send (0: until Ctrl-C).")] = 1,
) -> None:
    """Restart the lease's TTL, once or (with --count 0) every third of it until Ctrl-C."""
    sent = 0
    try:
        while True:
            result = env.client.lease_keepalive(key, lease)
            env.renderer.record({"lease": result.lease, "ttl_ms": result.ttl_ms})
            sent += 1
            if sent == count:
                return
            time.sleep(result.ttl_ms / 3000)  # a third of the TTL: two misses still leave time
    except KeyboardInterrupt:
        return


@command
def revoke(env: Env, key: NamespaceArg, lease: LeaseArg) -> None:
    """End the lease now; every key attached to it is deleted."""
    result = env.client.lease_revoke(key, lease)
    env.renderer.record({"lease": lease, "version": str(result.version)})


def register(app: typer.Typer) -> None:
    group = typer.Typer(no_args_is_help=True, help="Leases: keys that live while they are kept alive.")
    group.command("grant")(grant)
    group.command("keepalive")(keepalive)
    group.command("revoke")(revoke)
    app.add_typer(group, name="lease")
