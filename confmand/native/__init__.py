"""Compiled twins of the hot modules (mypyc), used only while they match the sources exactly.

The Raft core, the peer codec and the driver's per-shard Ready path run once per shard per loop
turn; with many shards per node that interpreter time, not the work per write, is what a node
spends (docs/benchmarks.md, *Session 22*). `python -m confmand.native.build` (run by
`./dev` when a C compiler and Python's headers are present) compiles the modules in `MODULES` with
mypyc into `.native/` at the checkout's root, with a manifest of the sources' SHA-256.

`install()` runs when `confmand` is first imported, before any module listed here. It puts a
finder in front of the import system that loads the compiled twin of a listed module, but only if
every listed source still has the hash the manifest recorded and the build is for this
interpreter; otherwise nothing changes and the pure-Python modules run, which is always correct
(a checkout without a compiler, a source edited since the build). `CONFMAN_NATIVE=0` forces the
pure modules. `STATUS` says which ran and why, for the log and the `status` request.

The compiled code is the same program: mypyc keeps Python's semantics, and adds a check of every
annotated type at each call between modules; the whole test suite runs on whichever is loaded.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

# The hot path: what runs per message and per shard per loop turn, and the state machine's apply
# of every write (a third of the CPU per put while interpreted). Modules with exception classes
# that subclass builtins (raft/errors.py, transport/peer.py, kv's commands, results, codec)
# stay pure: mypyc cannot compile those classes. Tests patch NodeStorage's methods and subclass
# MemoryKVStore, so node_storage.py and kv/store.py stay pure too.
MODULES: tuple[str, ...] = (
    "confmand.kv.changes",
    "confmand.kv.overlay",
    "confmand.kv.partitions",
    "confmand.kv.records",
    "confmand.kv.sessions",
    "confmand.kv.state_machine",
    "confmand.raft.config",
    "confmand.raft.log",
    "confmand.raft.membership",
    "confmand.raft.messages",
    "confmand.raft.node",
    "confmand.raft.progress",
    "confmand.raft.proposals",
    "confmand.raft.quorum",
    "confmand.raft.ready",
    "confmand.raft.reads",
    "confmand.raft.replication",
    "confmand.raft.snapshot_receiver",
    "confmand.raft.status",
    "confmand.raft.storage",
    "confmand.raft.types",
    "confmand.raft.validate",
    "confmand.transport.codec",
    "confmand.server.node",
    "confmand.server.pending",
    "confmand.server.replica",
    "confmand.storage.keys",
    "confmand.storage.records",
    "confmand.storage.shard_storage",
    "confmand.storage.state",
)

CHECKOUT = Path(__file__).resolve().parents[2]
BUILD_DIR = CHECKOUT / ".native"
MANIFEST_NAME = "manifest.json"
ENV_SWITCH = "CONFMAN_NATIVE"


@dataclass(frozen=True, slots=True)
class NativeStatus:
    active: bool
    reason: str  # why compiled or pure, in words an operator reads

    def describe(self) -> str:
        return f"{'compiled (mypyc)' if self.active else 'pure Python'}: {self.reason}"


def source_path(module: str, root: Path = CHECKOUT) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def source_hashes(modules: Sequence[str] = MODULES, root: Path = CHECKOUT) -> dict[str, str]:
    return {m: hashlib.sha256(source_path(m, root).read_bytes()).hexdigest() for m in modules}


def extension_suffix() -> str:
    return importlib.machinery.EXTENSION_SUFFIXES[0]


def check_build(build_dir: Path = BUILD_DIR, root: Path = CHECKOUT) -> tuple[dict[str, Path], str]:
    """The compiled file of each module (empty when the build must not be used) and why."""
    manifest_path = build_dir / MANIFEST_NAME
    if not manifest_path.exists():
        if not (root / "dev").exists():  # an installed package, not a checkout
            return {}, "an installed package: the hot modules are compiled only in a checkout (./dev native)"
        return {}, "no build (./dev native compiles the hot modules)"
    try:
        manifest = json.loads(manifest_path.read_text())
        built: dict[str, str] = manifest["sources"]
        files = {name: build_dir / rel for name, rel in manifest["files"].items()}
        suffix = manifest["suffix"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return {}, f"unreadable build manifest {manifest_path}: {exc!r}"
    if suffix != extension_suffix():
        return {}, f"built for {suffix}, this interpreter loads {extension_suffix()}"
    if set(built) != set(MODULES):
        return {}, "built for another module list: rebuild with ./dev native"
    try:
        current = source_hashes(MODULES, root)
    except OSError as exc:
        return {}, f"cannot read the sources: {exc}"
    stale = sorted(m for m in MODULES if current[m] != built[m])
    if stale:
        return {}, f"sources changed since the build ({', '.join(stale[:3])}...): ./dev native rebuilds"
    missing = sorted(str(p) for p in files.values() if not p.exists())
    if missing:
        return {}, f"build incomplete, missing {missing[0]}"
    return files, f"{len(MODULES)} hot modules built from these sources"


class _CompiledFinder:
    """Finds the compiled file of a listed module (and of mypyc's shared runtime module)."""

    def __init__(self, files: dict[str, Path]) -> None:
        self._files = files

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        file = self._files.get(fullname)
        if file is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(file))
        return importlib.util.spec_from_file_location(fullname, file, loader=loader)


def install() -> NativeStatus:
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return NativeStatus(False, f"{ENV_SWITCH}=0")
    already = sorted(m for m in MODULES if m in sys.modules)
    if already:  # too late to choose: the pure modules are loaded
        return NativeStatus(False, f"{already[0]} was imported before confmand.native")
    files, reason = check_build()
    if not files:
        return NativeStatus(False, reason)
    sys.meta_path.insert(0, _CompiledFinder(files))
    return NativeStatus(True, reason)


STATUS = install()
