"""`confctl diff` and `confctl rollback`: a key's (or a namespace's) past, compared and restored.

Both read the history the cluster keeps (`limits.history_limit` versions per key: docs/protocol.md,
*Reading the past*). `diff KEY V1 [V2]` shows what changed in KEY between two versions (V2: now)
as a unified diff of the values; `diff --prefix P V1 [V2]` does it for every key under P (within
one namespace), naming the keys added and removed. `rollback KEY --to V` writes KEY back to what it
was at V as one new write, guarded by the version KEY is at now (so a change made meanwhile is
never overwritten: exit 4), and the audit log records it as a rollback restoring V.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Annotated

import typer

from confctl.commands.common import Env, UsageProblem, command
from confctl.commands.keys import KeyArg, version_option
from confctl.exit_codes import ExitCode
from confctl.render import value_fields

if TYPE_CHECKING:
    from confctl.client.types import PastValue, Version

OlderArg = Annotated[
    str, typer.Argument(metavar="V1", help="The older version (term:index).", show_default=False)
]
NewerArg = Annotated[str | None, typer.Argument(metavar="[V2]", help="The newer version; default: now.")]
PrefixOpt = Annotated[bool, typer.Option("--prefix", help="KEY is a prefix: compare every key under it.")]
ToOpt = Annotated[
    str, typer.Option("--to", metavar="T:I", help="The version to go back to.", show_default=False)
]
PAGE = 1000


@command
def diff(
    env: Env, key: KeyArg, older: OlderArg, newer: NewerArg = None, *, prefix: PrefixOpt = False
) -> ExitCode:
    """What changed in KEY (or under it, with --prefix) from version V1 to V2.

    Exit 0 if nothing did, 1 if something did (as diff(1) does).
    """
    v1 = _version(older, "V1")
    v2 = None if newer is None else _version(newer, "V2")
    before = _state(env, key, v1, prefix)
    after = _state(env, key, v2, prefix)
    changed = False
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        changed = True
        _show(env, name, (old, new), (str(v1), "now" if v2 is None else str(v2)))
    return ExitCode.ERROR if changed else ExitCode.OK


@command
def rollback(
    env: Env,
    key: KeyArg,
    to: Annotated[
        str, typer.Option("--to", metavar="T:I", help="The version to go back to.", show_default=False)
    ],
) -> ExitCode:
    """Write KEY back to what it was at version --to (deleting it if it was absent then).

    One new write, guarded by the version KEY is at now: if KEY changes in between, nothing is
    written and the exit code is 4 (run it again). The audit log records the rollback and the
    version it restored.
    """
    from confctl.client.errors import NotFound  # noqa: PLC0415  (lazy, as the client is)

    target = _version(to, "--to")
    try:
        current = env.client.get(key).version
    except NotFound:
        current = _absent()
    result = env.client.rollback(key, target, expected_version=current)
    env.renderer.record(
        {
            "key": key,
            "version": str(result.version),
            "prev_version": None if result.prev_version is None else str(result.prev_version),
            "restored": str(target),
        }
    )
    return ExitCode.OK


def _version(text: str, name: str) -> Version:
    version = version_option(text, name)
    assert version is not None
    return version


def _absent() -> Version:
    from confctl.client.types import ABSENT  # noqa: PLC0415

    return ABSENT


def _state(env: Env, key: str, at: Version | None, prefix: bool) -> dict[str, bytes]:
    """KEY's value (or every value under the prefix KEY) at `at` (None: now), absent ones left out."""
    from confctl.client.errors import NotFound  # noqa: PLC0415

    client = env.client
    if not prefix:
        try:
            value = client.get(key).value if at is None else client.get_at(key, at).value
        except NotFound:
            return {}
        return {} if value is None else {key: value}
    if "/" not in key:
        raise UsageProblem("diff --prefix compares within one namespace: give a prefix like 'app/'")
    found: dict[str, bytes] = {}
    after: str | None = None
    while True:
        if at is None:
            page = client.list(key, after=after, limit=PAGE)
            found.update((item.key, item.value or b"") for item in page.items)
        else:
            past = client.list_at(key, at, after=after, limit=PAGE)
            found.update((item.key, item.value or b"") for item in past.items)
            page = past  # type: ignore[assignment]
        if not page.more:
            return found
        after = page.next


def _show(env: Env, name: str, values: tuple[bytes | None, bytes | None], versions: tuple[str, str]) -> None:
    old, new = values
    v1, v2 = versions
    if env.renderer.output.value == "json":
        env.renderer.rows(
            [{"key": name, **value_fields(old, "old"), **value_fields(new, "new"), "from": v1, "to": v2}]
        )
        return
    if old is None:
        env.renderer.out(f"+ {name} (added)")
    elif new is None:
        env.renderer.out(f"- {name} (removed)")
    else:
        env.renderer.out(f"~ {name}")
    lines = difflib.unified_diff(
        _lines(old), _lines(new), fromfile=f"{name}@{v1}", tofile=f"{name}@{v2}", lineterm=""
    )
    for line in lines:
        env.renderer.out(line)


def _lines(value: bytes | None) -> list[str]:
    if value is None:
        return []
    text = value.decode("utf-8", errors="replace")
    return text.splitlines()


def register(app: typer.Typer) -> None:
    app.command("diff")(diff)
    app.command("rollback")(rollback)


__all__ = ["PastValue", "register"]
