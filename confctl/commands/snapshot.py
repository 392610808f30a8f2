"""`confctl snapshot save FILE` and `confctl snapshot status FILE`: a backup of every shard, and
a check of one (confmand/backup/; restoring is `confmand restore`, docs/deploy.md §8).

The backup modules are imported in the commands, as the client is: `--help` loads neither.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from confctl import __version__
from confctl.commands.common import Env, command
from confctl.exit_codes import ExitCode

if TYPE_CHECKING:
    from confmand.protocol.backup_file import Backup

SHARD_COLUMNS = ["shard", "applied", "bytes", "partitions"]
RETRY_PAUSE_S = 1.0

FileArg = Annotated[Path, typer.Argument(help="The backup file.", show_default=False)]


@command
def save(
    env: Env,
    file: FileArg,
    attempts: Annotated[
        int, typer.Option("--attempts", min=1, help="Rounds to try while a partition move runs.")
    ] = 5,
) -> ExitCode:
    """Back up every shard into FILE, then read it back and verify it.

    Each shard's whole state comes from its leader, linearizable, at that shard's own version.
    The file holds them, the shard map, and one SHA-256 over all.
    Exit code 5 if a partition move kept the shards from agreeing with one map for --attempts rounds.
    Restore with `confmand restore FILE --config NODE.toml` on each node of a new cluster.
    """
    from confctl.backup_files import write_backup  # noqa: PLC0415 (lazy: the module's doc)
    from confmand.protocol.backup_collect import collect  # noqa: PLC0415
    from confmand.protocol.backup_file import BackupError  # noqa: PLC0415

    try:
        backup = collect(
            env.client.backup_shard,
            created_ms=int(time.time() * 1000),
            confman_version=__version__,
            attempts=attempts,
            between=lambda: time.sleep(RETRY_PAUSE_S),
        )
    except BackupError as exc:
        env.renderer.error(str(exc))
        return ExitCode.UNAVAILABLE
    try:
        size = write_backup(file, backup)
    except (OSError, BackupError) as exc:
        env.renderer.error(f"cannot write {file}: {exc}")
        return ExitCode.ERROR
    env.renderer.rows(_shard_rows(backup), SHARD_COLUMNS)
    env.renderer.note(
        f"{file}: {size} bytes, {len(backup.shards)} shards, map epoch {backup.shard_map.epoch}; "
        "read back and verified"
    )
    return ExitCode.OK


@command
def status(env: Env, file: FileArg) -> ExitCode:
    """Check FILE through and through (checksums, every record) and say what it holds.

    Exit code 1 if it is not a whole, readable backup, saying what is wrong.
    """
    from confctl.backup_files import read_backup  # noqa: PLC0415
    from confmand.protocol.backup_file import BackupError  # noqa: PLC0415

    try:
        backup = read_backup(file)
    except BackupError as exc:
        env.renderer.error(f"{file}: {exc}")
        return ExitCode.ERROR
    summary = {
        "file": str(file),
        "created": datetime.fromtimestamp(backup.created_ms / 1000, tz=UTC).isoformat(timespec="seconds"),
        "created_ms": backup.created_ms,
        "confman_version": backup.confman_version,
        "map_epoch": backup.shard_map.epoch,
        "partitions": backup.shard_map.partitions,
        "bytes": file.stat().st_size,
    }
    env.renderer.record_with_rows(summary, "shards", _shard_rows(backup), SHARD_COLUMNS)
    return ExitCode.OK


def _shard_rows(backup: Backup) -> list[dict[str, object]]:
    return [
        {"shard": c.shard, "applied": str(c.applied), "bytes": len(c.state), "partitions": len(c.owns)}
        for c in backup.shards
    ]


def register(app: typer.Typer) -> None:
    group = typer.Typer(no_args_is_help=True, help="Back up every shard to a file; check a backup file.")
    group.command("save")(save)
    group.command("status")(status)
    app.add_typer(group, name="snapshot")
