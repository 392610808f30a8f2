"""Key commands: put, get, del, cas, ls, history. Each builds rows for the renderer; nothing prints here."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Annotated

import typer

from confctl.commands.common import Env, UsageProblem, command
from confctl.commands.values import FileOpt, LiteralOpt, ValueArg, read_value
from confctl.render import Output, value_fields

if TYPE_CHECKING:  # the client's modules load when a command first uses the client
    from confctl.client.types import (
        Consistency,
        GetResult,
        ListItem,
        ListResult,
        PastValue,
        Version,
        WriteResult,
    )

KeyArg = Annotated[str, typer.Argument(help="The key, e.g. payments/db/url.", show_default=False)]
LimitOpt = Annotated[int, typer.Option("--limit", "-n", min=1, max=1000, help="At most this many.")]


class ConsistencyChoice(enum.StrEnum):
    LINEARIZABLE = "linearizable"
    VERSION = "version"
    STALE = "stale"


MODES: dict[ConsistencyChoice, Consistency] = {
    ConsistencyChoice.LINEARIZABLE: "linearizable",
    ConsistencyChoice.VERSION: "version",
    ConsistencyChoice.STALE: "stale",
}

ConsistencyOpt = Annotated[
    ConsistencyChoice | None,
    typer.Option(
        "--consistency",
        case_sensitive=False,
        help="linearizable (default; the leader), version (any node at or past --min-version), "
        "stale (any node, at once).",
    ),
]


def _token(v: Version | None) -> str | None:
    return None if v is None else str(v)


def write_row(key: str, result: WriteResult) -> dict[str, object]:
    # A version names an entry of one shard's log: the shard goes beside it.
    return {
        "key": key,
        "shard": result.meta.shard,
        "version": str(result.version),
        "prev_version": _token(result.prev_version),
    }


def get_row(result: GetResult) -> dict[str, object]:
    return {
        "key": result.key,
        **value_fields(result.value),
        "shard": result.meta.shard,
        "version": str(result.version),
        "create_version": str(result.create_version),
        "changes": result.changes,
        "applied": _token(result.meta.applied),
        "staleness_ms": result.meta.staleness_ms,
        **({"from_cache": True, "cached_age_s": result.meta.cached_age_s} if result.meta.from_cache else {}),
    }


def item_row(item: ListItem) -> dict[str, object]:
    return {
        "key": item.key,
        **value_fields(item.value),
        "version": str(item.version),
        "create_version": str(item.create_version),
        "changes": item.changes,
    }


def past_row(past: PastValue) -> dict[str, object]:
    return {
        "key": past.key,
        **value_fields(past.value),
        "version": None if past.version is None else str(past.version),
        "at_version": str(past.at_version),
        "shard": past.meta.shard,
    }


def version_option(text: str | None, name: str) -> Version | None:
    if text is None:
        return None
    from confctl.client.types import Version  # noqa: PLC0415  (lazy, as the client is)

    try:
        return Version.parse(text)
    except ValueError as exc:
        raise UsageProblem(f"{name}: {exc}") from exc


@command
def put(
    env: Env,
    key: KeyArg,
    value: ValueArg = None,
    file: FileOpt = None,
    literal: LiteralOpt = False,
    *,
    lease: Annotated[
        int, typer.Option("--lease", min=0, help="Attach KEY to this lease (confctl lease grant); 0: none.")
    ] = 0,
) -> None:
    """Write KEY = VALUE; prints the new version.

    VALUE '-' reads stdin, as does leaving VALUE out when something is piped in (as etcdctl does).
    --file FILE reads a file. --literal stores VALUE as given, a lone '-' included.
    """
    written = env.client.put(key, read_value(value, file, literal), lease=lease)
    env.renderer.record(write_row(key, written))


@command
def get(
    env: Env,
    key: KeyArg,
    consistency: ConsistencyOpt = None,
    *,
    min_version: Annotated[
        str | None,
        typer.Option("--min-version", metavar="T:I", help="Read at or past this version (implies version)."),
    ] = None,
    print_value_only: Annotated[
        bool,
        typer.Option(
            "--print-value-only",
            help="Print only the value, its bytes as stored, then a newline (as etcdctl does).",
        ),
    ] = False,
    allow_cached: Annotated[
        bool,
        typer.Option(
            "--allow-cached",
            help="If no node answers, print the value last read into $CONFMAN_CACHE (marked from_cache).",
        ),
    ] = False,
    at_version: Annotated[
        str | None,
        typer.Option("--at-version", metavar="T:I", help="KEY as it was at this version (its kept history)."),
    ] = None,
) -> None:
    """Read KEY: its value and versions. Exit code 3 when it does not exist."""
    if print_value_only and env.renderer.output is Output.JSON:
        raise UsageProblem("--print-value-only prints the bare value: leave out -o json")
    at = version_option(at_version, "--at-version")
    if at is not None:
        if consistency is not None or min_version is not None:
            raise UsageProblem(
                "--at-version reads history, linearizably: leave out --consistency/--min-version"
            )
        past = env.client.get_at(key, at)
        if print_value_only:
            env.renderer.raw(past.value or b"")
        else:
            env.renderer.record(past_row(past))
        return
    mode = consistency or (
        ConsistencyChoice.VERSION if min_version is not None else ConsistencyChoice.LINEARIZABLE
    )
    floor = version_option(min_version, "--min-version")
    result = env.client.get(key, consistency=MODES[mode], min_version=floor, allow_cached=allow_cached)
    if result.meta.from_cache:
        env.renderer.note(
            f"no node answered: {key} as last read, {result.meta.cached_age_s:.1f} s ago "
            "(not a read of the cluster)"
        )
    if print_value_only:
        env.renderer.raw(result.value)
    else:
        env.renderer.record(get_row(result))


@command
def delete(env: Env, key: KeyArg) -> None:
    """Delete KEY. Exit code 3 when it does not exist."""
    env.renderer.record(write_row(key, env.client.delete(key)))


@command
def cas(
    env: Env,
    key: KeyArg,
    value: ValueArg = None,
    *,
    expected_version: Annotated[
        str | None,
        typer.Option(
            "--expected-version", metavar="T:I", help="Write only if KEY is at this version (0:0: absent)."
        ),
    ] = None,
    expected_value: Annotated[
        str | None,
        typer.Option("--expected-value", help="Write only if KEY holds this value (as given, '-' too)."),
    ] = None,
    file: FileOpt = None,
    literal: LiteralOpt = False,
) -> None:
    """Compare-and-swap: write KEY = VALUE only if KEY is as expected. Exit code 4 when it is not.

    VALUE comes as for put: '-' (or none, when piped) reads stdin, --file a file, --literal as given.
    """
    if (expected_version is None) == (expected_value is None):
        raise UsageProblem("give exactly one of --expected-version or --expected-value")
    expected = version_option(expected_version, "--expected-version")
    new = read_value(value, file, literal)
    result = env.client.cas(key, new, expected_version=expected, expected_value=expected_value)
    env.renderer.record(write_row(key, result))


@command
def ls(
    env: Env,
    prefix: Annotated[str, typer.Argument(help='List keys starting with this ("" for all).')] = "",
    *,
    limit: LimitOpt = 100,
    after: Annotated[str | None, typer.Option("--after", help="Start after this key (paging).")] = None,
    all_pages: Annotated[bool, typer.Option("--all", help="Follow every page to the end.")] = False,
    keys_only: Annotated[bool, typer.Option("--keys-only", help="Keys and versions, no values.")] = False,
    consistency: ConsistencyOpt = None,
) -> None:
    """List keys under PREFIX, in key order, a page at a time (or --all)."""
    mode = MODES[consistency or ConsistencyChoice.LINEARIZABLE]
    items: list[ListItem] = []
    page: ListResult | None = None
    while page is None or (all_pages and page.more and page.next is not None):
        start = after if page is None else page.next
        page = env.client.list(prefix, after=start, limit=limit, keys_only=keys_only, consistency=mode)
        items.extend(page.items)
    columns = ["key", "version"] if keys_only else ["key", "version", "value"]
    env.renderer.rows([item_row(i) for i in items], columns)
    if page.more and not all_pages and page.next is not None:
        env.renderer.note(f"more keys follow: --after {page.next!r} (or --all)")


@command
def history(env: Env, key: KeyArg, limit: LimitOpt = 100) -> None:
    """The versions of KEY, newest first."""
    result = env.client.history(key, limit=limit)
    rows = [
        {
            "version": str(e.version),
            "op": e.op,
            **value_fields(e.value),
            "hlc": e.hlc,
            "principal": e.principal,
        }
        for e in result.versions
    ]
    env.renderer.rows(rows, ["version", "op", "principal", "hlc", "value"])


def register(app: typer.Typer) -> None:
    app.command("put")(put)
    app.command("get")(get)
    app.command("del")(delete)
    app.command("cas")(cas)
    app.command("ls")(ls)
    app.command("history")(history)
