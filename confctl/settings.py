"""Where confctl finds the cluster: `--endpoints`, else `$CONFMAN_ENDPOINTS`, else `--config FILE`.

The config file is TOML, either a client file with `endpoints = ["tcp://...", ...]`
or a confmand node file: its own `client_address` (top level or under `[node]`)
and the `client_address` of each `[[peers]]` table. Every problem here is a
`SettingsError` (exit code 2, usage): the command line did not say where to go.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from confctl.client.endpoints import is_endpoint, unique

ENV_ENDPOINTS = "CONFMAN_ENDPOINTS"
DEFAULT_TIMEOUT_S = 5.0


class SettingsError(Exception):
    """The endpoints (or the file naming them) are missing or malformed."""


@dataclass(frozen=True, slots=True)
class ClientSettings:
    endpoints: tuple[str, ...]
    timeout_s: float = DEFAULT_TIMEOUT_S
    principal: str | None = None
    cache: str | None = None  # $CONFMAN_CACHE: the file of last good values (confctl/client/cache.py)


def parse_endpoint_list(text: str, source: str) -> tuple[str, ...]:
    endpoints = unique([e.strip() for e in text.split(",") if e.strip()])
    return _checked(endpoints, source)


def _checked(endpoints: tuple[str, ...], source: str) -> tuple[str, ...]:
    if not endpoints:
        raise SettingsError(f"{source} names no endpoints")
    for endpoint in endpoints:
        if not is_endpoint(endpoint):
            raise SettingsError(f"{source}: not an endpoint (want e.g. tcp://10.0.0.1:7101): {endpoint!r}")
    return endpoints


def endpoints_from_config(path: Path) -> tuple[str, ...]:
    import tomllib  # noqa: PLC0415  (its regexes cost ~5 ms to compile: only --config needs it)

    try:
        with path.open("rb") as f:
            doc = tomllib.load(f)
    except OSError as exc:
        raise SettingsError(f"cannot read config {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config {path} is not valid TOML: {exc}") from exc
    return _checked(_endpoints_in(doc, path), f"config {path}")


def _endpoints_in(doc: Mapping[str, object], path: Path) -> tuple[str, ...]:
    listed = doc.get("endpoints")
    if listed is not None:
        if not isinstance(listed, list) or not all(isinstance(e, str) for e in listed):
            raise SettingsError(f"config {path}: endpoints must be a list of strings")
        return unique(listed)
    found: list[str] = []
    node = doc.get("node")
    for table in (doc, node if isinstance(node, dict) else {}):
        own = table.get("client_address")
        if isinstance(own, str):
            found.append(own)
    peers = doc.get("peers", [])
    if not isinstance(peers, list):
        raise SettingsError(f"config {path}: peers must be an array of tables ([[peers]])")
    for peer in peers:
        address = peer.get("client_address") if isinstance(peer, dict) else None
        if not isinstance(address, str):
            raise SettingsError(f"config {path}: every [[peers]] entry needs a client_address")
        found.append(address)
    return unique(found)


def resolve_endpoints(flag: str | None, env: Mapping[str, str], config: Path | None) -> tuple[str, ...]:
    if flag:
        return parse_endpoint_list(flag, "--endpoints")
    if env.get(ENV_ENDPOINTS):
        return parse_endpoint_list(env[ENV_ENDPOINTS], f"${ENV_ENDPOINTS}")
    if config is not None:
        return endpoints_from_config(config)
    raise SettingsError(
        f"no endpoints: pass --endpoints tcp://host:port,..., set ${ENV_ENDPOINTS}, or --config FILE"
    )
