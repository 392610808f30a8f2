"""The driver's CPU per write, in one process: three real `Node`s, no sockets, no fsync.

    .venv/bin/python bench/turn_cost.py [--json] [--shards 1,64] [--writes 20000] [--profile N]

Three `Node`s (confmand/server/node.py) over real LevelDB in a temp dir (fsync off) are linked in
memory and take turns round-robin in this one process; `--clients` closed-loop clients put
100-byte values to keys spread over `--namespaces` namespaces, each sent straight to the leader of
its key's shard, as bench/shards.py's generators do over ZeroMQ. The nodes' clock moves 1 ms per
round of turns, not with the wall, and all randomness is seeded, so every run of a shard count
does the same work. Measured: this process's CPU (`time.process_time`) per acknowledged write,
the least over `--rounds` alternating rounds (what varies between rounds is only what else the
machine did); the clients' own work (building requests, decoding replies) is included but small,
what a socket or an fsync would cost is not. Also counted: node turns, leader log entries and
peer batches per 1,000 writes.

Why: the cluster benchmarks on this shared two-core machine move by +-25% between rounds, too much
to see a change of 5% in what each write costs the driver. Here the ratio of 64 shards' cost to
1 shard's repeats within about 1%, so a change to the per-shard or per-entry costs of a loop turn
can be measured before it is measured on the cluster. The round-robin turns are not the daemon's
timing: every request reaches its leader within one round, so a shard's batches are bigger than on
three processes sharing two cores (fewer clients per shard, `--clients 128`, comes closer).

`--profile N` runs each shard count once more under cProfile and prints the N functions whose own
time per write differs most between the first count and the last; with `CONFMAN_NATIVE=0` the
compiled hot modules run as Python and show up in it.

`--json` prints one JSON object as the last line, keys naming their units.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import logging
import pstats
import random
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgpack

from bench._cluster import NODE_IDS, node_config_toml
from bench._report import Value, print_json, print_section
from bench._worker import key_name
from confmand.config import load_config
from confmand.server.gc_tuning import tune_collector
from confmand.server.node import Node
from confmand.storage import NodeStorage

VALUE_BYTES = 100
PARTITIONS = 1024


class _Hub:
    """The three nodes' peer inboxes and client inboxes, in memory."""

    def __init__(self) -> None:
        self.peer_inbox: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
        self.client_inbox: dict[int, list[tuple[list[bytes], bytes]]] = defaultdict(list)
        self.replies: list[bytes] = []
        self.peer_batches = 0


class _PeerLink:
    def __init__(self, hub: _Hub, node_id: int) -> None:
        self._hub, self._id = hub, node_id

    def send(self, node_id: int, payload: bytes) -> bool:
        self._hub.peer_inbox[node_id].append((self._id, payload))
        self._hub.peer_batches += 1
        return True

    def receive(self, max_messages: int) -> list[tuple[int, bytes]]:
        inbox = self._hub.peer_inbox[self._id]
        out, self._hub.peer_inbox[self._id] = inbox[:max_messages], inbox[max_messages:]
        return out

    def add_peer(self, node_id: int, address: str) -> None:
        return None  # the hub reaches every node: nothing to connect

    def remove_peer(self, node_id: int) -> None:
        return None

    def close(self) -> None:
        return None


class _ClientLink:
    def __init__(self, hub: _Hub, node_id: int) -> None:
        self._hub, self._id = hub, node_id

    def receive(self, max_messages: int) -> list[tuple[list[bytes], bytes]]:
        inbox = self._hub.client_inbox[self._id]
        out, self._hub.client_inbox[self._id] = inbox[:max_messages], inbox[max_messages:]
        return out

    def reply(self, envelope: list[bytes], payload: bytes) -> bool:
        self._hub.replies.append(payload)
        return True

    def close(self) -> None:
        return None


class _Clients:
    """Closed-loop put clients, one request in flight each, sent to their key's shard leader."""

    def __init__(self, hub: _Hub, nodes: dict[int, Node], clients: int, keys: int, namespaces: int) -> None:
        self._hub, self._nodes = hub, nodes
        self._rng = random.Random(1)
        self._value = self._rng.randbytes(VALUE_BYTES)
        self._keys = [key_name(i, namespaces) for i in range(keys)]
        node = nodes[NODE_IDS[0]]
        self._shard_of_key = [node.shard_map.shard_of(k) for k in self._keys]
        self._ids = [self._rng.randbytes(8) + slot.to_bytes(8, "big") for slot in range(clients)]
        self._seqs = [0] * clients
        self._slot_of: dict[int, int] = {}
        self._next_id = 1
        self.acked = 0
        self.errors = 0
        for slot in range(clients):
            self._send(slot)

    def _leader(self, shard_id: int) -> int:
        for node_id, node in self._nodes.items():
            replica = node.replicas.get(shard_id)
            if replica is not None and replica.is_leader:
                return node_id
        return NODE_IDS[0]

    def _send(self, slot: int) -> None:
        rid, self._next_id = self._next_id, self._next_id + 1
        self._slot_of[rid] = slot
        index = self._rng.randrange(len(self._keys))
        self._seqs[slot] += 1
        seq = self._seqs[slot]
        frame = msgpack.packb(
            {
                "v": 1,
                "id": rid,
                "op": "put",
                "key": self._keys[index],
                "value": self._value,
                "client_id": self._ids[slot],
                "seq": seq,
                "ack": seq,
            },
            use_bin_type=True,
        )
        target = self._leader(self._shard_of_key[index])
        self._hub.client_inbox[target].append(([rid.to_bytes(8, "big")], frame))

    def answer(self) -> None:
        replies, self._hub.replies = self._hub.replies, []
        for payload in replies:
            reply = msgpack.unpackb(payload, raw=False)
            slot = self._slot_of.pop(reply["id"])
            if reply.get("ok"):
                self.acked += 1
            else:
                # A put refused (NOT_LEADER while leaders settle): sent again as a new put; its
                # seq moved on, so the session never sees a gap it would refuse.
                self.errors += 1
            self._send(slot)


class _StepClock:
    """Time that moves only between cluster turns: a run does the same work however busy the machine."""

    TURN_S = 0.001

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def wall_ms(self) -> int:
        return 1_800_000_000_000 + int(self.now * 1000)


class _Cluster:
    def __init__(self, root: Path, data_shards: int) -> None:
        self.hub = _Hub()
        self.clock = _StepClock()
        self.nodes: dict[int, Node] = {}
        extra = f"\n[cluster]\npartitions = {max(PARTITIONS, data_shards)}\ndata_shards = {data_shards}\n"
        ports = list(range(1, 2 * len(NODE_IDS) + 1))  # never bound: the links are in memory
        for node_id in NODE_IDS:
            path = root / f"node{node_id}.toml"
            path.write_text(
                node_config_toml(
                    node_id, root / f"data{node_id}", ports[:3], ports[3:], fsync=False, extra=extra
                ).replace('level = "info"', 'level = "warning"')
            )
            config = load_config(path)
            storage = NodeStorage.open(config.data_dir, config.cluster_id, config.node_id)
            self.nodes[node_id] = Node(
                config,
                storage,
                peers=_PeerLink(self.hub, node_id),
                clients=_ClientLink(self.hub, node_id),
                clock=self.clock,
                rng=random.Random(node_id),
            )

    def turn(self) -> None:
        self.clock.now += _StepClock.TURN_S
        for node in self.nodes.values():
            node.turn()

    def settle(self, timeout_s: float) -> None:
        """Turn until every data shard has a leader, then for a second more (leadership hand-offs
        to the map's preferred leaders finish), all in the step clock's time."""
        deadline = self.clock.now + timeout_s
        shards = self.nodes[NODE_IDS[0]].shard_map.data_shards
        while self.clock.now < deadline:
            self.turn()
            led = {s for node in self.nodes.values() for s, r in node.replicas.items() if r.is_leader}
            if all(s in led for s in shards):
                settle_until = self.clock.now + 1.0
                while self.clock.now < settle_until:
                    self.turn()
                return
        raise RuntimeError(f"not every shard had a leader after {timeout_s} s")

    def close(self) -> None:
        for node in self.nodes.values():
            node.close()


def measure(data_shards: int, args: argparse.Namespace, profile: cProfile.Profile | None) -> dict[str, Value]:
    root = Path(tempfile.mkdtemp(prefix="confman-turn-cost-"))
    try:
        cluster = _Cluster(root, data_shards)
        defaults = gc.get_threshold()
        try:
            cluster.settle(30.0)
            if not args.default_gc:
                tune_collector()  # as the daemon does once it has recovered (confmand/server/run.py)
            clients = _Clients(cluster.hub, cluster.nodes, args.clients, args.keys, args.namespaces)
            while clients.acked < args.warmup:
                cluster.turn()
                clients.answer()
            turns0 = sum(n.counters["turns"] for n in cluster.nodes.values())
            batches0, acked0 = cluster.hub.peer_batches, clients.acked
            entries0 = _entries(cluster)
            if profile is not None:
                profile.enable()
            cpu0 = time.process_time()
            while clients.acked - acked0 < args.writes:
                cluster.turn()
                clients.answer()
            cpu = time.process_time() - cpu0
            if profile is not None:
                profile.disable()
            writes = clients.acked - acked0
            turns = sum(n.counters["turns"] for n in cluster.nodes.values()) - turns0
            entries = _entries(cluster) - entries0
            return {
                "cpu_us_per_write": round(1e6 * cpu / writes, 1),
                "writes": writes,
                "errors": clients.errors,
                "node_turns_per_1000_writes": round(1000 * turns / writes, 1),
                "leader_entries_per_1000_writes": round(1000 * entries / writes, 1),
                "peer_batches_per_1000_writes": round(
                    1000 * (cluster.hub.peer_batches - batches0) / writes, 1
                ),
            }
        finally:
            cluster.close()
            gc.unfreeze()
            gc.set_threshold(*defaults)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _entries(cluster: _Cluster) -> int:
    """Entries the leaders' logs hold in all (last index summed over the shards each leads)."""
    return sum(
        r.raft.last_index for node in cluster.nodes.values() for r in node.replicas.values() if r.is_leader
    )


def _cpu(run: dict[str, Value]) -> float:
    value = run["cpu_us_per_write"]
    assert isinstance(value, float)
    return value


def _profile_comparison(counts: list[int], args: argparse.Namespace) -> str:
    """Each count once more under cProfile: each function's own time per write, side by side."""
    per_write: dict[int, dict[str, float]] = {}
    for count in counts:
        profile = cProfile.Profile()
        result = measure(count, args, profile)
        stats = pstats.Stats(profile, stream=io.StringIO()).stats  # type: ignore[attr-defined]
        writes = float(result["writes"])  # type: ignore[arg-type]
        per_write[count] = {
            f"{Path(file).name}:{line} {name}": 1e6 * tottime / writes
            for (file, line, name), (_, _, tottime, _, _) in stats.items()
        }
    names = {name for table in per_write.values() for name in table}
    first, last = per_write[counts[0]], per_write[counts[-1]]
    ranked = sorted(names, key=lambda n: -(last.get(n, 0.0) - first.get(n, 0.0)))
    lines = [f"own time per write (us, under cProfile): {' / '.join(f'{c} shards' for c in counts)}"]
    for name in ranked[: args.profile]:
        cells = " ".join(f"{per_write[c].get(name, 0.0):8.2f}" for c in counts)
        lines.append(f"  {name[:80]:80s} {cells}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shards", default="1,64", help="data shard counts, comma-separated")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds; the least CPU of them is reported"
    )
    parser.add_argument("--clients", type=int, default=256)
    parser.add_argument("--keys", type=int, default=4096)
    parser.add_argument("--namespaces", type=int, default=256)
    parser.add_argument("--writes", type=int, default=20_000, help="acknowledged writes measured per run")
    parser.add_argument("--warmup", type=int, default=3_000, help="acknowledged writes before measuring")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print the N costliest functions")
    parser.add_argument(
        "--default-gc", action="store_true", help="keep Python's collector settings (the daemon tunes them)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # fsync off is warned about per node: known here
    counts = [int(c) for c in args.shards.split(",") if c]
    runs: dict[int, list[dict[str, Value]]] = defaultdict(list)
    for _ in range(args.rounds):
        for count in counts:
            runs[count].append(measure(count, args, None))
    # The work is the same in every round (the step clock, seeded randomness), so what varies is
    # only what else the machine did: the least CPU of the rounds is the cost (as timeit reports).
    best = {count: min(runs[count], key=_cpu) for count in counts}
    out: dict[str, Value] = {
        f"shards_{count}_{key}": value for count in counts for key, value in best[count].items()
    }
    if len(counts) > 1:
        first, last = counts[0], counts[-1]
        out[f"cpu_ratio_{last}_to_{first}"] = round(_cpu(best[last]) / _cpu(best[first]), 3)
    print_section("driver CPU per write, in process (no sockets, no fsync)", out)
    if args.profile:
        print(_profile_comparison(counts, args))
    if args.json:
        print_json(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
