"""The client's file of last good values (confctl/client/cache.py), and a get that falls back on it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from confctl.client import Client, Unavailable
from confctl.client.cache import LastGoodCache
from confctl.client.types import GetResult, ReplyMeta, Version

NOWHERE = "tcp://127.0.0.1:9"  # the discard port: nothing answers a protocol request there


def result(key: str, value: bytes) -> GetResult:
    return GetResult(key, value, Version(3, 40), Version(2, 7), 4, ReplyMeta(shard=1))


def test_values_remembered_come_back_from_the_file_in_a_new_process(tmp_path: Path) -> None:
    path = tmp_path / "values"
    cache = LastGoodCache(path, clock=lambda: 100.0)
    cache.remember(result("app/db", b"postgres://db1"))
    cache.flush()

    again = LastGoodCache(path, clock=lambda: 160.0)
    cached = again.recall("app/db")

    assert cached is not None
    assert (cached.value, cached.version, cached.shard) == (b"postgres://db1", Version(3, 40), 1)
    assert again.age_s(cached) == 60.0
    assert [p.name for p in tmp_path.iterdir()] == ["values"]  # no temporary file left behind


def test_a_damaged_file_is_an_empty_cache_and_a_warning_never_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "values"
    path.write_bytes(b"\x93not msgpack at all")

    with caplog.at_level(logging.WARNING):
        cache = LastGoodCache(path)

    assert len(cache) == 0
    assert "damaged" in caplog.text


def test_a_key_the_cluster_says_is_gone_is_forgotten(tmp_path: Path) -> None:
    cache = LastGoodCache(tmp_path / "values")
    cache.remember(result("app/db", b"x"))

    cache.forget("app/db")

    assert cache.recall("app/db") is None


def test_a_get_no_node_answers_returns_the_last_good_value_only_when_allowed_and_says_so(
    tmp_path: Path,
) -> None:
    path = tmp_path / "values"
    seeded = LastGoodCache(path)
    seeded.remember(result("app/db", b"postgres://db1"))
    seeded.flush()
    client = Client([NOWHERE], timeout_s=0.3, cache=path)
    try:
        with pytest.raises(Unavailable):
            client.get("app/db")
        served = client.get("app/db", allow_cached=True)
        with pytest.raises(Unavailable):
            client.get("app/other", allow_cached=True)  # nothing remembered: still a failure
    finally:
        client.close()

    assert served.value == b"postgres://db1"
    assert served.meta.from_cache
    assert served.meta.cached_age_s is not None
    assert served.meta.applied is None  # it claims no read of the cluster
    assert client.served_from_cache == 1
