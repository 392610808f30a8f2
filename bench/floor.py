"""The floor of this machine: what one fsync, one ZeroMQ round trip and one msgpack codec pass cost.

No daemon can beat these numbers on the same machine; docs/benchmarks.md sets
the daemon's numbers beside them. Three measurements:

- **fsync**: one plyvel WriteBatch of ~200 bytes (a 16-byte key and a 184-byte
  value) written with `sync=True` into a fresh LevelDB in a temp dir
  (`--base-dir`, default $TMPDIR: put it on the disk the daemon uses),
  `--fsync-ops` times, one after another: p50/p99 and writes per second.
- **fsync, 3 at once**: three LevelDBs in the same dir, each doing synced
  writes at the same time (`--fsync-ops` / 3 each), as 3 nodes on one host
  do: what one synced write costs when its neighbours sync too.
- **zmq**: a DEALER in this process and a ROUTER echo (`bench._echo`) in
  another process, on tcp loopback. Round trips with one message
  outstanding (`--rtt-ops`: p50/p99), then throughput with up to
  `--pipeline-window` messages outstanding (`--pipelined-msgs` messages of a
  packed put request).
- **msgpack**: pack + unpack of a put request map (16-byte key, 128-byte
  value), `--msgpack-ops` times: microseconds per round and rounds per second.

`--json` prints one JSON object as the last line, every key ending in its unit.

No wait is unbounded: a send, a receive, the echo's start or a synced write
that makes no progress for `--timeout` seconds ends the run with
"floor benchmark failed: ..." on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgpack
import plyvel
import zmq

if __package__ in (None, ""):  # run as `python bench/floor.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import Value, machine, print_json, print_section
from bench._stats import percentile

REPO_ROOT = Path(__file__).resolve().parents[1]
KEY = "bench/k000000001"  # 16 bytes, as the daemon benchmark's keys
VALUE = bytes(range(128))  # 128 bytes, as the daemon benchmark's values
FSYNC_VALUE_BYTES = 184  # + the 16-byte key: a ~200-byte batch
DEFAULT_TIMEOUT_S = 10.0


def put_request(request_id: int) -> dict[str, Any]:
    return {"v": 1, "id": request_id, "op": "put", "key": KEY, "value": VALUE}


def _ms(sorted_s: list[float], q: float) -> float:
    return round(percentile(sorted_s, q) * 1000, 4)


# ---------------------------------------------------------------------- fsync


def synced_writes(dbs: Sequence[Any], ops: int, timeout_s: float) -> tuple[list[float], float]:
    """`ops` synced ~200-byte WriteBatches into each of `dbs` at once, one thread per DB.

    Returns every write's latency and the wall time of the whole. plyvel
    releases the GIL while LevelDB writes, so threads overlap their fsyncs as
    processes would. The writers are daemon threads joined with a bound: if
    no write completes for `timeout_s` (a stuck disk), RuntimeError, and the
    process can still exit. A writer's error is raised here, not lost.
    """
    value = bytes(FSYNC_VALUE_BYTES)
    latencies: list[float] = []
    errors: list[BaseException] = []

    def write_loop(db: Any) -> None:
        try:
            for i in range(ops):
                t0 = time.perf_counter()
                with db.write_batch(sync=True) as batch:
                    batch.put(b"l|%013d" % i, value)  # 16-byte key
                latencies.append(time.perf_counter() - t0)  # list.append is atomic under the GIL
        except BaseException as exc:  # re-raised by the joining thread
            errors.append(exc)

    threads = [
        threading.Thread(target=write_loop, args=(db,), name=f"floor-fsync-{n}", daemon=True)
        for n, db in enumerate(dbs)
    ]
    wall0 = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        while True:
            done_before = len(latencies)
            thread.join(timeout_s)  # returns as soon as the thread ends
            if not thread.is_alive():
                break
            if len(latencies) == done_before:
                raise RuntimeError(
                    f"no synced write completed for {timeout_s:g} s "
                    f"({len(latencies)} of {ops * len(dbs)} done): is the disk stuck?"
                )
    wall = time.perf_counter() - wall0
    if errors:
        raise errors[0]
    return latencies, wall


def measure_fsync(ops: int, base_dir: Path | None, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Value]:
    """`ops` synced WriteBatches of one ~200-byte put each, one at a time."""
    root = Path(tempfile.mkdtemp(prefix="confman-floor-", dir=base_dir))
    try:
        db = plyvel.DB(str(root / "db"), create_if_missing=True)
        latencies, wall = synced_writes([db], ops, timeout_s)
        db.close()  # not on a timeout: the stuck writer still holds it
    finally:
        shutil.rmtree(root, ignore_errors=True)
    latencies.sort()
    return {
        "fsync_write_bytes": 16 + FSYNC_VALUE_BYTES,
        "fsync_writes": ops,
        "fsync_write_p50_ms": _ms(latencies, 0.5),
        "fsync_write_p99_ms": _ms(latencies, 0.99),
        "fsync_writes_per_s": round(ops / wall, 1),
    }


def measure_fsync_concurrent(
    ops: int, writers: int, base_dir: Path | None, timeout_s: float = DEFAULT_TIMEOUT_S
) -> dict[str, Value]:
    """`writers` LevelDBs on the same disk, each doing synced writes at once: 3 nodes on one host."""
    root = Path(tempfile.mkdtemp(prefix="confman-floor-", dir=base_dir))
    try:
        dbs = [plyvel.DB(str(root / f"db{i}"), create_if_missing=True) for i in range(writers)]
        latencies, wall = synced_writes(dbs, ops, timeout_s)
        for db in dbs:
            db.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    latencies.sort()
    return {
        "fsync_concurrent_writers": writers,
        "fsync_concurrent_write_p50_ms": _ms(latencies, 0.5),
        "fsync_concurrent_write_p99_ms": _ms(latencies, 0.99),
        "fsync_concurrent_writes_per_s": round(len(latencies) / wall, 1),
    }


# ---------------------------------------------------------------------- zmq


def measure_zmq(
    rtt_ops: int, pipelined_msgs: int, window: int, timeout_s: float = DEFAULT_TIMEOUT_S
) -> dict[str, Value]:
    """Round trips through an echo ROUTER in another process: one outstanding, then pipelined."""
    echo = subprocess.Popen([sys.executable, "-m", "bench._echo"], cwd=REPO_ROOT, stdout=subprocess.PIPE)
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = context.socket(zmq.DEALER)
    try:
        endpoint = read_endpoint(echo, timeout_s)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDTIMEO, round(timeout_s * 1000))
        sock.setsockopt(zmq.RCVTIMEO, round(timeout_s * 1000))
        sock.connect(endpoint)
        frame = msgpack.packb(put_request(1), use_bin_type=True)
        try:
            sock.send(frame)  # the first trip also waits for the TCP connection: not measured
            sock.recv()
        except zmq.Again:
            raise RuntimeError(f"the echo process did not answer within {timeout_s:g} s") from None
        out = _rtt(sock, frame, rtt_ops, timeout_s)
        out.update(_pipelined(sock, frame, pipelined_msgs, window, timeout_s))
        return out
    except RuntimeError as exc:
        status = echo.poll()
        if status is not None:
            raise RuntimeError(f"{exc} (the echo process exited with status {status})") from None
        raise
    finally:
        sock.close()
        context.term()
        echo.kill()
        try:
            echo.wait(timeout_s)
        except subprocess.TimeoutExpired:
            print(f"floor: the echo process {echo.pid} did not die within {timeout_s:g} s", file=sys.stderr)
        if echo.stdout is not None:
            echo.stdout.close()


def read_endpoint(echo: subprocess.Popen[bytes], timeout_s: float) -> str:
    """The echo's first line (its bound endpoint), waiting at most `timeout_s` for it."""
    assert echo.stdout is not None
    fd = echo.stdout.fileno()  # read unbuffered: nothing else reads this pipe
    deadline = time.monotonic() + timeout_s
    data = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                raise RuntimeError(f"the echo process printed no endpoint within {timeout_s:g} s")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError(f"the echo process did not start (exit status {echo.wait(timeout_s)})")
            data += chunk
    endpoint = data.partition(b"\n")[0].decode(errors="replace").strip()
    if not endpoint.startswith("tcp://"):
        raise RuntimeError(f"the echo process printed {endpoint!r}, not an endpoint")
    return endpoint


def _rtt(sock: zmq.Socket[bytes], frame: bytes, ops: int, timeout_s: float) -> dict[str, Value]:
    """`ops` round trips, one at a time; `sock` has SNDTIMEO and RCVTIMEO of `timeout_s`."""
    latencies = []
    wall0 = time.perf_counter()
    try:
        for _ in range(ops):
            t0 = time.perf_counter()
            sock.send(frame)
            sock.recv()
            latencies.append(time.perf_counter() - t0)
    except zmq.Again:
        raise RuntimeError(
            f"round trip {len(latencies) + 1} of {ops}: no reply from the echo process within {timeout_s:g} s"
        ) from None
    wall = time.perf_counter() - wall0
    latencies.sort()
    return {
        "zmq_rtts": ops,
        "zmq_rtt_p50_ms": _ms(latencies, 0.5),
        "zmq_rtt_p99_ms": _ms(latencies, 0.99),
        "zmq_rtts_per_s": round(ops / wall, 1),
    }


def _pipelined(
    sock: zmq.Socket[bytes], frame: bytes, msgs: int, window: int, timeout_s: float
) -> dict[str, Value]:
    """`msgs` messages with up to `window` outstanding; `sock` has RCVTIMEO of `timeout_s`.

    A send that finds the DEALER's queue full takes replies first instead of
    blocking, so a window above the HWMs cannot deadlock the two ends.
    """
    sent = received = 0
    wall0 = time.perf_counter()
    try:
        while received < msgs:
            while sent < msgs and sent - received < window:
                try:
                    sock.send(frame, zmq.NOBLOCK if sent > received else 0)
                except zmq.Again:
                    if sent == received:
                        raise
                    break
                sent += 1
            sock.recv()  # blocks (bounded) for at least one, then drain what else is there
            received += 1
            while received < sent:
                try:
                    sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                received += 1
    except zmq.Again:
        raise RuntimeError(
            f"pipelined: nothing moved for {timeout_s:g} s with {sent - received} messages outstanding "
            f"({received} of {msgs} replies received): a reply was lost or the echo process is stuck"
        ) from None
    wall = time.perf_counter() - wall0
    return {
        "zmq_pipelined_msgs": msgs,
        "zmq_pipeline_window": window,
        "zmq_msg_bytes": len(frame),
        "zmq_pipelined_msgs_per_s": round(msgs / wall, 1),
    }


# ---------------------------------------------------------------------- msgpack


def measure_msgpack(ops: int) -> dict[str, Value]:
    """pack + unpack of a put request, as a client and a server each do once per request."""
    packb, unpackb = msgpack.packb, msgpack.unpackb
    request = put_request(12345)
    t0 = time.perf_counter()
    for i in range(ops):
        request["id"] = i
        unpackb(packb(request, use_bin_type=True), raw=False)
    wall = time.perf_counter() - t0
    return {
        "msgpack_roundtrips": ops,
        "msgpack_request_bytes": len(packb(request, use_bin_type=True)),
        "msgpack_roundtrip_us": round(wall / ops * 1e6, 3),
        "msgpack_roundtrips_per_s": round(ops / wall, 1),
    }


# ---------------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("--fsync-ops", type=int, default=1000, help="synced writes (default 1000)")
    p.add_argument("--rtt-ops", type=int, default=10_000, help="one-outstanding round trips (default 10000)")
    p.add_argument("--pipelined-msgs", type=int, default=200_000, help="pipelined messages (default 200000)")
    p.add_argument(
        "--pipeline-window", type=int, default=1000, help="in flight when pipelined (default 1000)"
    )
    p.add_argument("--msgpack-ops", type=int, default=200_000, help="pack+unpack rounds (default 200000)")
    p.add_argument("--base-dir", type=Path, default=None, help="where the LevelDB goes (default: $TMPDIR)")
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds a send, a receive or the disk may make no progress before the run fails "
        f"(default {DEFAULT_TIMEOUT_S:g})",
    )
    args = p.parse_args(argv)
    if not args.timeout > 0:
        p.error("--timeout must be > 0")
    counts = (args.fsync_ops, args.rtt_ops, args.pipelined_msgs, args.pipeline_window, args.msgpack_ops)
    if min(counts) < 1:
        p.error("every count must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    wall0 = time.perf_counter()
    out: dict[str, Value] = {}
    out["loadavg_1m_at_start"] = round(os.getloadavg()[0], 2)  # others sharing the machine skew numbers
    try:
        sections: tuple[tuple[str, Callable[[], dict[str, Value]]], ...] = (
            (
                "fsync: one synced ~200-byte WriteBatch at a time (plyvel)",
                lambda: measure_fsync(args.fsync_ops, args.base_dir, args.timeout),
            ),
            (
                "fsync: 3 LevelDBs on one disk, each writing synced batches at once (3 nodes, 1 host)",
                lambda: measure_fsync_concurrent(max(1, args.fsync_ops // 3), 3, args.base_dir, args.timeout),
            ),
            (
                "zmq: DEALER -> ROUTER echo on tcp loopback",
                lambda: measure_zmq(args.rtt_ops, args.pipelined_msgs, args.pipeline_window, args.timeout),
            ),
            ("msgpack: pack + unpack of a put request", lambda: measure_msgpack(args.msgpack_ops)),
        )
        for title, measure in sections:
            section = measure()
            print_section(title, section)
            out.update(section)
    except (OSError, RuntimeError, plyvel.Error, zmq.ZMQError) as exc:
        print(f"floor benchmark failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    out["total_wall_s"] = round(time.perf_counter() - wall0, 3)
    out.update(machine())
    out["ok"] = True
    if args.json:
        print_json(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
