"""The `confmand` command line: runs and inspects the daemon on this host."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from confmand import __version__

if TYPE_CHECKING:
    from confmand.config import NodeConfig

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


ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="The node's TOML config file.")]


@app.command()
def run(config: ConfigOption) -> None:
    """Run this node until SIGINT or SIGTERM."""
    # Imported here so that `confmand version` and `--help` stay instant.
    from confmand.server.run import run as run_node  # noqa: PLC0415
    from confmand.storage import DataDirError  # noqa: PLC0415

    node_config = _load_or_exit(config)
    try:
        run_node(node_config)
    except DataDirError as exc:
        typer.echo(f"confmand: refusing to run: {exc}", err=True)
        sys.exit(EXIT_DATA_DIR)


# The first form took the path as an argument. It still works (extra arguments are allowed, so
# old scripts keep running) but stays out of the usage line: `--config FILE` is the one
# documented form, as for `run`.
@app.command("check-config", context_settings={"allow_extra_args": True})
def check_config(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="The node's TOML config file.")
    ] = None,
) -> None:
    """Validate a config file and exit (0: valid)."""
    paths = {Path(arg) for arg in ctx.args} | ({config} if config is not None else set())
    if len(ctx.args) > 1 or len(paths) > 1:
        given = ", ".join(str(p) for p in sorted(paths))
        raise typer.BadParameter(f"one config file at a time (got {given})", param_hint="--config")
    if not paths:
        raise typer.BadParameter("which config file to check?", param_hint="--config")
    (path,) = paths
    node_config = _load_or_exit(path)
    typer.echo(f"{path}: valid (node {node_config.node_id} of cluster {node_config.cluster_id!r})")


EXIT_BACKUP = 4  # a backup that is unreadable, damaged or does not fit this config: nothing written


@app.command()
def restore(
    backup: Annotated[Path, typer.Argument(help="A file from `confctl snapshot save`.", show_default=False)],
    config: ConfigOption,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Seed this dir, not the config's data_dir.", show_default=False),
    ] = None,
) -> None:
    """Seed this node's new, empty data dir from a backup, before its first start.

    Run it on every node of the new cluster, each with its own config, then start them: every key
    comes back with its versions, history and audit records, on the new nodes. The config's
    partitions and data_shards must be the backed-up cluster's.
    """
    from confmand.backup.restore import read_backup  # noqa: PLC0415
    from confmand.backup.restore import restore as seed  # noqa: PLC0415
    from confmand.protocol.backup_file import BackupError  # noqa: PLC0415
    from confmand.storage import DataDirError  # noqa: PLC0415

    node_config = _load_or_exit(config)
    target = data_dir or node_config.data_dir
    try:
        restored = seed(read_backup(backup), node_config, target)
    except BackupError as exc:
        typer.echo(f"confmand: restore refused: {backup}: {exc}", err=True)
        sys.exit(EXIT_BACKUP)
    except DataDirError as exc:
        typer.echo(f"confmand: restore refused: {exc}", err=True)
        sys.exit(EXIT_DATA_DIR)
    for shard in restored:
        kind = "meta shard" if shard.shard == 0 else f"shard {shard.shard}"
        typer.echo(f"{kind}: restored at version {shard.applied} ({shard.state_bytes} bytes of state)")
    typer.echo(f"node {node_config.node_id}: {len(restored)} shards in {target}; now `confmand run` it")


def _load_or_exit(path: Path) -> NodeConfig:
    """The node config at `path`; on an invalid one, its message on stderr and exit code 2."""
    from confmand.config import ConfigError, load_config  # noqa: PLC0415

    try:
        return load_config(path)
    except ConfigError as exc:
        typer.echo(f"confmand: {exc}", err=True)
        sys.exit(EXIT_CONFIG)


@app.command("local-cluster")
def local_cluster(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where the nodes' configs, data dirs and logs go (made if missing).")
    ] = Path("data"),
    config_dir: Annotated[
        Path | None,
        typer.Option(
            help="Run the node configs in this folder (one *.toml per node) as they are, "
            "not the local-3 example that ships with confmand.",
            show_default=False,
        ),
    ] = None,
    log_dir: Annotated[
        Path | None, typer.Option(help="Where each node's log goes (default: DIR/logs).", show_default=False)
    ] = None,
) -> None:
    """Start a 3-node cluster on 127.0.0.1 (clients on ports 7101-7103), show confctl status and a
    put/get, then serve until Ctrl-C.

    A node that exits is reported and left down while the others serve (stop one to try a
    failover); kill -USR1 this process to restart the nodes that are down.
    """
    from confmand.local_cluster import ClusterError, run_demo  # noqa: PLC0415

    try:
        sys.exit(run_demo(directory, config_dir, log_dir))
    except ClusterError as exc:
        typer.echo(f"confmand: {exc}", err=True)
        sys.exit(1)


def main() -> None:
    app()
