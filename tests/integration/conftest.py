"""Fixtures for real-process tests: fresh clusters per destructive test, and the no-leftovers check.

Every cluster a fixture hands out is closed by its finalizer (resumed if
paused, then stopped by PID), pass or fail; at the end of the session no
confmand process started here may be alive.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.harness import STARTED, Cluster, ClusterOptions, confmand_children


@pytest.fixture(scope="session", autouse=True)
def _no_confmand_left() -> Iterator[None]:
    yield
    alive = [p.pid for p in STARTED if p.poll() is None]
    for process in STARTED:  # never leave one behind, even when the check below fails
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not alive, f"confmand processes outlived their tests: {alive}"
    assert not confmand_children(), f"confmand children left: {confmand_children()}"


MakeCluster = Callable[..., Cluster]


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[MakeCluster]:
    """`make_cluster(**options)`: a booted cluster in this test's tmp dir, closed at teardown."""
    clusters: list[Cluster] = []

    def make(boot: bool = True, **options: object) -> Cluster:
        cluster = Cluster(tmp_path / f"cluster{len(clusters)}", ClusterOptions(**options))  # type: ignore[arg-type]
        clusters.append(cluster)
        if boot:
            cluster.boot()
        return cluster

    yield make
    for cluster in clusters:
        cluster.close()
