"""`confctl watch PREFIX`: print the changes of keys under PREFIX as the cluster applies them.

One line per change, as it comes: `VERSION  TYPE  KEY  VALUE` in a table (no header: it streams),
one JSON object per line with `-o json`. It runs until interrupted (Ctrl-C ends it with exit 0),
or until `--count` changes were printed. The client resumes the watch at another node when its
node goes away, from the last version it was told, so nothing is printed twice or skipped
(docs/protocol.md, *Watches*).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Annotated

import typer

from confctl.commands.common import Env, command
from confctl.render import Output, escape, value_fields

if TYPE_CHECKING:
    from confctl.client.types import WatchBatch, WatchEvent


PrefixArg = Annotated[
    str, typer.Argument(help="Keys under it (a prefix without '/' spans every shard).", show_default=False)
]
FromVersionOpt = Annotated[
    str | None,
    typer.Option("--from-version", help="Start after this version (a prefix with '/': one shard)."),
]
CountOpt = Annotated[int, typer.Option("--count", min=0, help="Stop after this many changes (0: never).")]
ProgressOpt = Annotated[bool, typer.Option("--progress", help="Also print how far each shard was told.")]
ProgressMsOpt = Annotated[
    int, typer.Option("--progress-ms", min=10, max=60_000, help="How often an idle node says how far it is.")
]


@command
def watch(
    env: Env,
    prefix: PrefixArg = "",
    *,
    from_version: FromVersionOpt = None,
    count: CountOpt = 0,
    progress: ProgressOpt = False,
    progress_ms: ProgressMsOpt = 1_000,
) -> None:
    """Print the changes of keys under PREFIX as they are applied, in each shard's log order."""
    printed = 0
    batches = env.client.watch(prefix, from_version=from_version, progress_ms=progress_ms)
    with contextlib.closing(batches), contextlib.suppress(KeyboardInterrupt):
        for batch in batches:
            for event in batch.events:
                _print_event(env, event)
                printed += 1
                if printed == count:
                    return
            if progress:
                _print_progress(env, batch)


def _print_event(env: Env, event: WatchEvent) -> None:
    row = {
        "type": event.type,
        "key": event.key,
        **value_fields(event.value),
        "version": str(event.version),
        "shard": event.shard,
        "hlc": event.hlc,
    }
    if env.renderer.output is Output.JSON:
        env.renderer.rows([row])
        return
    value = "-" if event.value is None else escape(str(row["value"]))
    if row["value_encoding"] == "base64":
        value = "base64:" + value
    env.renderer.out(f"{event.version}  {event.type}  {escape(event.key)}  {value}")


def _print_progress(env: Env, batch: WatchBatch) -> None:
    if env.renderer.output is Output.JSON:
        env.renderer.rows([{"progress": str(batch.progress), "shard": batch.shard}])
    else:
        env.renderer.out(f"# shard {batch.shard} told up to {batch.progress}")


def register(app: typer.Typer) -> None:
    app.command("watch")(watch)
