"""confctl remembers, across processes, which endpoint answered, and starts there next time.

The cache file itself (confctl/endpoint_cache.py): one per endpoint set, under
$XDG_CACHE_HOME/confman, ignored when missing, corrupt or foreign, written atomically, never an
error. Then the client confctl's commands use, against fake nodes over real sockets: a node that
swallows requests at the head of the list is asked once, by the first process only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from confctl import endpoint_cache
from confctl.cli import build_app
from confctl.remembering import RememberingClient
from confctl.settings import ClientSettings
from confctl.testing import FakeCluster, FakeNode

A, B, C = "tcp://10.0.0.1:7101", "tcp://10.0.0.2:7101", "tcp://10.0.0.3:7101"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"XDG_CACHE_HOME": str(tmp_path / "cache"), "HOME": str(tmp_path / "home")}


def test_nothing_is_remembered_at_first(env: dict[str, str]) -> None:
    assert endpoint_cache.load([A, B], env) is None


def test_a_saved_endpoint_is_loaded_for_the_same_endpoints_in_any_order(env: dict[str, str]) -> None:
    endpoint_cache.save([A, B, C], B, env)
    assert endpoint_cache.load([C, A, B], env) == B
    assert endpoint_cache.load([A, B], env) is None  # another list, another file


def test_the_file_lives_under_xdg_cache_home_else_home_dot_cache(env: dict[str, str]) -> None:
    assert endpoint_cache.cache_file([A], env).parent == Path(env["XDG_CACHE_HOME"]) / "confman"
    without_xdg = {"HOME": env["HOME"]}
    assert endpoint_cache.cache_file([A], without_xdg).parent == Path(env["HOME"]) / ".cache" / "confman"


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        '{"endpoints": ["tcp://10.0.0.1:7101"], "answered": 7}',
        '{"endpoints": ["tcp://10.0.0.9:7101", "tcp://10.0.0.1:7101"], "answered": "tcp://10.0.0.1:7101"}',
        '{"endpoints": ["tcp://10.0.0.1:7101"], "answered": "tcp://10.0.0.9:7101"}',
    ],
    ids=["corrupt", "not-an-object", "not-a-string", "another-list", "not-in-the-list"],
)
def test_a_file_that_is_corrupt_or_foreign_is_ignored(env: dict[str, str], content: str) -> None:
    path = endpoint_cache.cache_file([A], env)
    path.parent.mkdir(parents=True)
    path.write_text(content)
    assert endpoint_cache.load([A], env) is None


def test_a_cache_that_cannot_be_written_is_not_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    endpoint_cache.save([A], A, {"XDG_CACHE_HOME": str(blocker)})  # no directory can be made there
    assert endpoint_cache.load([A], {"XDG_CACHE_HOME": str(blocker)}) is None


def test_saving_replaces_the_file_whole_and_leaves_no_temp_file(env: dict[str, str]) -> None:
    endpoint_cache.save([A, B], A, env)
    endpoint_cache.save([A, B], B, env)
    path = endpoint_cache.cache_file([A, B], env)
    assert json.loads(path.read_text()) == {"endpoints": [A, B], "answered": B}
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_only_the_most_recently_saved_files_are_kept(env: dict[str, str]) -> None:
    lists = [[f"tcp://10.0.0.1:{port}"] for port in range(1, endpoint_cache.KEEP_FILES + 3)]
    for i, endpoints in enumerate(lists):
        endpoint_cache.save(endpoints, endpoints[0], env)
        os.utime(endpoint_cache.cache_file(endpoints, env), (i, i))  # distinct, increasing times
    endpoint_cache.save(lists[-1], lists[-1][0], env)  # the save that prunes
    kept = {p.name for p in endpoint_cache.cache_dir(env).iterdir()}
    assert len(kept) == endpoint_cache.KEEP_FILES
    assert endpoint_cache.cache_file(lists[0], env).name not in kept
    assert endpoint_cache.cache_file(lists[-1], env).name in kept


# ---------------------------------------------------------------- the client confctl uses


@pytest.fixture
def silent_then_leader(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Iterator[list[FakeNode]]:
    """Two nodes: the first swallows every request (as a dead node would), the second leads."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    cluster = FakeCluster()
    silent, leader = FakeNode(cluster, 1), FakeNode(cluster, 2, leader=True)
    silent.drop_next = 1_000
    yield [silent, leader]
    for node in (silent, leader):
        node.stop()


def test_a_silent_first_endpoint_is_tried_by_the_first_process_only(
    silent_then_leader: list[FakeNode],
) -> None:
    silent, leader = silent_then_leader
    settings = ClientSettings((silent.address, leader.address), timeout_s=2.0)
    with RememberingClient(settings) as first:
        first.put("k", b"v")
    tried_first = len(silent.requests)
    assert tried_first >= 1
    with RememberingClient(settings) as second:  # a new process, in effect: a new client
        assert second.core.router.first() == leader.address
        assert second.get("k").value == b"v"
    assert len(silent.requests) == tried_first


def test_confctl_commands_remember_the_endpoint_that_answered(silent_then_leader: list[FakeNode]) -> None:
    silent, leader = silent_then_leader
    endpoints = f"{silent.address},{leader.address}"
    result = CliRunner().invoke(build_app(), ["-e", endpoints, "--timeout", "2", "put", "k", "v"])
    assert result.exit_code == 0, result.output
    assert endpoint_cache.load([silent.address, leader.address]) == leader.address
