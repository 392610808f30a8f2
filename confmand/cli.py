"""The `confmand` command line: runs and inspects the daemon on this host.

Only `version` exists so far; `run` arrives with the daemon.
"""

from __future__ import annotations

import typer

from confmand import __version__

app = typer.Typer(no_args_is_help=True, add_completion=False, help="The Confman daemon.")


@app.callback()
def _root() -> None:
    """The Confman daemon: one per host, replicating its shards with Raft."""


@app.command()
def version() -> None:
    """Print the version of confmand."""
    typer.echo(__version__)


def main() -> None:
    app()
