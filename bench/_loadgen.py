"""The Go load generator (bench/loadgen): building it offline, running it, reading what it measured.

One program drives both systems with the same shape (closed loop, N clients
over M connections, one request in flight each, latency from send to reply),
so that neither side's numbers depend on a Python generator's speed. It is
built in GOPATH mode from Debian's Go packages (golang-go,
golang-etcd-server-dev, golang-github-vmihailenco-msgpack.v5-dev) and libzmq
through cgo (libzmq3-dev): no network needed.

`run()` reads the generator's stdout as it goes: it prints `measure` when its
window opens and `end` when it closes, and `run()` calls the caller's
`sample()` at each (the servers' CPU is read there), then the last line, one
JSON object of results. With `samples=True` the generator also writes every
measured reply as (wall-clock ns at the reply, latency ns), read back by
`read_samples`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from bench._cluster import BenchError

REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIR = REPO_ROOT / "bench" / "loadgen"
BUILD_DIR = REPO_ROOT / "build" / "loadgen"
GOPATH = "/usr/share/gocode"
PACKAGES = (
    "golang-go",
    "golang-etcd-server-dev",
    "golang-github-vmihailenco-msgpack.v5-dev",
    "libzmq3-dev",
    "pkg-config",
    "etcd-server",
)
RUN_MARGIN_S = 60.0  # beyond warm-up + duration + drain before a generator counts as hung

T = TypeVar("T")


def missing_tools() -> list[str]:
    """What is missing to build the generator and run etcd (empty: all there)."""
    missing = [tool for tool in ("go", "etcd", "pkg-config") if shutil.which(tool) is None]
    checks = {
        "golang-etcd-server-dev": Path(GOPATH, "src/go.etcd.io/etcd/clientv3"),
        "golang-github-vmihailenco-msgpack.v5-dev": Path(GOPATH, "src/github.com/vmihailenco/msgpack/v5"),
        "libzmq3-dev": Path("/usr/include/zmq.h"),
    }
    missing += [package for package, path in checks.items() if not path.exists()]
    return missing


def build() -> Path:
    """The generator's binary, built if any source is newer than it (BenchError if the build fails)."""
    missing = missing_tools()
    if missing:
        raise BenchError(
            f"missing: {', '.join(missing)}; install with: apt-get install -y {' '.join(PACKAGES)}"
        )
    binary = BUILD_DIR / "loadgen"
    sources = sorted(SOURCE_DIR.glob("*.go"))
    if binary.exists() and all(s.stat().st_mtime <= binary.stat().st_mtime for s in sources):
        return binary
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": GOPATH,
        "GOCACHE": str(BUILD_DIR / "gocache"),
        "GOFLAGS": "",
        "CGO_ENABLED": "1",
    }
    done = subprocess.run(
        ["go", "build", "-o", str(binary), "."],
        cwd=SOURCE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"building bench/loadgen failed:\n{done.stdout}{done.stderr}")
    return binary


@dataclass(frozen=True, slots=True)
class Load:
    """One generator run: which system, which op, how many clients, where each key goes."""

    system: str  # etcd | confman
    op: str  # put | get | serializable | stale | version | mix | preload
    endpoints: Sequence[str]
    key_routes: Sequence[tuple[str, int]]  # (key, index into endpoints)
    clients: int = 256
    conns: int = 4
    value_bytes: int = 100
    warmup_s: float = 2.0
    duration_s: float = 8.0
    drain_s: float = 5.0
    write_fraction: float = 0.1
    min_version: str | None = None
    seed: int = 1


@dataclass(slots=True)
class LoadRun(Generic[T]):
    """The generator's JSON results, the caller's samples at the window's start and end."""

    result: dict[str, Any]
    at_measure: T | None = None
    at_end: T | None = None
    samples: array[int] = field(default_factory=lambda: array("q"))


def run(binary: Path, load: Load, sample: Callable[[], T], samples: bool = False) -> LoadRun[T]:
    """Run the generator once; `sample()` is called as its window opens and as it closes."""
    with tempfile.TemporaryDirectory(prefix="confman-loadgen-") as tmp:
        keys_file = Path(tmp) / "keys.tsv"
        keys_file.write_text("".join(f"{key}\t{index}\n" for key, index in load.key_routes))
        samples_file = Path(tmp) / "samples.bin"
        command = [
            str(binary),
            "-system", load.system,
            "-endpoints", ",".join(load.endpoints),
            "-op", load.op,
            "-clients", str(load.clients),
            "-conns", str(load.conns),
            "-keys-file", str(keys_file),
            "-value-bytes", str(load.value_bytes),
            "-write-fraction", str(load.write_fraction),
            "-warmup", str(load.warmup_s),
            "-duration", str(load.duration_s),
            "-drain", str(load.drain_s),
            "-seed", str(load.seed),
        ]  # fmt: skip
        if load.min_version is not None:
            command += ["-min-version", load.min_version]
        if samples:
            command += ["-samples", str(samples_file)]
        outcome: LoadRun[T] = LoadRun({})
        stderr_path = Path(tmp) / "stderr.txt"  # a file, not a pipe: a chatty run cannot block on it
        with (
            stderr_path.open("w") as stderr_file,
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr_file, text=True) as process,
        ):
            try:
                assert process.stdout is not None
                last = ""
                for raw in process.stdout:
                    line = raw.strip()
                    if line == "measure":
                        outcome.at_measure = sample()
                    elif line == "end":
                        outcome.at_end = sample()
                    elif line:
                        last = line
                process.wait(load.warmup_s + load.duration_s + load.drain_s + RUN_MARGIN_S)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        stderr = stderr_path.read_text(errors="replace")
        if process.returncode != 0 or not last.startswith("{"):
            raise BenchError(
                f"loadgen {load.system} {load.op} failed (exit {process.returncode}):\n{stderr[-2000:]}"
            )
        outcome.result = json.loads(last)
        if samples and samples_file.exists():
            outcome.samples = read_samples(samples_file)
        return outcome


def read_samples(path: Path) -> array[int]:
    """Flat (reply wall-clock ns, latency ns) pairs, as the generator wrote them (little-endian int64)."""
    values = array("q")
    values.frombytes(path.read_bytes())
    if sys.byteorder != "little":
        values.byteswap()
    return values
