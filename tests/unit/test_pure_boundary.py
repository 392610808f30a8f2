"""The pure core does no I/O: `confmand.raft`, `confmand.kv` and `confmand.protocol` touch nothing.

Time is `tick()`, randomness is a seeded `random.Random` handed in, storage is an interface.
That is what lets one seed replay a whole cluster in the simulator, so it is checked here on the
source itself (with `ast`, without importing it).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PURE_PACKAGES = (ROOT / "confmand" / "raft", ROOT / "confmand" / "kv", ROOT / "confmand" / "protocol")

FORBIDDEN_MODULES = frozenset(
    {
        "asyncio",
        "datetime",
        "multiprocessing",
        "os",
        "plyvel",
        "secrets",
        "selectors",
        "socket",
        "subprocess",
        "threading",
        "time",
        "uvloop",
        "zmq",
    }
)
ALLOWED_FROM_RANDOM = frozenset({"Random"})


def boundary_violations(source: str, filename: str = "<source>") -> list[str]:
    """Each import of an I/O module, and each use of `random` other than `random.Random`."""
    tree = ast.parse(source, filename=filename)
    found: list[str] = []
    random_names: set[str] = set()  # local names bound to the `random` module itself
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.partition(".")[0]
                if top in FORBIDDEN_MODULES:
                    found.append(f"{filename}:{node.lineno}: import {alias.name}")
                elif alias.name == "random":
                    random_names.add(alias.asname or "random")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            top = node.module.partition(".")[0]
            if top in FORBIDDEN_MODULES:
                found.append(f"{filename}:{node.lineno}: from {node.module} import ...")
            elif node.module == "random":
                found.extend(
                    f"{filename}:{node.lineno}: from random import {alias.name}"
                    for alias in node.names
                    if alias.name not in ALLOWED_FROM_RANDOM
                )
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in random_names
            and node.attr not in ALLOWED_FROM_RANDOM
        ):
            found.append(f"{filename}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


def pure_sources() -> Iterator[Path]:
    for package in PURE_PACKAGES:
        if package.is_dir():
            yield from sorted(package.rglob("*.py"))


def test_the_raft_core_exists_so_the_boundary_check_is_not_vacuous() -> None:
    assert any(path.is_relative_to(PURE_PACKAGES[0]) for path in pure_sources())


def test_pure_packages_import_no_io_module_and_draw_randomness_only_from_a_seeded_random() -> None:
    violations = [
        violation
        for path in pure_sources()
        for violation in boundary_violations(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    ]
    assert violations == [], "the pure core must not do I/O:\n" + "\n".join(violations)


def test_the_protocol_imports_nothing_else_of_confmand_so_the_client_can_import_it_alone() -> None:
    protocol = PURE_PACKAGES[2]
    outside = []
    for path in sorted(protocol.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            outside += [
                f"{path.relative_to(ROOT)}: {name}"
                for name in names
                if name.split(".")[0] == "confmand" and not name.startswith("confmand.protocol")
            ]
    assert any(protocol.rglob("*.py"))
    assert outside == []


def test_the_check_rejects_every_forbidden_module_however_it_is_imported() -> None:
    for module in sorted(FORBIDDEN_MODULES):
        assert boundary_violations(f"import {module}"), module
        assert boundary_violations(f"import {module}.sub as alias"), module
        assert boundary_violations(f"from {module} import anything"), module
        assert boundary_violations(f"from {module}.sub import anything"), module


def test_the_check_allows_a_seeded_random_and_rejects_the_global_random_source() -> None:
    assert boundary_violations("import random\nrng = random.Random(7)") == []
    assert boundary_violations("from random import Random") == []
    assert boundary_violations("import random\nrandom.randint(1, 6)")
    assert boundary_violations("import random as r\nr.seed(1)")
    assert boundary_violations("from random import randint")
    assert boundary_violations("from random import *")


def test_the_check_ignores_relative_imports_and_lookalike_names() -> None:
    assert boundary_violations("from . import time") == []
    assert boundary_violations("import timeouts") == []
    assert boundary_violations("from confmand.raft.types import NodeId") == []
