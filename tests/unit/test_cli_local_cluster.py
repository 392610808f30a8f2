"""`confmand local-cluster`: its configs ship in the package, and a node that dies is reported and
left down while the others serve, until asked to restart.

The example configs are found with importlib.resources (what an installed wheel offers: no
checkout), are the same files config/local-3/ shows, and are written out with data dirs under the
chosen folder. The supervisor is exercised on stand-in processes (Python one-liners that exit
with a given code, or wait to be stopped), not on confmand nodes: what it does with a process does
not depend on what the process is.
"""

from __future__ import annotations

import fnmatch
import sys
import tomllib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from confmand.config import load_config
from confmand.local_cluster import (
    EXAMPLE,
    LocalCluster,
    NodeProcess,
    Supervisor,
    describe_exit,
    example_configs,
    write_example,
)

ROOT = Path(__file__).resolve().parents[2]
NODE_FILES = ["node1.toml", "node2.toml", "node3.toml"]


def test_importlib_resources_finds_the_local_3_configs_in_the_confmand_package() -> None:
    folder = resources.files("confmand").joinpath("examples").joinpath(EXAMPLE)
    assert sorted(entry.name for entry in folder.iterdir()) == NODE_FILES
    assert list(example_configs()) == NODE_FILES


def test_the_package_data_globs_take_the_example_configs_into_the_wheel() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["confmand"]
    for name in NODE_FILES:
        assert any(fnmatch.fnmatch(f"examples/{EXAMPLE}/{name}", glob) for glob in globs)


def test_config_local_3_in_the_checkout_is_the_packaged_example() -> None:
    for name, text in example_configs().items():
        assert (ROOT / "config" / EXAMPLE / name).read_text(encoding="utf-8") == text


def test_the_written_configs_are_valid_nodes_with_their_data_dirs_under_the_chosen_folder(
    tmp_path: Path,
) -> None:
    paths = write_example(tmp_path / "cluster")
    configs = [load_config(path) for path in paths]
    assert [c.node_id for c in configs] == [1, 2, 3]
    assert [c.data_dir for c in configs] == [(tmp_path / "cluster" / f"node{i}").resolve() for i in (1, 2, 3)]
    assert [c.client_address for c in configs] == [f"tcp://127.0.0.1:710{i}" for i in (1, 2, 3)]
    assert all(path.parent == tmp_path / "cluster" / "config" for path in paths)


def test_writing_the_example_again_gives_the_same_files(tmp_path: Path) -> None:
    first = [path.read_text() for path in write_example(tmp_path)]
    assert [path.read_text() for path in write_example(tmp_path)] == first


def test_a_folder_whose_path_needs_escaping_in_toml_still_loads(tmp_path: Path) -> None:
    target = tmp_path / 'a "quoted" \\ folder'
    assert load_config(write_example(target)[0]).data_dir == (target / "node1").resolve()


@pytest.mark.parametrize(
    ("returncode", "said"),
    [(3, "exited with code 3"), (0, "exited with code 0"), (-9, "was killed by SIGKILL")],
)
def test_an_exit_is_described_by_its_code_or_its_signal(returncode: int, said: str) -> None:
    assert describe_exit(returncode) == said


# ---------------------------------------------------------------- the supervisor

SERVE = "import sys, time; time.sleep(120)"  # a node that serves until it is stopped


class StandIns:
    """What each node runs instead of confmand: node -> its Python one-liner."""

    def __init__(self) -> None:
        self.code = dict.fromkeys((1, 2, 3), SERVE)

    def argv(self, node: NodeProcess) -> list[str]:
        return [sys.executable, "-c", self.code[node.node_id]]


@pytest.fixture
def stand_ins() -> StandIns:
    return StandIns()


@pytest.fixture
def cluster(tmp_path: Path, stand_ins: StandIns) -> Iterator[LocalCluster]:
    local = LocalCluster(write_example(tmp_path), tmp_path / "logs", argv=stand_ins.argv)
    with local:  # stops every process it started, by PID
        yield local


def exited(cluster: LocalCluster, node_id: int) -> None:
    process = cluster.nodes[node_id].process
    assert process is not None
    process.wait(timeout=30)


def test_a_node_that_exits_is_reported_once_with_its_code_and_log_while_the_others_keep_running(
    cluster: LocalCluster, stand_ins: StandIns
) -> None:
    stand_ins.code[2] = "import sys; sys.exit(3)"
    lines: list[str] = []
    supervisor = Supervisor(cluster, "kill -USR1 42 restarts the nodes that are down", out=lines.append)
    cluster.start()
    exited(cluster, 2)
    assert supervisor.check() == [2]
    assert supervisor.check() == []  # reported once
    (line,) = lines
    assert "node 2" in line
    assert "exited with code 3" in line
    assert str(cluster.nodes[2].log_path) in line
    assert "kill -USR1 42" in line
    assert cluster.nodes[1].alive()
    assert cluster.nodes[3].alive()


def test_restart_starts_only_the_nodes_that_are_down(cluster: LocalCluster, stand_ins: StandIns) -> None:
    stand_ins.code[3] = "import sys; sys.exit(1)"
    supervisor = Supervisor(cluster, "hint", out=lambda line: None)
    cluster.start()
    first_pid = {n: p.process.pid for n, p in cluster.nodes.items() if p.process is not None}
    exited(cluster, 3)
    supervisor.check()
    stand_ins.code[3] = SERVE  # it comes back healthy
    assert supervisor.restart() == [3]
    assert all(node.alive() for node in cluster.nodes.values())
    now_pid = {n: p.process.pid for n, p in cluster.nodes.items() if p.process is not None}
    assert now_pid[1] == first_pid[1]
    assert now_pid[2] == first_pid[2]
    assert now_pid[3] != first_pid[3]


def test_a_restarted_node_that_dies_again_is_reported_again(
    cluster: LocalCluster, stand_ins: StandIns
) -> None:
    stand_ins.code[1] = "import sys; sys.exit(5)"
    lines: list[str] = []
    supervisor = Supervisor(cluster, "hint", out=lines.append)
    cluster.start()
    exited(cluster, 1)
    supervisor.check()
    supervisor.restart()
    exited(cluster, 1)
    assert supervisor.check() == [1]
    assert sum("exited with code 5" in line for line in lines) == 2
