"""bench/watch.py's processes: a writer whose puts carry their send time, and a raw-protocol watcher.

Run as `python -m bench._watchers write SPEC_JSON WRITER_INDEX` or `python -m bench._watchers watch
SPEC_JSON` by `bench/watch.py` (subprocesses, as `bench._worker` is run by `bench._load`).

**Writer**: `bench._worker`'s closed loop (the same slots, sessions, sockets, schedule and CPU
accounting), each put's key `w{i}/k` for a random i below `keys`, and its 100-byte value starting
with `STAMP`: the CLOCK_MONOTONIC nanoseconds just before the send and the put's id (writer index,
request id). Its conversation is the worker's (`ready`, one schedule line, one msgpack result);
the result adds the ids of the puts sent in [measure, end) that were acknowledged.

**Watcher**: opens one `watch` per prefix `w{i}/` for i in [first, first + count), spread over
a few DEALER sockets to one node, at most `OPEN_WINDOW` unanswered at once; once every watch
said `created` it writes one JSON line (`{"opened", "open_s", "errors"}`), takes one schedule
line (`idle_start`, `idle_end`, `measure`, `end`, `drain_until`) and receives until
`drain_until`. From each event's value it reads when the put was sent (CLOCK_MONOTONIC is one
clock for every process of the machine), so the delay from send to receipt is computed here and
no bookkeeping crosses processes but the ids. It counts bookmarks (messages with no events) in
the idle window, seq gaps, duplicates, and watches ended by an error, then writes one msgpack map.

Nothing here starts a process; `Children` (used by bench/watch.py) starts them and kills every
one by PID on the way out.
"""

from __future__ import annotations

import json
import os
import random
import resource
import select
import struct
import subprocess
import sys
import time
from array import array
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import msgpack
import zmq

from bench._cluster import BenchError
from bench._worker import RECEIVE_BURST, Worker, WorkerResult, WorkerSpec

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
VALUE_BYTES: Final = 100
STAMP: Final = struct.Struct(">QQ")  # send time (monotonic ns), put id: the value's first 16 bytes
WRITER_SHIFT: Final = 40  # put id = writer index << 40 | request id
OPEN_WINDOW: Final = 1_000  # watch requests unanswered at once: a burst, not a flood, at the node
NS: Final = 1_000_000_000


def watched_key(i: int) -> str:
    """The one key of watcher i: its own namespace, so a node's namespace index finds its watch."""
    return f"w{i}/k"


def watch_prefix(i: int) -> str:
    return f"w{i}/"


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------------------------------- writer


class StampedWriter(Worker):
    """The worker's closed loop of puts (op `put` only), each value stamped with its send time and id."""

    def __init__(self, spec: WorkerSpec, context: zmq.Context[zmq.Socket[bytes]], writer_index: int) -> None:
        super().__init__(spec, context)
        self.writer_index = writer_index
        rng = random.Random(spec.seed)
        self.rng = rng
        self.padding = rng.randbytes(VALUE_BYTES - STAMP.size)
        prefix = os.urandom(8)  # sessions fresh per run, one per slot, as the worker's
        self.client_ids = [prefix + slot.to_bytes(8, "big") for slot in range(spec.slots)]
        self.seqs = [0] * spec.slots
        self.next_id = 1
        self.window = (0.0, 0.0)
        self.acked = array("Q")  # ids of the puts sent in the window that were acknowledged

    def run(self, start: float, measure: float, end: float) -> WorkerResult:
        self.window = (measure, end)  # the base class's drain passes an empty window to _receive
        return super().run(start, measure, end)

    def _send(self, slot: int) -> None:
        rid = self.next_id
        self.next_id += 1
        self.seqs[slot] += 1
        seq = self.seqs[slot]
        key = watched_key(self.rng.randrange(self.spec.keys))
        sent_ns = time.monotonic_ns()
        value = STAMP.pack(sent_ns, self.writer_index << WRITER_SHIFT | rid) + self.padding
        request = {"v": 1, "id": rid, "op": "put", "key": key, "value": value}
        if self.spec.sessions:
            request.update(client_id=self.client_ids[slot], seq=seq, ack=seq)
        self.inflight[rid] = (slot, True, sent_ns / NS)
        self.sockets[slot % len(self.sockets)].send(msgpack.packb(request, use_bin_type=True))
        self.result.sent += 1

    def _receive(self, sock: zmq.Socket[bytes], measure: float, end: float) -> None:
        result = self.result
        first, last = self.window
        for _ in range(RECEIVE_BURST):
            try:
                frame = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            done = time.monotonic()
            reply = msgpack.unpackb(frame, raw=False)
            rid = reply.get("id", -1)
            entry = self.inflight.pop(rid, None)
            if entry is None:
                continue
            slot, _, sent_at = entry
            ok = bool(reply.get("ok"))
            if ok and first <= sent_at < last:
                self.acked.append(self.writer_index << WRITER_SHIFT | rid)
            if measure <= done < end:
                if ok:
                    result.write_latencies_s.append(done - sent_at)
                else:
                    result.errors += 1
                    code = str((reply.get("error") or {}).get("code", "?"))
                    result.error_codes[code] = result.error_codes.get(code, 0) + 1
            if done < end:
                self._send(slot)


def writer_main(spec_json: str, writer_index: int) -> int:
    spec = WorkerSpec.from_json(spec_json)
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    writer = StampedWriter(spec, context, writer_index)
    try:
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        line = sys.stdin.readline()
        if not line:
            return 1  # the parent went away before the start
        schedule = json.loads(line)
        result = writer.run(float(schedule["start"]), float(schedule["measure"]), float(schedule["end"]))
        wire = {"worker": result.to_wire(), "acked": writer.acked.tobytes()}
        sys.stdout.buffer.write(msgpack.packb(wire, use_bin_type=True))
        sys.stdout.flush()
    finally:
        writer.close()
        context.term()
    return 0


@dataclass(frozen=True, slots=True)
class WriterResult:
    worker: WorkerResult
    acked: array[int]

    @classmethod
    def from_wire(cls, data: bytes) -> WriterResult:
        obj: dict[str, Any] = msgpack.unpackb(data, raw=False)
        acked = array("Q")
        acked.frombytes(obj["acked"])
        return cls(WorkerResult.from_wire(obj["worker"]), acked)


# --------------------------------------------------------------------------------------- watcher


@dataclass(frozen=True, slots=True)
class WatcherSpec:
    address: str  # the node every watch of this process goes to
    first: int  # watches w{first}/ .. w{first + count - 1}/
    count: int
    sockets: int
    progress_ms: int
    open_timeout_s: float

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WatcherSpec:
        return cls(**json.loads(text))


@dataclass(slots=True)
class WatcherResult:
    """What one watcher process saw; delays and ids raw, for the parent to merge."""

    opened: int = 0
    open_s: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)  # watches refused or ended, by error code
    seq_gaps: int = 0  # messages of a watch whose seq was not the last one + 1
    messages: int = 0
    bookmarks_idle: int = 0  # messages with no events received in [idle_start, idle_end)
    bookmarks_load: int = 0  # ... in [measure, end)
    events: int = 0  # every event received
    duplicates: int = 0  # events of a put already received
    misrouted: int = 0  # events whose key is not under their watch's prefix
    delays_ns: array[int] = field(default_factory=lambda: array("q"))  # puts sent in [measure, end)
    received: array[int] = field(default_factory=lambda: array("Q"))  # their ids
    cpu_s: float = 0.0  # this process's CPU in [measure, end)

    def to_wire(self) -> bytes:
        obj: dict[str, object] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            obj[name] = value.tobytes() if isinstance(value, array) else value
        return msgpack.packb(obj, use_bin_type=True)

    @classmethod
    def from_wire(cls, data: bytes) -> WatcherResult:
        obj: dict[str, Any] = msgpack.unpackb(data, raw=False)
        delays, received = array("q"), array("Q")
        delays.frombytes(obj.pop("delays_ns"))
        received.frombytes(obj.pop("received"))
        return cls(**obj, delays_ns=delays, received=received)


@dataclass(frozen=True, slots=True)
class WatchSchedule:
    idle_start: float
    idle_end: float
    measure: float
    end: float
    drain_until: float

    def to_json(self) -> str:
        return json.dumps(asdict(self))


class Watcher:
    """The watches of one process over its DEALER sockets, and what their messages say."""

    def __init__(self, spec: WatcherSpec, context: zmq.Context[zmq.Socket[bytes]]) -> None:
        self.spec = spec
        self.sockets: list[zmq.Socket[bytes]] = []
        for _ in range(spec.sockets):
            sock = context.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            # No receive limit here: a queue full on our side would end watches SLOW_WATCHER, and it
            # is the node's cost being measured, not this process's pace (its backlog shows as delay).
            sock.setsockopt(zmq.RCVHWM, 0)
            sock.connect(spec.address)
            self.sockets.append(sock)
        self.poller = zmq.Poller()
        for sock in self.sockets:
            self.poller.register(sock, zmq.POLLIN)
        self.last_seq = array("I", bytes(4 * spec.count))  # per watch: the seq of its last message
        self.seen: set[int] = set()
        self.result = WatcherResult()
        self.schedule: WatchSchedule | None = None
        self.window_ns = (0, 0)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()

    def open_all(self, timeout_s: float) -> None:
        """Send every watch (at most OPEN_WINDOW unanswered) and wait for each one's first message."""
        spec = self.spec
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        sent = answered = 0
        while answered < spec.count:
            while sent < spec.count and sent - answered < OPEN_WINDOW:
                i = spec.first + sent
                request = {"v": 1, "id": i + 1, "op": "watch", "prefix": watch_prefix(i)}
                request["progress_ms"] = spec.progress_ms
                self.sockets[sent % len(self.sockets)].send(msgpack.packb(request, use_bin_type=True))
                sent += 1
            now = time.monotonic()
            if now > deadline:
                raise BenchError(
                    f"{spec.count - answered} of {spec.count} watches unanswered after {timeout_s} s"
                )
            for sock, _ in self.poller.poll(max(1, int((deadline - now) * 1000))):
                answered += self._receive(sock)
        self.result.open_s = time.monotonic() - t0

    def _receive(self, sock: zmq.Socket[bytes]) -> int:
        """Handle the messages queued at `sock`; how many were a watch's first (or its refusal)."""
        firsts = 0
        result = self.result
        schedule = self.schedule
        for _ in range(RECEIVE_BURST):
            try:
                frame = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            now_ns = time.monotonic_ns()
            result.messages += 1
            msg: dict[str, Any] = msgpack.unpackb(frame, raw=False)
            w = int(msg.get("id", 0)) - 1 - self.spec.first
            if not 0 <= w < self.spec.count:
                continue  # not one of ours (cannot happen: one DEALER per connection)
            if not msg.get("ok"):
                code = str((msg.get("error") or {}).get("code", "?"))
                result.errors[code] = result.errors.get(code, 0) + 1
                firsts += 0 if self.last_seq[w] else 1  # a refused open is answered too
                continue
            seq = int(msg.get("seq", 0))
            if seq != self.last_seq[w] + 1:
                result.seq_gaps += 1
            self.last_seq[w] = seq
            if msg.get("created"):
                result.opened += 1
                firsts += 1
            events = msg.get("events") or []
            if not events:
                if not msg.get("created") and schedule is not None:
                    now = now_ns / NS
                    if schedule.idle_start <= now < schedule.idle_end:
                        result.bookmarks_idle += 1
                    elif schedule.measure <= now < schedule.end:
                        result.bookmarks_load += 1
                continue
            self._events(w, events, now_ns)
        return firsts

    def _events(self, w: int, events: list[dict[str, Any]], now_ns: int) -> None:
        result = self.result
        prefix = watch_prefix(self.spec.first + w)
        first_ns, last_ns = self.window_ns
        for event in events:
            result.events += 1
            if not str(event.get("key", "")).startswith(prefix):
                result.misrouted += 1
            value = event.get("value")
            if not isinstance(value, bytes) or len(value) < STAMP.size:
                continue  # not a stamped put (no other writer writes w*/ keys)
            sent_ns, put_id = STAMP.unpack_from(value)
            if put_id in self.seen:
                result.duplicates += 1
                continue
            self.seen.add(put_id)
            if first_ns <= sent_ns < last_ns:
                result.delays_ns.append(now_ns - sent_ns)
                result.received.append(put_id)

    def run(self, stdin_fd: int, read_schedule: Callable[[], WatchSchedule]) -> WatcherResult:
        """Receive until the schedule (read from `stdin_fd` when it comes) says the drain is over."""
        self.poller.register(stdin_fd, zmq.POLLIN)
        cpu_at_measure: float | None = None
        cpu_at_end: float | None = None
        while True:
            now = time.monotonic()
            schedule = self.schedule
            if schedule is not None:
                if cpu_at_measure is None and now >= schedule.measure:
                    cpu_at_measure = _cpu_s()
                if cpu_at_end is None and now >= schedule.end:
                    cpu_at_end = _cpu_s()
                if now >= schedule.drain_until:
                    break
                marks = (schedule.measure, schedule.end, schedule.drain_until)
                wake = min(m for m in marks if m > now)
                timeout_ms = max(1, int((wake - now) * 1000))
            else:
                timeout_ms = 1000
            for sock, _ in self.poller.poll(timeout_ms):
                if sock == stdin_fd:
                    self.poller.unregister(stdin_fd)  # one line, then EOF: never readable for long
                    self.schedule = read_schedule()
                    assert self.schedule is not None
                    self.window_ns = (int(self.schedule.measure * NS), int(self.schedule.end * NS))
                else:
                    assert isinstance(sock, zmq.Socket)
                    self._receive(sock)
        if cpu_at_measure is not None and cpu_at_end is not None:
            self.result.cpu_s = cpu_at_end - cpu_at_measure
        return self.result


def watcher_main(spec_json: str) -> int:
    spec = WatcherSpec.from_json(spec_json)
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    watcher = Watcher(spec, context)

    def read_schedule() -> WatchSchedule:
        line = sys.stdin.buffer.readline()
        if not line:
            raise SystemExit(1)  # the parent went away before the schedule
        return WatchSchedule(**json.loads(line))

    try:
        watcher.open_all(spec.open_timeout_s)
        result = watcher.result
        ready = {"opened": result.opened, "open_s": round(result.open_s, 3), "errors": result.errors}
        sys.stdout.write(json.dumps(ready) + "\n")
        sys.stdout.flush()
        result = watcher.run(sys.stdin.fileno(), read_schedule)
        sys.stdout.buffer.write(result.to_wire())
        sys.stdout.flush()
    finally:
        watcher.close()
        context.term()
    return 0


# ---------------------------------------------------------------------------- the parent's side


class Children:
    """This benchmark's subprocesses; a context manager that kills every one still running by PID."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None and not pipe.closed:
                    pipe.close()

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        """`python -m bench._watchers ARGS...`, its stdin and stdout ours."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench._watchers", *args],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,  # unbuffered: a line read leaves nothing read ahead for read_result to miss
        )
        self.procs.append(proc)
        return proc


def read_line(proc: subprocess.Popen[bytes], timeout_s: float, what: str) -> bytes:
    """The child's next line (stdout is unbuffered, so select() on it tells the truth)."""
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], timeout_s)
    line = proc.stdout.readline() if readable else b""
    if not line:
        raise BenchError(f"{what} said nothing within {timeout_s} s (exit status {proc.poll()}; see stderr)")
    return line


def send_line(proc: subprocess.Popen[bytes], line: str) -> None:
    """Write the child's one input line and close its stdin."""
    assert proc.stdin is not None
    proc.stdin.write(line.encode() + b"\n")
    proc.stdin.close()


def read_result(proc: subprocess.Popen[bytes], timeout_s: float, what: str) -> bytes:
    """All the child writes until it exits (BenchError if it fails or outlives `timeout_s`)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    chunks = []
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        readable, _, _ = select.select([fd], [], [], max(0.0, remaining))
        if not readable:
            raise BenchError(f"{what} did not finish within {timeout_s} s")
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    status = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    data = b"".join(chunks)
    if status != 0 or not data:
        raise BenchError(f"{what} failed (exit status {status}; see stderr)")
    return data


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "write":
        return writer_main(argv[1], int(argv[2]))
    if len(argv) == 2 and argv[0] == "watch":
        return watcher_main(argv[1])
    print("usage: python -m bench._watchers write SPEC_JSON WRITER_INDEX | watch SPEC_JSON", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
