"""The `confctl` command line: operates a Confman cluster.

Only `version` exists so far; the key and cluster commands arrive with the client.
"""

from __future__ import annotations

import typer

from confctl import __version__

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Operate a Confman cluster.")


@app.callback()
def _root() -> None:
    """Operate a Confman cluster: keys, watches, shards and nodes."""


@app.command()
def version() -> None:
    """Print the version of confctl."""
    typer.echo(__version__)


def main() -> None:
    app()
