"""`LastGoodCache`: the last value the cluster gave for each key, kept in a local file.

A service that must boot while the cluster is unreachable reads its config from here: a client
made with `cache=PATH` remembers every `get` that succeeded, and a `get(..., allow_cached=True)`
that finds no node able to answer (`Unavailable`) returns the remembered value instead, marked
`meta.from_cache` with its age (`meta.cached_age_s`). Nothing else changes: without
`allow_cached` a failure is a failure, and a cached answer never claims to be linearizable or
current; it is what the cluster said when it was last asked.

The file is one msgpack map, written whole to a temporary file, fsynced and renamed over the old
one: a crash leaves the old file or the new one, never half of one. It is written at most once a
second while values change (`FLUSH_EVERY_S`) and when the client closes. A file that cannot be
read (missing, damaged, another format) counts as empty, with a warning: the cache is a fallback,
and must never stop a service from starting.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgpack

from confctl.client.errors import ConfmanError, NotFound
from confctl.client.types import GetResult, ReplyMeta, Version

log = logging.getLogger(__name__)

FORMAT: Final = 1
FLUSH_EVERY_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class CachedValue:
    value: bytes
    version: Version
    create_version: Version
    changes: int
    shard: int | None
    saved_at: float  # wall clock seconds (time.time()) when the cluster gave it


class LastGoodCache:
    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._values: dict[str, CachedValue] = self._load()
        self._dirty = False
        self._flushed_at = 0.0

    def __len__(self) -> int:
        return len(self._values)

    def remember(self, result: GetResult) -> None:
        """A value the cluster just gave."""
        self._values[result.key] = CachedValue(
            result.value,
            result.version,
            result.create_version,
            result.changes,
            result.meta.shard,
            self._clock(),
        )
        self._dirty = True
        if self._clock() - self._flushed_at >= FLUSH_EVERY_S:
            self.flush()

    def forget(self, key: str) -> None:
        """The cluster said the key does not exist: a stale value must not outlive it here."""
        if self._values.pop(key, None) is not None:
            self._dirty = True

    def recall(self, key: str) -> CachedValue | None:
        return self._values.get(key)

    def age_s(self, cached: CachedValue) -> float:
        return max(0.0, self._clock() - cached.saved_at)

    def flush(self) -> None:
        """Write the file now if anything changed (atomically: temp file, fsync, rename)."""
        if not self._dirty:
            return
        body = {
            key: [c.value, str(c.version), str(c.create_version), c.changes, c.shard, c.saved_at]
            for key, c in self._values.items()
        }
        data: bytes = msgpack.packb({"format": FORMAT, "values": body}, use_bin_type=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with open(temp, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, self.path)
        except OSError as exc:  # a full disk or a read-only dir: the service goes on without it
            log.warning("cannot write the value cache %s: %s", self.path, exc)
            with contextlib.suppress(OSError):
                temp.unlink()
            return
        self._dirty = False
        self._flushed_at = self._clock()

    def _load(self) -> dict[str, CachedValue]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            log.warning("cannot read the value cache %s: %s (starting empty)", self.path, exc)
            return {}
        try:
            doc = msgpack.unpackb(raw, raw=False)
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise ValueError(f"not a format-{FORMAT} value cache")
            return {key: _entry(fields) for key, fields in doc["values"].items()}
        except Exception as exc:  # damaged in any of msgpack's ways: a fallback must not fail
            log.warning("the value cache %s is damaged (%s): starting empty", self.path, exc)
            return {}


def instead_of_failure(
    cache: LastGoodCache | None, key: str, error: ConfmanError, allow_cached: bool
) -> GetResult:
    """What a `get` that failed with `error` returns: the remembered value, if allowed and the
    failure was no node answering; else `error` is raised. NotFound forgets the key first."""
    if isinstance(error, NotFound):
        if cache is not None:
            cache.forget(key)
        raise error
    cached = cache.recall(key) if cache is not None else None
    if cache is None or cached is None or not (allow_cached and error.retryable):
        raise error
    return cached_result(key, cached, cache.age_s(cached))


def cached_result(key: str, cached: CachedValue, age_s: float) -> GetResult:
    """A remembered value as a `get` result, marked as such (`meta.from_cache`, its age)."""
    meta = ReplyMeta(shard=cached.shard, from_cache=True, cached_age_s=round(age_s, 3))
    return GetResult(key, cached.value, cached.version, cached.create_version, cached.changes, meta)


def _entry(fields: list[Any]) -> CachedValue:
    value, version, create_version, changes, shard, saved_at = fields
    if not isinstance(value, bytes) or not isinstance(changes, int) or not isinstance(saved_at, float | int):
        raise ValueError("a cached value of the wrong shape")
    if shard is not None and not isinstance(shard, int):
        raise ValueError("a cached value of the wrong shape")
    return CachedValue(
        value, Version.parse(version), Version.parse(create_version), changes, shard, float(saved_at)
    )
