"""The `confctl` command line: operates a Confman cluster through `confctl.client`.

`build_app(client_factory)` assembles the typer app (tests pass a fake
factory); `app` is the real one. The root callback takes the global options;
each command takes them too (see confctl/commands/common.py). `main()` is the
console script: typer reports usage errors (exit 2) and commands map their own
failures; anything that still escapes becomes one line on stderr, exit 1.
"""

from __future__ import annotations

import gc
import sys

import typer

from confctl import __version__
from confctl.coercion import FastTyper
from confctl.commands import (
    cluster,
    keys,
    leases,
    locks,
    nodes,
    past,
    placement,
    snapshot,
    transfer,
    txn,
    watch,
)
from confctl.commands.common import (
    AppState,
    ClientApi,
    ClientFactory,
    ConfigOpt,
    EndpointsOpt,
    Env,
    GlobalOptions,
    OutputOpt,
    PrincipalOpt,
    TimeoutOpt,
    command,
)
from confctl.exit_codes import EPILOG, ExitCode
from confctl.settings import ClientSettings


def real_client(settings: ClientSettings) -> ClientApi:
    # Imported here: zmq and the client cost a third of a call's start, and `version`, `--help`
    # and shell completion need neither (tests/unit/test_confctl_imports.py).
    from confctl.remembering import RememberingClient  # noqa: PLC0415

    return RememberingClient(settings)


@command
def version(env: Env) -> None:
    """Print the version of confctl."""
    env.renderer.scalar("version", __version__)


def build_app(client_factory: ClientFactory = real_client) -> typer.Typer:
    app = FastTyper(
        no_args_is_help=True,
        help="Operate a Confman cluster.",
        epilog=EPILOG,
        pretty_exceptions_enable=False,
    )

    @app.callback()
    def _root(
        ctx: typer.Context,
        *,
        endpoints: EndpointsOpt = None,
        config: ConfigOpt = None,
        timeout: TimeoutOpt = None,
        output: OutputOpt = None,
        principal: PrincipalOpt = None,
    ) -> None:
        """Operate a Confman cluster: keys, transactions, history, audit and node status."""
        ctx.obj = AppState(client_factory, GlobalOptions(endpoints, config, timeout, output, principal))

    for group in (keys, txn, cluster, placement, nodes, snapshot, watch, past, transfer, leases, locks):
        group.register(app)
    app.command("version")(version)
    return app


app = build_app()


def main() -> None:
    # A confctl call is a short process: the cyclic garbage collector, run again and again while
    # the client's modules load, and once more over everything at exit, cost a sixth of a call
    # (bench/confctl_latency.py). The console script alone turns it off; what little garbage a long
    # command (rebalance's polling) leaves goes with the process. Frozen objects are skipped by
    # the collection the interpreter still makes at exit.
    gc.disable()
    try:
        app()
    except Exception as exc:  # commands map their own errors; this is the last line of defence
        typer.echo(f"confctl: internal error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(ExitCode.ERROR)
    finally:
        gc.freeze()
