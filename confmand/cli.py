"""The `confmand` command line: runs and inspects the daemon on this host."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from confmand import __version__

app = typer.Typer(no_args_is_help=True, add_completion=False, help="The Confman daemon.")

EXIT_CONFIG = 2  # a bad config file: nothing was started
EXIT_DATA_DIR = 3  # a data dir that is corrupt, foreign or in use: refused


@app.callback()
def _root() -> None:
    """The Confman daemon: one per host, replicating its shards with Raft."""


@app.command()
def version() -> None:
    """Print the version of confmand."""
    typer.echo(__version__)


@app.command()
def run(
    config: Annotated[Path, typer.Option("--config", "-c", help="The node's TOML config file.")],
) -> None:
    """Run this node until SIGINT or SIGTERM."""
    # Imported here so that `confmand version` and `--help` stay instant.
    from confmand.config import ConfigError, load_config  # noqa: PLC0415
    from confmand.server.run import run as run_node  # noqa: PLC0415
    from confmand.storage import DataDirError  # noqa: PLC0415

    try:
        node_config = load_config(config)
    except ConfigError as exc:
        typer.echo(f"confmand: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    try:
        run_node(node_config)
    except DataDirError as exc:
        typer.echo(f"confmand: refusing to start: {exc}", err=True)
        sys.exit(EXIT_DATA_DIR)


@app.command("check-config")
def check_config(
    config: Annotated[Path, typer.Argument(help="The node's TOML config file.")],
) -> None:
    """Validate a config file and exit (0: valid)."""
    from confmand.config import ConfigError, load_config  # noqa: PLC0415

    try:
        node_config = load_config(config)
    except ConfigError as exc:
        typer.echo(f"confmand: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    typer.echo(f"{config}: valid (node {node_config.node_id} of cluster {node_config.cluster_id!r})")


@app.command("local-cluster")
def local_cluster(
    config_dir: Annotated[Path, typer.Option(help="A folder of node configs, one *.toml per node.")] = Path(
        "config/local-3"
    ),
    log_dir: Annotated[Path, typer.Option(help="Where each node's log goes.")] = Path("data/logs"),
) -> None:
    """Start a local cluster on loopback, show confctl status and a put/get, stop on Ctrl-C."""
    from confmand.local_cluster import ClusterError, run_demo  # noqa: PLC0415

    try:
        sys.exit(run_demo(config_dir, log_dir))
    except ClusterError as exc:
        typer.echo(f"confmand: {exc}", err=True)
        sys.exit(1)


def main() -> None:
    app()
