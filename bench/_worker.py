"""One load-generator process: closed-loop logical clients over a few DEALER sockets.

Run as `python -m bench._worker SPEC_JSON` by `bench._load` (a subprocess,
not multiprocessing, so nothing crosses a process boundary as a pickle). The
conversation on its stdin/stdout, all of it:

1. the worker connects its sockets, then writes the line `ready`;
2. the parent writes one JSON line, the schedule: `{"start", "measure", "end"}`
   in `time.monotonic()` seconds (CLOCK_MONOTONIC, shared by all processes);
3. the worker sends until `end`, counting only replies received in
   [measure, end) (the warm-up before `measure` is excluded), then drains
   what is still in flight (up to `drain_s`) and writes ONE msgpack map, the
   `WorkerResult`, to stdout and exits.

Closed loop: each slot (a logical client, or one lane of a pipelined client)
has exactly one request outstanding and sends the next as soon as its reply
arrives. Each slot is its own session (`client_id`, `seq`), so its writes are
exactly-once like a real client's. Its own CPU use in the window is measured
with `getrusage(RUSAGE_SELF)` so the report can say whether the generator was
the bottleneck.
"""

from __future__ import annotations

import json
import os
import random
import resource
import sys
import time
from array import array
from dataclasses import asdict, dataclass, field
from typing import Any

import msgpack
import zmq

SCENARIO_OPS = ("put", "get", "version", "stale", "mix", "ping")
KEY_PREFIX = "bench/k"  # + 9 digits: 16-byte keys
VALUE_BYTES = 128
RECEIVE_BURST = 256


def key_name(i: int, namespaces: int = 0) -> str:
    """Key i: all in one namespace (`bench/`), or spread round-robin over `namespaces` of them."""
    if namespaces:
        return f"n{i % namespaces:05d}/k{i:09d}"
    return f"{KEY_PREFIX}{i:09d}"


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What one generator process does; travels as JSON on the command line."""

    op: str  # one of SCENARIO_OPS
    addresses: list[str]  # one DEALER per entry (slots are spread round-robin over them)
    slots: int  # logical clients x pipeline depth: requests outstanding at once
    keys: int  # key space: key_name(0) .. key_name(keys - 1)
    write_fraction: float = 0.1  # for "mix": the share of puts
    min_version: str | None = None  # for "version"
    seed: int = 1
    drain_s: float = 5.0
    sessions: bool = True
    namespaces: int = 0  # keys spread over this many namespaces (0: all in `bench/`)
    # Per key, the index in `addresses` of the node to send it to (its shard's leader); None: by slot.
    key_socket: list[int] | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        spec = cls(**json.loads(text))
        if spec.op not in SCENARIO_OPS:
            raise ValueError(f"unknown op {spec.op!r} (want one of {', '.join(SCENARIO_OPS)})")
        if spec.slots < 1 or spec.keys < 1 or not spec.addresses:
            raise ValueError("a worker needs slots >= 1, keys >= 1 and at least one address")
        if spec.op == "version" and not spec.min_version:
            raise ValueError("op 'version' needs min_version")
        return spec


@dataclass(slots=True)
class WorkerResult:
    """What one generator process measured in the window (latencies in seconds, raw)."""

    read_latencies_s: array[float] = field(default_factory=lambda: array("d"))
    write_latencies_s: array[float] = field(default_factory=lambda: array("d"))
    errors: int = 0
    error_codes: dict[str, int] = field(default_factory=dict)
    unanswered: int = 0  # still in flight after the drain: lost or stuck requests
    sent: int = 0
    window_s: float = 0.0
    cpu_s: float = 0.0  # this process's CPU in the window

    def to_wire(self) -> bytes:
        return msgpack.packb(
            {
                "read_latencies_s": self.read_latencies_s.tobytes(),
                "write_latencies_s": self.write_latencies_s.tobytes(),
                "errors": self.errors,
                "error_codes": self.error_codes,
                "unanswered": self.unanswered,
                "sent": self.sent,
                "window_s": self.window_s,
                "cpu_s": self.cpu_s,
            },
            use_bin_type=True,
        )

    @classmethod
    def from_wire(cls, data: bytes) -> WorkerResult:
        obj: dict[str, Any] = msgpack.unpackb(data, raw=False)
        reads, writes = array("d"), array("d")
        reads.frombytes(obj["read_latencies_s"])
        writes.frombytes(obj["write_latencies_s"])
        return cls(
            reads,
            writes,
            int(obj["errors"]),
            {str(k): int(v) for k, v in obj["error_codes"].items()},
            int(obj["unanswered"]),
            int(obj["sent"]),
            float(obj["window_s"]),
            float(obj["cpu_s"]),
        )


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Requests:
    """Builds the next request frame of a slot; knows the scenario's op mix."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.value = self.rng.randbytes(VALUE_BYTES)
        self.key_names = [key_name(i, spec.namespaces) for i in range(spec.keys)]
        # Sessions: a distinct client id per slot, fresh per run (a reused id with seq 1 is SESSION_EXPIRED);
        # closed loop, so every seq below the next one was answered.
        prefix = os.urandom(8)
        self.client_ids = [prefix + slot.to_bytes(8, "big") for slot in range(spec.slots)]
        self.seqs = [0] * spec.slots
        self.next_id = 1

    def build(self, slot: int) -> tuple[int, bool, bytes, int]:
        """(request id, is a write, frame, key index: -1 for a ping)."""
        rid = self.next_id
        self.next_id += 1
        spec = self.spec
        op = spec.op
        if op == "ping":
            return rid, False, msgpack.packb({"v": 1, "id": rid, "op": "ping"}), -1
        index = self.rng.randrange(spec.keys)
        key = self.key_names[index]
        write = op == "put" or (op == "mix" and self.rng.random() < spec.write_fraction)
        request: dict[str, Any]
        if write:
            request = {"v": 1, "id": rid, "op": "put", "key": key, "value": self.value}
            if spec.sessions:
                self.seqs[slot] += 1
                seq = self.seqs[slot]
                request.update(client_id=self.client_ids[slot], seq=seq, ack=seq)
        elif op == "version":
            request = {"v": 1, "id": rid, "op": "get", "key": key, "consistency": "version"}
            request["min_version"] = spec.min_version
        elif op == "stale":
            request = {"v": 1, "id": rid, "op": "get", "key": key, "consistency": "stale"}
        else:
            request = {"v": 1, "id": rid, "op": "get", "key": key}  # linearizable: the default
        return rid, write, msgpack.packb(request, use_bin_type=True), index


class Worker:
    """The closed loop over this process's sockets."""

    def __init__(self, spec: WorkerSpec, context: zmq.Context[zmq.Socket[bytes]]) -> None:
        self.spec = spec
        self.requests = _Requests(spec)
        self.sockets: list[zmq.Socket[bytes]] = []
        for address in spec.addresses:
            sock = context.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(address)
            self.sockets.append(sock)
        self.inflight: dict[int, tuple[int, bool, float]] = {}  # id -> (slot, write, sent at)
        self.result = WorkerResult()

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()

    def _send(self, slot: int) -> None:
        rid, write, frame, index = self.requests.build(slot)
        self.inflight[rid] = (slot, write, time.monotonic())
        routes = self.spec.key_socket
        target = routes[index] if routes is not None and index >= 0 else slot % len(self.sockets)
        self.sockets[target].send(frame)
        self.result.sent += 1

    def run(self, start: float, measure: float, end: float) -> WorkerResult:
        time.sleep(max(0.0, start - time.monotonic()))
        for slot in range(self.spec.slots):
            self._send(slot)
        poller = zmq.Poller()
        for sock in self.sockets:
            poller.register(sock, zmq.POLLIN)
        cpu_at_measure: float | None = None
        while (now := time.monotonic()) < end:
            if cpu_at_measure is None and now >= measure:
                cpu_at_measure = _cpu_s()
            wake = end if cpu_at_measure is not None else min(end, measure)
            for sock, _ in poller.poll(max(1, int((wake - now) * 1000))):
                self._receive(sock, measure, end)
        result = self.result
        result.cpu_s = _cpu_s() - (cpu_at_measure if cpu_at_measure is not None else _cpu_s())
        result.window_s = end - measure
        self._drain(poller)
        result.unanswered = len(self.inflight)
        return result

    def _receive(self, sock: zmq.Socket[bytes], measure: float, end: float) -> None:
        result = self.result
        for _ in range(RECEIVE_BURST):
            try:
                frame = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            done = time.monotonic()
            reply = msgpack.unpackb(frame, raw=False)
            entry = self.inflight.pop(reply.get("id", -1), None)
            if entry is None:
                continue  # not ours (cannot happen with one DEALER per worker; ignored, not fatal)
            slot, write, sent_at = entry
            if measure <= done < end:
                if reply.get("ok"):
                    (result.write_latencies_s if write else result.read_latencies_s).append(done - sent_at)
                else:
                    result.errors += 1
                    code = str((reply.get("error") or {}).get("code", "?"))
                    result.error_codes[code] = result.error_codes.get(code, 0) + 1
            if done < end:
                self._send(slot)

    def _drain(self, poller: zmq.Poller) -> None:
        """Wait (bounded) for the replies still in flight: requests never answered are counted."""
        deadline = time.monotonic() + self.spec.drain_s
        while self.inflight and (now := time.monotonic()) < deadline:
            for sock, _ in poller.poll(max(1, int((deadline - now) * 1000))):
                self._receive(sock, 0.0, 0.0)  # an empty window: nothing counted, nothing re-sent


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bench._worker SPEC_JSON", file=sys.stderr)
        return 2
    spec = WorkerSpec.from_json(argv[0])
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    worker = Worker(spec, context)
    try:
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        line = sys.stdin.readline()
        if not line:
            return 1  # the parent went away before the start
        schedule = json.loads(line)
        result = worker.run(float(schedule["start"]), float(schedule["measure"]), float(schedule["end"]))
        sys.stdout.buffer.write(result.to_wire())
        sys.stdout.flush()
    finally:
        worker.close()
        context.term()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
