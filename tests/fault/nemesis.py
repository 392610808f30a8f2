"""Named faults (nemeses) with start/stop pairs, seeded schedules of them, and a thread that runs one.

A `Nemesis` has three parts: `plan(rng, size)` picks its parameters when the
schedule is made (which node, which minority), so one seed fixes the whole
run; `start(cluster, params)` does the fault and returns what it actually
did (the node that led *then*, for `kill-leader`); `stop(cluster, done)`
undoes exactly that.

`schedule(seed, duration_s, nemeses)` alternates heal and fault windows
(1-3 s each by default), starting and ending healed. `describe` prints it as
one line; `parse_schedule` reads that line back, so a failing run is
replayed from its log even if the generator changes later.

`run_schedule(cluster, events, clock)` applies a schedule in a thread and
records each fault window as `FaultWindow(name, start_ns, end_ns, done)` on
the caller's clock (the one its history uses): `start_ns` is taken before
the fault begins and `end_ns` after it is undone, so the window covers every
moment the fault could have had an effect.

Invariants:
- `schedule` is a pure function of its arguments; windows never overlap and
  all lie in [0, duration_s]; times are rounded to 10 ms so the printed line
  parses back to equal events.
- Whatever happens (a stop requested, an error in a fault), the runner ends
  with `cluster.recover()`: no fault outlives its run.
- While it waits, the runner polls `cluster.check_exits()` every `WATCH_S`,
  so a node that dies by itself is noticed within a quarter second, not only
  when the next fault or the final recovery touches it.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confmand.protocol.shardmap import ShardMap, partition_of
from tests.fault.cluster import FaultCluster
from tests.fault.power import PowerCluster

Params = dict[str, Any]  # JSON values only: ints and lists of ints
Clock = Callable[[], int]

WINDOW_S = (1.0, 3.0)
KILL_GAP_S = 0.3  # between the kills of kill-majority-in-turn
CLOCK_STEP_MS = (200, 2000)  # ± ; within what clients' HLC stamps survive across nodes (see docs/testing.md)
RESOLUTION_DIGITS = 2  # 10 ms
WATCH_S = 0.25  # between the run's polls for nodes that exited by themselves


class NemesisError(ValueError):
    """An unknown nemesis, or a schedule line that does not parse."""


@dataclass(frozen=True, slots=True)
class Nemesis:
    name: str
    doc: str
    plan: Callable[[random.Random, int], Params]
    start: Callable[[FaultCluster, Params], Params]
    stop: Callable[[FaultCluster, Params], None]


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """One fault window: `name` starts at `at_s` and is undone at `until_s` (seconds from the run's start)."""

    at_s: float
    name: str
    params: Params
    until_s: float

    def to_json(self) -> list[Any]:
        return [self.at_s, self.until_s, self.name, self.params]


@dataclass(frozen=True, slots=True)
class FaultWindow:
    """What a run did: `name` from `start_ns` to `end_ns` (the run's clock), `done` its resolved targets."""

    name: str
    start_ns: int
    end_ns: int
    done: Params = field(default_factory=dict)


# ------------------------------------------------------------------ the nemeses


def _ids(size: int) -> list[int]:
    return list(range(1, size + 1))


def _majority(size: int) -> int:
    return size // 2 + 1


def _no_plan(rng: random.Random, size: int) -> Params:
    return {}


def _plan_node(rng: random.Random, size: int) -> Params:
    return {"node": rng.choice(_ids(size))}


def _running_or_any(cluster: FaultCluster, node: int) -> int | None:
    """`node` if it runs, else a running node chosen by the cluster's seeded rng, else None."""
    running = cluster.running()
    if node in running:
        return node
    return cluster.rng.choice(running) if running else None


def _leader_or_any(cluster: FaultCluster) -> int | None:
    leader = cluster.leader()
    if leader is not None:
        return leader
    running = cluster.running()
    return cluster.rng.choice(running) if running else None


def _start_nodes(cluster: FaultCluster, done: Params) -> None:
    for node in done.get("nodes", []):
        cluster.start(node)


def _kill_leader(cluster: FaultCluster, params: Params) -> Params:
    node = _leader_or_any(cluster)
    if node is None:
        return {"nodes": []}
    cluster.kill(node)
    return {"nodes": [node]}


def _kill_node(cluster: FaultCluster, params: Params) -> Params:
    node = _running_or_any(cluster, params["node"])
    if node is None:
        return {"nodes": []}
    cluster.kill(node)
    return {"nodes": [node]}


def _plan_majority(rng: random.Random, size: int) -> Params:
    return {"nodes": rng.sample(_ids(size), _majority(size))}


def _kill_in_turn(cluster: FaultCluster, params: Params) -> Params:
    killed = []
    for index, node in enumerate(params["nodes"]):
        if index:
            time.sleep(KILL_GAP_S)  # "in turn": the survivors see one loss, then the next
        if cluster.alive(node):
            cluster.kill(node)
            killed.append(node)
    return {"nodes": killed}


def _pause(cluster: FaultCluster, params: Params) -> Params:
    node = _running_or_any(cluster, params["node"])
    if node is None:
        return {"nodes": []}
    cluster.pause(node)
    return {"nodes": [node]}


def _resume(cluster: FaultCluster, done: Params) -> None:
    for node in done.get("nodes", []):
        cluster.resume(node)


def _heal(cluster: FaultCluster, done: Params) -> None:
    cluster.heal()


def _plan_minority(rng: random.Random, size: int) -> Params:
    return {"minority": sorted(rng.sample(_ids(size), size // 2))}


def _partition_minority(cluster: FaultCluster, params: Params) -> Params:
    cluster.partition([params["minority"]])
    return {"groups": [params["minority"]]}


def _isolate_leader(cluster: FaultCluster, params: Params) -> Params:
    node = _leader_or_any(cluster)
    if node is None:
        return {"groups": []}
    cluster.partition([[node]])
    return {"groups": [[node]]}


def _plan_bridge(rng: random.Random, size: int) -> Params:
    order = _ids(size)
    rng.shuffle(order)
    half = (size - 1) // 2
    return {"bridge": order[0], "a": sorted(order[1 : 1 + half]), "b": sorted(order[1 + half :])}


def _bridge(cluster: FaultCluster, params: Params) -> Params:
    cluster.bridge(params["a"], params["b"], params["bridge"])
    return dict(params)


def _plan_one_way(rng: random.Random, size: int) -> Params:
    source, target = rng.sample(_ids(size), 2)
    return {"source": source, "target": target}


def _one_way(cluster: FaultCluster, params: Params) -> Params:
    cluster.cut_one_way(params["source"], params["target"])
    return dict(params)


def _plan_clock(rng: random.Random, size: int) -> Params:
    return {"node": rng.choice(_ids(size)), "offset_ms": rng.choice((-1, 1)) * rng.randint(*CLOCK_STEP_MS)}


def _step_clock(cluster: FaultCluster, params: Params) -> Params:
    cluster.step_clock(params["node"], params["offset_ms"])
    return dict(params)


def _unstep_clock(cluster: FaultCluster, done: Params) -> None:
    if "node" in done:
        cluster.step_clock(done["node"], 0)


def _restart(cluster: FaultCluster, params: Params) -> Params:
    node = _running_or_any(cluster, params["node"])
    if node is None:
        return {"nodes": []}
    cluster.terminate(node)  # SIGTERM: a leader hands leadership over first
    cluster.start(node)
    return {"nodes": [node]}


def _nothing(cluster: FaultCluster, done: Params) -> None:
    pass


MOVE_TRY_S = 5.0
MOVED_NAMESPACES = ("reg0", "reg1", "set0", "set1", "ryw0", "ryw1", "eo0", "eo1")  # workloads.py's


def _plan_move(rng: random.Random, size: int) -> Params:
    return {"namespace": rng.randrange(len(MOVED_NAMESPACES)), "to": rng.randrange(1 << 16)}


def _as_operator(cluster: FaultCluster, act: Callable[[int, ShardMap], Params | None]) -> Params:
    """Ask each running node in turn for its map and `act` on it (a request to that node), until one
    takes it (a shard may be electing) or MOVE_TRY_S pass; the change then finishes by itself.

    `act` returns what it did, with `ok`, or None if the map leaves nothing to do.
    """
    deadline = time.monotonic() + MOVE_TRY_S
    done: Params = {}
    while time.monotonic() < deadline:
        for node in sorted(cluster.running()):
            reply = cluster.call(node, {"op": "shard_map"}, timeout_s=1.0)
            if reply is None or not reply.get("ok"):
                continue
            outcome = act(node, ShardMap.from_wire(reply))
            if outcome is None:
                return {}
            done = outcome
            if done["ok"]:
                return done
        time.sleep(0.2)
    return done


def _move_partition(cluster: FaultCluster, params: Params) -> Params:
    """Move a workload namespace's partition to another data shard, as an operator would."""
    namespace = MOVED_NAMESPACES[params["namespace"]]

    def act(node: int, shard_map: ShardMap) -> Params | None:
        source = shard_map.shard_of(namespace)
        others = [s for s in shard_map.data_shards if s != source]
        if not others:
            return None
        target = others[params["to"] % len(others)]
        partition = partition_of(namespace, shard_map.partitions)
        moved = cluster.call(node, {"op": "move_partition", "partition": partition, "to_shard": target}, 3.0)
        return {"partition": partition, "from": source, "to": target, "ok": bool(moved and moved.get("ok"))}

    return _as_operator(cluster, act)


def _plan_replica_move(rng: random.Random, size: int) -> Params:
    return {"pick": rng.randrange(1 << 16)}


def _move_replica(cluster: FaultCluster, params: Params) -> Params:
    """Move one replica of a data shard to a node that holds none of it, through the map, as an
    operator adding a node would: the new one joins as a learner, catches up and is promoted, then
    the old one leaves (placement.py). Nothing to do if every node holds every shard.

    `pick` chooses the shard, the replica that leaves and the node that takes it.
    """
    pick = params["pick"]

    def act(node: int, shard_map: ShardMap) -> Params | None:
        shards = [s for s in shard_map.data_shards if len(shard_map.replicas[s]) < len(cluster.node_ids)]
        if not shards:
            return None
        shard = shards[pick % len(shards)]
        held = shard_map.replicas[shard]
        spare = [n for n in cluster.node_ids if n not in held]
        leaving, joining = held[(pick // 7) % len(held)], spare[(pick // 49) % len(spare)]
        placed = [joining if n == leaving else n for n in held]
        answer = cluster.call(node, {"op": "set_replicas", "data_shard": shard, "replicas": placed}, 3.0)
        return {"shard": shard, "from": leaving, "to": joining, "ok": bool(answer and answer.get("ok"))}

    return _as_operator(cluster, act)


NEMESES: dict[str, Nemesis] = {
    n.name: n
    for n in (
        Nemesis(
            "kill-leader", "kill -9 the leader; restart it on heal", _no_plan, _kill_leader, _start_nodes
        ),
        Nemesis(
            "kill-random", "kill -9 a planned node; restart it on heal", _plan_node, _kill_node, _start_nodes
        ),
        Nemesis(
            "kill-majority-in-turn",
            "kill -9 a majority one after another (no quorum); restart them on heal",
            _plan_majority,
            _kill_in_turn,
            _start_nodes,
        ),
        Nemesis("pause-random", "SIGSTOP a planned node; SIGCONT on heal", _plan_node, _pause, _resume),
        Nemesis(
            "partition-majority-minority",
            "cut every link between a planned minority and the majority",
            _plan_minority,
            _partition_minority,
            _heal,
        ),
        Nemesis("isolate-leader", "cut every link to and from the leader", _no_plan, _isolate_leader, _heal),
        Nemesis(
            "bridge", "two halves that cannot talk, one node that talks to both", _plan_bridge, _bridge, _heal
        ),
        Nemesis(
            "one-way-loss", "a planned source's messages to a target are lost", _plan_one_way, _one_way, _heal
        ),
        Nemesis(
            "clock-step",
            "step a planned node's wall clock by ±0.2-2 s",
            _plan_clock,
            _step_clock,
            _unstep_clock,
        ),
        Nemesis(
            "restart", "SIGTERM a planned node and start it again at once", _plan_node, _restart, _nothing
        ),
        Nemesis(
            "move-partition",
            "move a workload namespace's partition to another data shard (the move finishes by itself)",
            _plan_move,
            _move_partition,
            _nothing,
        ),
        Nemesis(
            "move-replica",
            "move a data shard's replica to a node holding none, through the map (it finishes by itself)",
            _plan_replica_move,
            _move_replica,
            _nothing,
        ),
    )
}


# ------------------------------------------------------------------ power loss (a PowerCluster only)


def _power(cluster: FaultCluster) -> PowerCluster:
    if not isinstance(cluster, PowerCluster):
        raise NemesisError("a power-loss nemesis needs a PowerCluster (data dirs on lazy filesystems)")
    return cluster


def _cut_power(
    cluster: FaultCluster, nodes: list[int], mid_fsync: bool = False, gap_s: float = KILL_GAP_S
) -> Params:
    """Pull the plug on `nodes` in turn, `gap_s` apart; what each lost is in the window's `done`."""
    power = _power(cluster)
    done: Params = {"nodes": [], "dirty_bytes": [], "mid_fsync": []}
    for index, node in enumerate(nodes):
        if index and gap_s:
            time.sleep(gap_s)  # "in turn", as kill-majority-in-turn
        if not cluster.alive(node):
            continue
        loss = power.power_loss_mid_fsync(node) if mid_fsync else power.power_loss(node)
        done["nodes"].append(node)
        done["dirty_bytes"].append(loss.dirty_bytes)
        done["mid_fsync"].append(int(loss.mid_fsync))
    return done


def _power_loss_node(cluster: FaultCluster, params: Params) -> Params:
    node = _running_or_any(cluster, params["node"])
    return _cut_power(cluster, [] if node is None else [node])


def _power_loss_leader(cluster: FaultCluster, params: Params) -> Params:
    node = _leader_or_any(cluster)
    return _cut_power(cluster, [] if node is None else [node])


def _power_loss_in_turn(cluster: FaultCluster, params: Params) -> Params:
    return _cut_power(cluster, list(params["nodes"]))


def _power_loss_all(cluster: FaultCluster, params: Params) -> Params:
    # The whole cluster at once (one power feed): only what a majority fsynced can come back.
    return _cut_power(cluster, list(cluster.node_ids), gap_s=0.0)


def _plan_role(rng: random.Random, size: int) -> Params:
    return {"leader": rng.choice((0, 1))}


def _power_loss_mid_write(cluster: FaultCluster, params: Params) -> Params:
    """Cut the power of the leader (or of a follower) while it is inside an fsync of its log."""
    leader = _leader_or_any(cluster)
    if params["leader"] or leader is None:
        node = leader
    else:
        followers = [n for n in cluster.running() if n != leader]
        node = cluster.rng.choice(followers) if followers else leader
    return _cut_power(cluster, [] if node is None else [node], mid_fsync=True)


POWER_NEMESES: dict[str, Nemesis] = {
    n.name: n
    for n in (
        Nemesis(
            "power-loss-random",
            "pull the plug on a planned node (its unsynced writes are lost); power it up on heal",
            _plan_node,
            _power_loss_node,
            _start_nodes,
        ),
        Nemesis(
            "power-loss-leader",
            "pull the plug on the leader; power it up on heal",
            _no_plan,
            _power_loss_leader,
            _start_nodes,
        ),
        Nemesis(
            "power-loss-majority-in-turn",
            "pull the plug on a majority one after another (no quorum); power them up on heal",
            _plan_majority,
            _power_loss_in_turn,
            _start_nodes,
        ),
        Nemesis(
            "power-loss-all",
            "pull the plug on every node at once; power them all up on heal",
            _no_plan,
            _power_loss_all,
            _start_nodes,
        ),
        Nemesis(
            "power-loss-mid-write",
            "pull the plug on the leader or a follower while it is inside an fsync of its log",
            _plan_role,
            _power_loss_mid_write,
            _start_nodes,
        ),
    )
}


def nemesis(name: str) -> Nemesis:
    try:
        return NEMESES.get(name) or POWER_NEMESES[name]
    except KeyError:
        known = ", ".join([*NEMESES, *POWER_NEMESES])
        raise NemesisError(f"unknown nemesis {name!r}; known: {known}") from None


def needs_power(names: Sequence[str]) -> bool:
    """Whether a schedule of `names` must run on a PowerCluster."""
    return any(name in POWER_NEMESES for name in names)


# ------------------------------------------------------------------ schedules


def schedule(
    seed: int,
    duration_s: float,
    nemeses: Sequence[str],
    size: int = 3,
    window_s: tuple[float, float] = WINDOW_S,
) -> list[FaultEvent]:
    """Heal and fault windows alternating over `duration_s`, each `window_s` long; pure in its arguments."""
    if not nemeses:
        raise NemesisError("a schedule needs at least one nemesis")
    chosen = [nemesis(name) for name in nemeses]
    low, high = window_s
    if not 0 < low <= high:
        raise NemesisError(f"window_s must be 0 < low <= high (got {window_s})")
    rng = random.Random(seed)
    events: list[FaultEvent] = []
    at_s = _round(rng.uniform(low, high))  # start healed: the cluster settles first
    while True:
        until_s = _round(at_s + rng.uniform(low, high))
        if until_s > duration_s:
            return events
        fault = rng.choice(chosen)
        events.append(FaultEvent(at_s, fault.name, fault.plan(rng, size), until_s))
        at_s = _round(until_s + rng.uniform(low, high))


def _round(seconds: float) -> float:
    return round(seconds, RESOLUTION_DIGITS)


def describe(seed: int, duration_s: float, nemeses: Sequence[str], events: Sequence[FaultEvent]) -> str:
    """One line: the arguments that made the schedule and the schedule itself (for `parse_schedule`)."""
    return f"nemesis seed={seed} duration_s={duration_s} nemeses={','.join(nemeses)} {_schedule_json(events)}"


def _schedule_json(events: Sequence[FaultEvent]) -> str:
    return "schedule=" + json.dumps([event.to_json() for event in events], separators=(",", ":"))


def parse_schedule(line: str) -> list[FaultEvent]:
    """The events of a `describe` line (or of its bare `schedule=` JSON)."""
    text = line.split("schedule=", 1)[-1].strip()
    try:
        raw = json.loads(text)
        events = [
            FaultEvent(float(at), str(name), dict(params), float(until)) for at, until, name, params in raw
        ]
    except (ValueError, TypeError) as exc:
        raise NemesisError(f"not a schedule line: {line[:200]!r} ({exc})") from None
    for event in events:
        nemesis(event.name)
    return events


# ------------------------------------------------------------------ running one


class NemesisRun:
    """A schedule being applied in a thread; `join` returns its windows or raises what went wrong."""

    def __init__(self, cluster: FaultCluster, events: Sequence[FaultEvent], clock: Clock) -> None:
        self.cluster = cluster
        self.events = list(events)
        self.clock = clock
        self.windows: list[FaultWindow] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nemesis", daemon=True)

    def start(self) -> NemesisRun:
        # Printed (pytest shows it with a failure) so that the run can be replayed with parse_schedule.
        print(f"nemesis run {_schedule_json(self.events)}", flush=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Undo the current fault now and skip the rest (the run still ends healed)."""
        self._stop.set()

    def join(self, timeout_s: float | None = None) -> list[FaultWindow]:
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError(f"the nemesis run did not end within {timeout_s} s")
        if self.error is not None:
            raise self.error
        return list(self.windows)

    def _run(self) -> None:
        began = time.monotonic()
        try:
            for event in self.events:
                if self._wait_until(began + event.at_s):
                    return
                fault = nemesis(event.name)
                start_ns = self.clock()
                done: Params = {}
                try:
                    done = fault.start(self.cluster, event.params)
                    self._wait_until(began + event.until_s)
                finally:  # a fault that failed half-way is still undone and still reported
                    try:
                        fault.stop(self.cluster, done)
                    finally:
                        self.windows.append(FaultWindow(event.name, start_ns, self.clock(), done))
        except BaseException as exc:  # handed to join(), not lost in the thread
            self.error = exc
        finally:
            try:
                self.cluster.recover()
            except BaseException as exc:
                self.error = self.error or exc

    def _wait_until(self, deadline: float) -> bool:
        """Wait until `deadline` (time.monotonic), watching for unplanned exits; True if stopped."""
        while True:
            self.cluster.check_exits()
            left = deadline - time.monotonic()
            if left <= 0:
                return self._stop.is_set()
            if self._stop.wait(min(left, WATCH_S)):
                return True


def run_schedule(
    cluster: FaultCluster, events: Sequence[FaultEvent], clock: Clock = time.monotonic_ns
) -> NemesisRun:
    """Start applying `events` to `cluster` in a thread; see `NemesisRun`."""
    return NemesisRun(cluster, events, clock).start()
