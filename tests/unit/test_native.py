"""The compiled hot modules (confmand/native): used only when current, and never needed.

A build is used only if every listed source has the hash its manifest recorded and it was built
for this interpreter; anything else leaves the pure modules running. The pure modules must pass
on their own too, since a machine without a compiler runs nothing else.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from confmand import native
from confmand.native import (
    MANIFEST_NAME,
    MODULES,
    check_build,
    extension_suffix,
    source_hashes,
    source_path,
)
from confmand.native.build import NO_TOOLCHAIN

ROOT = Path(__file__).resolve().parents[2]
RAFT_CORE_TESTS = [
    *sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("tests/unit/test_raft_*.py")),
    "tests/unit/test_codec.py",
]


def fake_build(tmp_path: Path, **overrides: object) -> Path:
    """A build directory whose manifest matches the current sources (files are empty stand-ins)."""
    build = tmp_path / "build"
    files = {}
    for module in MODULES:
        rel = Path("lib", *module.split(".")).with_suffix("").as_posix() + extension_suffix()
        (build / rel).parent.mkdir(parents=True, exist_ok=True)
        (build / rel).write_bytes(b"")
        files[module] = rel
    manifest = {"sources": source_hashes(), "files": files, "suffix": extension_suffix(), **overrides}
    (build / MANIFEST_NAME).write_text(json.dumps(manifest))
    return build


def run_python(code: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return result.stdout.strip()


def test_a_build_that_matches_every_source_is_used(tmp_path: Path) -> None:
    files, reason = check_build(fake_build(tmp_path))

    assert set(files) == set(MODULES)
    assert "built from these sources" in reason


def test_a_source_changed_since_the_build_leaves_the_pure_modules_running(tmp_path: Path) -> None:
    hashes = source_hashes()
    hashes["confmand.raft.node"] = "0" * 64

    files, reason = check_build(fake_build(tmp_path, sources=hashes))

    assert files == {}
    assert "confmand.raft.node" in reason
    assert "./dev native" in reason


def test_a_build_for_another_interpreter_is_not_used(tmp_path: Path) -> None:
    files, reason = check_build(fake_build(tmp_path, suffix=".cpython-39-x86_64-linux-gnu.so"))

    assert files == {}
    assert "cpython-39" in reason


def test_an_incomplete_or_unreadable_build_is_not_used(tmp_path: Path) -> None:
    build = fake_build(tmp_path)
    (build / "lib/confmand/raft/log").with_suffix(extension_suffix()).unlink()
    assert check_build(build)[0] == {}

    (build / MANIFEST_NAME).write_text("{not json")
    files, reason = check_build(build)
    assert files == {}
    assert "unreadable" in reason


def test_no_build_at_all_says_how_to_make_one(tmp_path: Path) -> None:
    files, reason = check_build(tmp_path / "absent")

    assert files == {}
    assert "./dev native" in reason


def test_an_installed_package_without_a_build_says_it_is_one(tmp_path: Path) -> None:
    files, reason = check_build(tmp_path / "absent", root=tmp_path)  # no ./dev beside the package

    assert files == {}
    assert reason.startswith("an installed package")


def test_a_machine_without_a_compiler_is_told_what_to_install_and_keeps_the_pure_modules(
    tmp_path: Path,
) -> None:
    build = subprocess.run(
        [sys.executable, "-m", "confmand.native.build"],
        cwd=ROOT,
        env={**os.environ, "CC": str(tmp_path / "no-such-cc")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert build.returncode == NO_TOOLCHAIN
    assert "no C compiler" in build.stderr
    assert "apt-get install gcc" in build.stderr


def test_confman_native_0_runs_the_pure_modules() -> None:
    out = run_python(
        "import confmand.raft.node as n, confmand.native as v; print(v.STATUS.active, n.__file__)",
        CONFMAN_NATIVE="0",
    )

    assert out == f"False {ROOT / 'confmand/raft/node.py'}"


@pytest.mark.skipif(not native.STATUS.active, reason=f"hot modules not compiled: {native.STATUS.reason}")
def test_a_current_build_supplies_every_hot_module() -> None:
    code = (
        "import importlib; from confmand.native import MODULES; "
        "print('\\n'.join(importlib.import_module(m).__file__ for m in MODULES))"
    )

    loaded = run_python(code).splitlines()

    assert len(loaded) == len(MODULES)
    assert all(
        path.startswith(str(native.BUILD_DIR)) and path.endswith(extension_suffix()) for path in loaded
    )


def run_pure(*args: str) -> subprocess.CompletedProcess[str]:
    """`python ARGS` in the checkout with the compiled modules switched off."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, "CONFMAN_NATIVE": "0"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.skipif(not native.STATUS.active, reason="this run is pure Python already")
def test_the_pure_modules_pass_the_raft_core_tests_and_simulator_seeds_on_their_own() -> None:
    core = run_pure("-m", "pytest", "-q", "-p", "no:cacheprovider", *RAFT_CORE_TESTS)
    assert core.returncode == 0, core.stdout[-3000:]

    seeds = run_pure("-m", "tests.sim.run", "--seeds", "12")
    assert seeds.returncode == 0, seeds.stdout[-3000:] + seeds.stderr[-2000:]


def test_no_compiled_function_binds_one_name_to_two_exception_types() -> None:
    # mypyc gives a local one type, from its first binding, where mypy lets each `except ... as`
    # rebind it: compiled, the second handler raised TypeError instead of handling its exception
    # (a stepped clock stopped a node's loop in tests/fault/test_cross_shard_order.py).
    clashes = []
    for module in MODULES:
        for function in ast.walk(ast.parse(source_path(module).read_text())):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            bound: dict[str, str] = {}
            for handler in ast.walk(function):
                if isinstance(handler, ast.ExceptHandler) and handler.name:
                    caught = ast.unparse(handler.type) if handler.type else "BaseException"
                    if bound.setdefault(handler.name, caught) != caught:
                        clashes.append(f"{module}.{function.name}:{handler.lineno} {handler.name}")

    assert clashes == []
