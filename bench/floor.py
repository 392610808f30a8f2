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
"""

from __future__ import annotations

import argparse
import os
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


def put_request(request_id: int) -> dict[str, Any]:
    return {"v": 1, "id": request_id, "op": "put", "key": KEY, "value": VALUE}


def _ms(sorted_s: list[float], q: float) -> float:
    return round(percentile(sorted_s, q) * 1000, 4)


# ---------------------------------------------------------------------- fsync


def measure_fsync(ops: int, base_dir: Path | None) -> dict[str, Value]:
    """`ops` synced WriteBatches of one ~200-byte put each, one at a time."""
    root = Path(tempfile.mkdtemp(prefix="confman-floor-", dir=base_dir))
    try:
        db = plyvel.DB(str(root / "db"), create_if_missing=True)
        try:
            value = bytes(FSYNC_VALUE_BYTES)
            latencies = []
            wall0 = time.perf_counter()
            for i in range(ops):
                t0 = time.perf_counter()
                with db.write_batch(sync=True) as batch:
                    batch.put(b"l|%013d" % i, value)  # 16-byte key
                latencies.append(time.perf_counter() - t0)
            wall = time.perf_counter() - wall0
        finally:
            db.close()
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


def measure_fsync_concurrent(ops: int, writers: int, base_dir: Path | None) -> dict[str, Value]:
    """`writers` LevelDBs on the same disk, each doing synced writes at once: 3 nodes on one host.

    plyvel releases the GIL while LevelDB writes, so threads overlap their
    fsyncs as three processes would.
    """
    root = Path(tempfile.mkdtemp(prefix="confman-floor-", dir=base_dir))
    latencies: list[float] = []
    try:
        dbs = [plyvel.DB(str(root / f"db{i}"), create_if_missing=True) for i in range(writers)]
        value = bytes(FSYNC_VALUE_BYTES)

        def write_loop(db: Any) -> None:
            for i in range(ops):
                t0 = time.perf_counter()
                with db.write_batch(sync=True) as batch:
                    batch.put(b"l|%013d" % i, value)
                latencies.append(time.perf_counter() - t0)  # list.append is atomic under the GIL

        threads = [threading.Thread(target=write_loop, args=(db,)) for db in dbs]
        wall0 = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - wall0
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


def measure_zmq(rtt_ops: int, pipelined_msgs: int, window: int) -> dict[str, Value]:
    """Round trips through an echo ROUTER in another process: one outstanding, then pipelined."""
    echo = subprocess.Popen(
        [sys.executable, "-m", "bench._echo"], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = context.socket(zmq.DEALER)
    try:
        assert echo.stdout is not None
        endpoint = echo.stdout.readline().strip()
        if not endpoint.startswith("tcp://"):
            raise RuntimeError(f"the echo process did not start (exit status {echo.poll()})")
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        frame = msgpack.packb(put_request(1), use_bin_type=True)
        sock.send(frame)  # the first trip also waits for the TCP connection: not measured
        if not sock.poll(10_000):
            raise RuntimeError("the echo process did not answer within 10 s")
        sock.recv()
        out = _rtt(sock, frame, rtt_ops)
        out.update(_pipelined(sock, frame, pipelined_msgs, window))
        return out
    finally:
        sock.close()
        context.term()
        echo.kill()
        echo.wait()
        if echo.stdout is not None:
            echo.stdout.close()


def _rtt(sock: zmq.Socket[bytes], frame: bytes, ops: int) -> dict[str, Value]:
    latencies = []
    wall0 = time.perf_counter()
    for _ in range(ops):
        t0 = time.perf_counter()
        sock.send(frame)
        sock.recv()
        latencies.append(time.perf_counter() - t0)
    wall = time.perf_counter() - wall0
    latencies.sort()
    return {
        "zmq_rtts": ops,
        "zmq_rtt_p50_ms": _ms(latencies, 0.5),
        "zmq_rtt_p99_ms": _ms(latencies, 0.99),
        "zmq_rtts_per_s": round(ops / wall, 1),
    }


def _pipelined(sock: zmq.Socket[bytes], frame: bytes, msgs: int, window: int) -> dict[str, Value]:
    sent = received = 0
    wall0 = time.perf_counter()
    while received < msgs:
        while sent < msgs and sent - received < window:
            sock.send(frame)
            sent += 1
        sock.recv()  # blocks for at least one, then drain what else is there
        received += 1
        while received < sent:
            try:
                sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            received += 1
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
    args = p.parse_args(argv)
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
                lambda: measure_fsync(args.fsync_ops, args.base_dir),
            ),
            (
                "fsync: 3 LevelDBs on one disk, each writing synced batches at once (3 nodes, 1 host)",
                lambda: measure_fsync_concurrent(max(1, args.fsync_ops // 3), 3, args.base_dir),
            ),
            (
                "zmq: DEALER -> ROUTER echo on tcp loopback",
                lambda: measure_zmq(args.rtt_ops, args.pipelined_msgs, args.pipeline_window),
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
