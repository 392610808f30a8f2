"""What every confctl command shares: the global options, the client it talks through, error mapping.

`@command` turns `def cmd(env: Env, ...)` into a typer command that also takes
the global options (`--endpoints`, `--config`, `--timeout`, `--output`,
`--principal`), so they work after the command name as well as before it (a
value given after the command wins). It builds the `Env` (renderer plus a lazily
made client, closed afterwards), and maps every failure to an exit code and one
line on stderr: a command never ends in a traceback. The client comes from the
app's `ClientFactory`, which tests replace with a fake.
"""

from __future__ import annotations

import builtins
import functools
import inspect
import os
import sys
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Concatenate, ParamSpec, Protocol

import typer

from confctl.exit_codes import ExitCode, for_error
from confctl.render import Output, Renderer
from confctl.settings import DEFAULT_TIMEOUT_S, ClientSettings, SettingsError, resolve_endpoints

if TYPE_CHECKING:  # the client's modules load when a command first uses the client
    from confctl.client.types import (
        AuditResult,
        Compare,
        Consistency,
        GetResult,
        HistoryResult,
        LeaseResult,
        ListResult,
        NodeStatus,
        PastListResult,
        PastValue,
        ShardMapResult,
        TxnOp,
        TxnResult,
        Version,
        WatchBatch,
        WriteResult,
    )

P = ParamSpec("P")
CACHE_ENV = "CONFMAN_CACHE"  # a file of last good values: `get --allow-cached` reads it when no node answers
PIPE_CLOSED = 141  # 128 + SIGPIPE: what a shell reports for a command whose reader went away


class UsageProblem(Exception):
    """A command's own input is wrong (an unreadable file, a bad txn document): exit code 2."""


class ClientApi(Protocol):
    """The part of `confctl.client.Client` the CLI uses (a fake implements it in tests)."""

    def put(self, key: str, value: bytes | str, *, lease: int = ...) -> WriteResult: ...
    def lease_grant(self, key: str, ttl_ms: int) -> LeaseResult: ...
    def lease_keepalive(self, key: str, lease: int) -> LeaseResult: ...
    def lease_revoke(self, key: str, lease: int) -> WriteResult: ...
    def get(
        self,
        key: str,
        consistency: Consistency = ...,
        min_version: Version | str | None = ...,
        *,
        allow_cached: bool = ...,
    ) -> GetResult: ...
    def delete(self, key: str) -> WriteResult: ...
    def cas(
        self,
        key: str,
        value: bytes | str,
        expected_version: Version | str | None = ...,
        expected_value: bytes | str | None = ...,
        *,
        lease: int = ...,
    ) -> WriteResult: ...
    def list(
        self,
        prefix: str,
        *,
        after: str | None = ...,
        limit: int = ...,
        keys_only: bool = ...,
        consistency: Consistency = ...,
    ) -> ListResult: ...
    def txn(
        self, compare: Sequence[Compare], success: Sequence[TxnOp], failure: Sequence[TxnOp] = ...
    ) -> TxnResult: ...
    def history(self, key: str, limit: int = ...) -> HistoryResult: ...
    def audit(self, after_hlc: int | None = ..., limit: int = ..., prefix: str = ...) -> AuditResult: ...
    def status_all(self, endpoints: Sequence[str] | None = ...) -> builtins.list[NodeStatus]: ...
    def backup_shard(self, shard: int) -> dict[str, Any]: ...
    def shard_map(self) -> ShardMapResult: ...
    def rollback(
        self, key: str, to_version: Version | str, expected_version: Version | str | None = ...
    ) -> WriteResult: ...
    def get_at(self, key: str, at_version: Version | str) -> PastValue: ...
    def list_at(
        self, prefix: str, at_version: Version | str, *, after: str | None = ..., limit: int = ...
    ) -> PastListResult: ...
    def watch(
        self, prefix: str = ..., *, from_version: str | None = ..., progress_ms: int = ...
    ) -> Generator[WatchBatch, None, None]: ...

    def move_partition(self, partition: int, to_shard: int) -> Version: ...

    def set_replicas(self, shard: int, nodes: Sequence[int]) -> Version: ...
    def add_shard(self, shard: int, nodes: Sequence[int]) -> Version: ...
    def shard_map_all(self, sizes: bool = False) -> builtins.list[ShardMapResult]: ...
    def close(self) -> None: ...


ClientFactory = Callable[[ClientSettings], ClientApi]

EndpointsOpt = Annotated[
    str | None,
    typer.Option(
        "--endpoints", "-e", help="Comma-separated node client addresses (else $CONFMAN_ENDPOINTS)."
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML with endpoints = [...], or a confmand node config."),
]
# These default to None, so that a value given after the command can be told from none given
# (GlobalOptions.over); their help says what None stands for. The bracket is escaped: typer's rich
# help reads "[default: 5]" as markup, and drops it.
TimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--timeout", min=0.001, help=f"Overall seconds per request. \\[default: {DEFAULT_TIMEOUT_S:g}]"
    ),
]
OutputOpt = Annotated[
    Output | None,
    typer.Option("--output", "-o", case_sensitive=False, help="table or json. \\[default: table]"),
]
PrincipalOpt = Annotated[
    str | None, typer.Option("--principal", help="Who is acting (recorded in the audit).")
]


@dataclass(frozen=True, slots=True)
class GlobalOptions:
    endpoints: str | None = None
    config: Path | None = None
    timeout: float | None = None
    output: Output | None = None
    principal: str | None = None

    def over(self, base: GlobalOptions) -> GlobalOptions:
        """These options, falling back to `base` for any not given."""
        return replace(
            base, **{f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        )


_GLOBAL_PARAMS = [
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
    for name, annotation in (
        ("endpoints", EndpointsOpt),
        ("config", ConfigOpt),
        ("timeout", TimeoutOpt),
        ("output", OutputOpt),
        ("principal", PrincipalOpt),
    )
]


# The click context, which typer hands to a parameter annotated typer.Context.
_CTX = inspect.Parameter("confctl_context", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)


@dataclass(slots=True)
class AppState:
    """Stored as the root context's `obj`: how to make a client, and the options given before the command."""

    client_factory: ClientFactory
    options: GlobalOptions = GlobalOptions()


class Env:
    """A running command's renderer and (made on first use) client."""

    def __init__(self, options: GlobalOptions, factory: ClientFactory) -> None:
        self.options = options
        self.renderer = Renderer(options.output or Output.TABLE)
        self._factory = factory
        self._client: ClientApi | None = None

    @property
    def client(self) -> ClientApi:
        if self._client is None:
            try:
                endpoints = resolve_endpoints(self.options.endpoints, os.environ, self.options.config)
            except SettingsError as exc:
                raise UsageProblem(str(exc)) from exc
            settings = ClientSettings(
                endpoints,
                self.options.timeout or DEFAULT_TIMEOUT_S,
                self.options.principal,
                os.environ.get(CACHE_ENV) or None,
            )
            self._client = self._factory(settings)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def command(fn: Callable[Concatenate[Env, P], ExitCode | None]) -> Callable[P, None]:
    """Make `fn(env, ...)` a typer command taking the global options too; map its errors to exit codes."""
    own = list(inspect.signature(fn, eval_str=True).parameters.values())[1:]

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        given = GlobalOptions(**{p.name: kwargs.pop(p.name, None) for p in _GLOBAL_PARAMS})  # type: ignore[arg-type]
        ctx = kwargs.pop(_CTX.name)
        # typer hands over its click context (not a typer.Context instance): duck-type it.
        find_root = getattr(ctx, "find_root", None)
        state = getattr(find_root(), "obj", None) if callable(find_root) else None
        if not isinstance(state, AppState):
            raise RuntimeError("confctl commands run only under confctl's app (see confctl.cli.build_app)")
        env = Env(given.over(state.options), state.client_factory)
        code = run_guarded(env, lambda: fn(env, *args, **kwargs))
        if code != ExitCode.OK:
            raise typer.Exit(code)

    params = [*own, *_GLOBAL_PARAMS, _CTX]
    wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper


def run_guarded(env: Env, body: Callable[[], ExitCode | None]) -> ExitCode:
    """Run a command body; every failure becomes an exit code and one line on stderr."""
    try:
        return body() or ExitCode.OK
    except UsageProblem as exc:
        env.renderer.error(str(exc))
        return ExitCode.USAGE
    except (typer.Exit, typer.Abort, typer.BadParameter):
        raise
    except BrokenPipeError:
        # The reader went away (`confctl ls --all | head`): stop quietly, as a command that
        # SIGPIPE killed would, and keep Python's flush at exit from failing on the same pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(PIPE_CLOSED) from None
    except Exception as exc:
        # Imported here, not at the top: a command that never used the client need not load it.
        from confctl.client.errors import ConfmanError  # noqa: PLC0415

        if isinstance(exc, ConfmanError):
            env.renderer.error(str(exc))
            return for_error(exc)
        env.renderer.error(f"internal error: {type(exc).__name__}: {exc}")  # never a traceback
        return ExitCode.ERROR
    finally:
        try:
            env.close()
        except Exception as exc:  # closing must not hide the command's own outcome
            env.renderer.error(f"while closing the client: {exc}")
