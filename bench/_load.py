"""The load generator's parent side: start generator processes, give them one schedule, merge results.

`run_load(specs, warmup_s, duration_s, sample)` starts one `bench._worker`
subprocess per spec, waits until every one has connected, hands all of them
the same schedule (start, measure = start + warm-up, end = measure +
duration, on CLOCK_MONOTONIC), calls `sample()` at `measure` and at `end` (the
caller reads the cluster's CPU there), then collects and merges their
results. Every process it starts is killed by PID if anything goes wrong,
including Ctrl-C. `preload` writes the key space once, pipelined, so that
read scenarios find every key.
"""

from __future__ import annotations

import collections
import itertools
import json
import select
import subprocess
import sys
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import msgpack
import zmq

from bench._cluster import BenchError
from bench._worker import VALUE_BYTES, WorkerResult, WorkerSpec, key_name

REPO_ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 30.0
START_MARGIN_S = 0.05  # time for the schedule line to reach every worker before `start`

T = TypeVar("T")


@dataclass(slots=True)
class LoadResult(Generic[T]):
    """All workers' results merged, with the caller's samples at the window's start and end."""

    read_latencies_s: array[float] = field(default_factory=lambda: array("d"))
    write_latencies_s: array[float] = field(default_factory=lambda: array("d"))
    errors: int = 0
    error_codes: dict[str, int] = field(default_factory=dict)
    unanswered: int = 0
    sent: int = 0
    window_s: float = 0.0
    generator_cpu_s: float = 0.0
    generator_processes: int = 0
    sample_at_measure: T | None = None
    sample_at_end: T | None = None

    @property
    def ops(self) -> int:
        return len(self.read_latencies_s) + len(self.write_latencies_s)

    def merge(self, worker: WorkerResult) -> None:
        self.read_latencies_s.extend(worker.read_latencies_s)
        self.write_latencies_s.extend(worker.write_latencies_s)
        self.errors += worker.errors
        for code, count in worker.error_codes.items():
            self.error_codes[code] = self.error_codes.get(code, 0) + count
        self.unanswered += worker.unanswered
        self.sent += worker.sent
        self.window_s = max(self.window_s, worker.window_s)
        self.generator_cpu_s += worker.cpu_s
        self.generator_processes += 1


def run_load(
    specs: Sequence[WorkerSpec], warmup_s: float, duration_s: float, sample: Callable[[], T]
) -> LoadResult[T]:
    """Run one scenario: every spec in its own process, one shared measured window."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for spec in specs:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bench._worker", spec.to_json()],
                    cwd=REPO_ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                )
            )
        for proc in procs:
            _await_ready(proc)
        start = time.monotonic() + START_MARGIN_S
        measure, end = start + warmup_s, start + warmup_s + duration_s
        schedule = json.dumps({"start": start, "measure": measure, "end": end}).encode() + b"\n"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(schedule)
            proc.stdin.close()
        result: LoadResult[T] = LoadResult()
        time.sleep(max(0.0, measure - time.monotonic()))
        result.sample_at_measure = sample()
        time.sleep(max(0.0, end - time.monotonic()))
        result.sample_at_end = sample()
        for proc in procs:
            result.merge(_collect(proc))
        return result
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None and not pipe.closed:
                    pipe.close()


def _await_ready(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    # Nothing is buffered yet, so select() on the pipe says truly whether the line (or EOF) is there.
    readable, _, _ = select.select([proc.stdout], [], [], READY_TIMEOUT_S)
    line = proc.stdout.readline() if readable else b""
    if line.strip() != b"ready":
        status = proc.poll()
        raise BenchError(
            f"a generator process did not get ready within {READY_TIMEOUT_S} s "
            f"(exit status {status}; see stderr)"
        )


def _collect(proc: subprocess.Popen[bytes]) -> WorkerResult:
    assert proc.stdout is not None
    data = proc.stdout.read()
    status = proc.wait()
    if status != 0 or not data:
        raise BenchError(f"a generator process failed (exit status {status}; see stderr)")
    try:
        return WorkerResult.from_wire(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise BenchError(f"a generator process sent an unreadable result: {exc}") from exc


def preload(address: str, keys: int, window: int = 256, timeout_s: float = 30.0, namespaces: int = 0) -> str:
    """Put every key of the key space once (pipelined, `window` in flight); the last write's version.

    A put refused with a retryable error (a shard between leaders: leadership moves to the map's
    preferred leaders in a new cluster's first seconds) is sent again, as a client would.
    """
    value = bytes(VALUE_BYTES)
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock: zmq.Socket[bytes] = context.socket(zmq.DEALER)
    ids = itertools.count(1)
    todo = iter(range(keys))
    again: collections.deque[int] = collections.deque()
    key_of: dict[int, int] = {}  # request id -> key index
    last_version = ""
    deadline = time.monotonic() + timeout_s
    with sock:
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(address)

        def send_next() -> None:
            i = again.popleft() if again else next(todo, None)
            if i is None:
                return
            rid = next(ids)
            key_of[rid] = i
            request = {"v": 1, "id": rid, "op": "put", "key": key_name(i, namespaces), "value": value}
            sock.send(msgpack.packb(request, use_bin_type=True))

        for _ in range(window):
            send_next()
        while key_of:
            if not sock.poll(max(1, int((deadline - time.monotonic()) * 1000))):
                raise BenchError(f"preloading {keys} keys at {address} timed out after {timeout_s} s")
            reply: dict[str, Any] = msgpack.unpackb(sock.recv(), raw=False)
            i = key_of.pop(reply.get("id", -1), None)
            if i is None:
                continue
            if not reply.get("ok"):
                error = reply.get("error") or {}
                if not error.get("retryable") or time.monotonic() > deadline:
                    raise BenchError(f"preload put failed at {address}: {error}")
                again.append(i)
            else:
                last_version = max(last_version, str(reply["version"]), key=_version_index)
            send_next()
    return last_version


def _version_index(token: str) -> int:
    return int(token.partition(":")[2] or 0)
