"""The whole-daemon simulator: N real `Node`s, simulated network, disks, clocks and clients.

`run_seed(seed)` builds a `Scenario` (scenario.py), starts every host
(host.py) and the clients (clients.py), and runs simulated time: the
clients' calls, the nodes' turns, and a fault roll every `FAULT_EVERY_S`
(crashes with power loss, pauses, partitions, full disks, clock steps).
`ClusterChecker` looks at every node after every turn (checks.py). After
the scenario's duration, the final phase heals everything: no partitions,
loss or disk faults, every node up and resumed, clocks back; a fresh client
must then write once and read every key within `LIVENESS_S`, every replica
must catch up to the same state, and the whole history is judged.

Determinism: every draw comes from a generator seeded by the scenario's
seed and one concern; events at the same time run in the order scheduled.
"""

from __future__ import annotations

import dataclasses
import random
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from confctl.client import operations
from confmand.kv.commands import Command
from confmand.kv.partitions import Freeze, MapAddShard, MapReplicas, PartitionOp
from confmand.protocol.shardmap import META_SHARD, partition_of
from confmand.raft import MembershipChange, MembershipChangeKind, NotLeader, ProposalRejected, Role
from confmand.server.faults import NO_FAULTS, DriverFaults
from confmand.server.meta import stored_map
from confmand.server.pending import DaemonSink
from confmand.storage import StorageError
from tests.fault.history import History
from tests.sim.checks import ClusterChecker, Violation, check_history, final_changes, state_digest
from tests.sim.clients import SimClient
from tests.sim.host import SimHost, client_address, node_config
from tests.sim.leaseholders import SimLeaseHolder
from tests.sim.scenario import Scenario
from tests.sim.watchers import SimWatcher
from tests.sim.world import World

FAULT_EVERY_S = 0.05
OPERATOR_EVERY_S = 0.1
MIN_VOTERS = 3  # the operator never shrinks the voters below this
MAX_ADDED_SHARDS = 2  # data shards the operator adds to a run at most
HAND_OFF_S = 2.0  # as run.py's: how long a stopping leader waits for its successor
LIVENESS_S = 20.0
CONVERGE_S = 10.0
STALE_LEADER_S = 1.0  # how long after its pause clients keep favouring a leader that was paused


def replay_command(scenario: Scenario) -> str:
    parts = [".venv/bin/python -m tests.sim.run --seed", str(scenario.seed)]
    if scenario.duration_override is not None:
        parts += ["--duration", f"{scenario.duration_override:g}"]
    names = scenario.faults.on()
    if names:
        parts += ["--faults", ",".join(names)]
    return " ".join(parts)


# Counters of the nodes (summed over those up at the end) that a run's stats carry.
NODE_COUNTERS = (
    "preferred_transfers",
    "added_shards_started",
    "replicas_deleted",
    "deletions_resumed",
    "deleted_replicas_started_again",
    "snapshots_taken",
    "snapshots_installed",
    "snapshots_made_past_stored",
    "peer_dir_refused",
)


@dataclass(slots=True)
class RunResult:
    scenario: Scenario
    violation: Violation | None
    sim_s: float
    stats: dict[str, int]
    trace: list[str] = field(default_factory=list)
    history: History | None = None

    @property
    def ok(self) -> bool:
        return self.violation is None

    def fingerprint(self) -> tuple[object, ...]:
        return (round(self.sim_s, 9), str(self.violation), tuple(sorted(self.stats.items())))


def run_seed(seed: int, faults: DriverFaults = NO_FAULTS, duration_s: float | None = None) -> RunResult:
    return Simulation(Scenario.from_seed(seed, faults, duration_s)).run()


class Simulation:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.world = World(scenario)
        self.trace: list[str] = [scenario.summary()]
        self.history = History()
        self.fault_rng = scenario.rng("faults")
        self.hosts: dict[int, SimHost] = {}
        for node_id in range(1, scenario.node_count + scenario.joins + 1):
            self.hosts[node_id] = SimHost(
                self.world,
                scenario,
                node_id,
                deliver_peer_to=self._deliver_peer,
                deliver_reply=self._deliver_reply,
                after_turn=self._after_turn,
            )
        for host in self.hosts.values():
            host.on_exit = self._exited
            host.on_refused = self._refused
        self.unmount_rng = scenario.rng("unmount")  # its own: the other faults' draws stay as they were
        self.by_address = {client_address(i): h for i, h in self.hosts.items()}
        self.checker = ClusterChecker(self.hosts)
        self.endpoints = [client_address(i) for i in sorted(self.hosts)]
        self.clients: dict[bytes, SimClient] = {}
        self.watchers: dict[bytes, SimWatcher] = {}
        self.holders: dict[bytes, SimLeaseHolder] = {}
        self.keys = [f"k{i}" for i in range(scenario.keys)]
        self.shard_map = node_config(scenario, 1).initial_map()  # every node starts from this one
        self.shard_ids = sorted(self.shard_map.replicas)
        self.calm = False
        self._partition_until = 0.0
        self.operator_rng = scenario.rng("operator")
        self.next_id = scenario.node_count + 1  # the next node the operator may add
        self.removed: set[int] = set()  # removals proposed: retired once committed
        self.unlisting: set[int] = set()  # retired: taken out of every node's [[peers]] by SIGHUP
        # Shards asked for, and on which nodes, until a map names them: a founder is never retired
        # while its shard may still appear (seed 10 retired one between the ask and the map).
        self.founding: dict[int, tuple[int, ...]] = {}
        # A leader paused or cut off, and until when clients still favour it: as clients with a
        # stale leader cache, or a load balancer that did not notice, would keep asking it.
        self._stale_leader: tuple[int, float] | None = None

    @property
    def active(self) -> list[SimHost]:
        """The hosts in service: in the first membership or added since, and not retired."""
        return [h for h in self.hosts.values() if h.enrolled and not h.retired]

    # ------------------------------------------------------------------ wiring

    def _deliver_peer(self, dst: int, src: int, payload: bytes) -> None:
        self.hosts[dst].deliver_peer(src, payload)

    def _deliver_reply(self, envelope: list[bytes], payload: bytes, when: float) -> None:
        client = self.clients.get(envelope[0])
        if client is not None:
            self.world.at(when, lambda: client.on_reply(payload))
        watcher = self.watchers.get(envelope[0])
        if watcher is not None:
            self.world.at(when, lambda: watcher.on_reply(payload))
        holder = self.holders.get(envelope[0])
        if holder is not None:
            self.world.at(when, lambda: holder.on_reply(payload))

    def _send_request(self, endpoint: str, envelope: list[bytes], frame: bytes) -> None:
        host = self.by_address[endpoint]
        self.world.at(self.world.now + self.world.delay(), lambda: host.deliver_client(envelope, frame))

    def _after_turn(self, host: SimHost) -> None:
        if not host.on_empty_disk:  # a node without its disk is a stranger its peers refuse
            self.checker.after_turn(host, self.world.now)
        if not host.up:
            self._note(host.crash_note)
            self._maybe_unmount(host)  # an aimed crash (after a vote, a commit) may lose the volume
            self._restart_later(host)

    def _maybe_unmount(self, host: SimHost) -> None:
        """A crashed host may come back without its data volume (`Scenario.unmount_share`)."""
        share = self.scenario.unmount_share
        if share and self._may_unmount(host) and self.unmount_rng.random() < share:
            host.mount_empty_disk()
            self.world.count("unmounted")
            self._note(f"node {host.id} comes back without its data volume: an empty data dir")
            self._remount_later(host)

    def _may_unmount(self, host: SimHost) -> bool:
        """Whether the host may come back without its volume: one host at a time (a majority of
        disks lost is data loss in any Raft cluster), and only once every other host in service
        recorded its data dir (a node no peer heard from made no promise, and its peers take its
        next dir as its first: the real one is then the stranger, refused when mounted again)."""
        if any(h.on_empty_disk for h in self.hosts.values()):
            return False
        others = [h for h in self.active if h is not host]
        return all(h.node is not None and host.id in h.node.storage.peer_dir_ids() for h in others)

    def _remount_later(self, host: SimHost) -> None:
        """The operator notices a node running on an empty data dir, stops it and mounts its
        volume again: what the node acknowledged meanwhile is gone from it."""
        incarnation = host.incarnation

        def remount() -> None:
            if not host.on_empty_disk or host.incarnation > incarnation + 1:
                return  # refused and mounted again already
            if host.up:
                host.crash()
                self.checker.restarted(host)
                self.world.count("unmounted_stopped")
            host.remount()
            self._note(f"node {host.id}: the operator mounts its data volume again")
            self._restart_later(host)

        self.world.at(self.world.now + self.unmount_rng.uniform(1.0, 4.0), remount)

    def _refused(self, host: SimHost) -> None:
        """Its peers refused a node started without its data volume: the operator mounts it again
        and starts the node, which must be welcomed back."""
        self._note(host.crash_note)
        host.remount()
        self.checker.restarted(host)
        self._note(f"node {host.id}: its data volume is mounted again")
        self._restart_later(host)

    def _exited(self, host: SimHost) -> None:
        self.checker.restarted(host)
        self._note(f"node {host.id} exits")
        self._restart_later(host)

    def _add_client(self, process: int) -> SimClient:
        client = SimClient(
            self.world,
            process,
            endpoints=self.endpoints,
            in_service=self._pin_choices,
            keys=self.scenario.keys,
            send=self._send_request,
            record=self.history.append,
        )
        self.clients[client.envelope[0]] = client
        return client

    def _pin_choices(self) -> list[str]:
        """Where a pinned call may go: any node in service, half of them the stale leader if any."""
        active = [client_address(h.id) for h in self.active]
        stale = self._stale_leader
        if stale is None or self.world.now >= stale[1] or self.calm:
            return active
        return active + [client_address(stale[0])] * len(active)

    def _note(self, text: str) -> None:
        self.trace.append(f"{self.world.now:.3f} {text}")

    # ------------------------------------------------------------------ running

    def run(self) -> RunResult:
        violation: Violation | None = None
        try:
            self._run()
        except Violation as exc:
            violation = exc
        except Exception as exc:  # an error escaping a node's turn is a bug of the driver
            where = traceback.extract_tb(exc.__traceback__)[-1]
            place = f"{Path(where.filename).name}:{where.lineno}"
            violation = Violation("no error escapes a turn", self.world.now, f"{exc!r} at {place}")
        if violation is not None:
            violation.replay = replay_command(self.scenario)
            self._note(f"VIOLATION {violation}")
        stats = dict(self.world.stats)
        stats["ops"] = len(self.history)
        stats["ops_ok"] = sum(1 for op in self.history if op.outcome == "ok")
        stats["turns"] = sum(h.turns for h in self.hosts.values())
        stats["commit_max"] = self.checker.commit_max
        stats["redrives"] = sum(c.redrives for c in self.clients.values())
        stats["backups"] = sum(c.backups for c in self.clients.values())
        for counter in NODE_COUNTERS:  # of the nodes up at the end
            stats[counter] = sum(h.node.counters.get(counter, 0) for h in self.hosts.values() if h.node)
        return RunResult(self.scenario, violation, self.world.now, stats, self.trace, self.history)

    def _run(self) -> None:
        scenario, world = self.scenario, self.world
        for host in self.active:
            self._start(host)
        for process in range(1, scenario.clients + 1):
            self._add_client(process).start()
        watcher = SimWatcher(
            world,
            1,
            endpoints=self.endpoints,
            send=self._send_request,
            shards=lambda: [s for s in self.shard_ids if s != META_SHARD],
        )
        self.watchers[watcher.envelope[0]] = watcher
        watcher.start()
        for number in (1, 2):
            holder = SimLeaseHolder(world, number, endpoints=self.endpoints, send=self._send_request)
            self.holders[holder.envelope[0]] = holder
            holder.start()
        world.at(FAULT_EVERY_S, self._fault_roll)
        if scenario.membership_rate or scenario.transfer_rate or scenario.move_rate or scenario.place_rate:
            world.at(OPERATOR_EVERY_S, self._operator)
        world.run_until(scenario.duration_s)
        self._final_phase()

    def _final_phase(self) -> None:
        world = self.world
        self._heal_all()
        self._note("final phase: everything healed")
        done: list[bool] = []
        probe = self._add_client(0)
        probe.pin_share = 0.0  # the probe asks what any client would: through leader hints and rotation
        for client in self.clients.values():
            client.running = False

        def read_back() -> None:
            probe.read_all(self.keys, lambda: done.append(True))

        def start_probe() -> None:
            probe.begin("put", "k0", "final", operations.put("k0", "final"), then=read_back)

        deadline = world.now + LIVENESS_S
        # Every open write must settle once healed (their clients retry them with the same seq).
        world.run_until(deadline, stop=lambda: all(c.idle for c in self.clients.values()))
        world.at(world.now, start_probe)
        world.run_until(deadline, stop=lambda: bool(done))
        if not done:
            busy = [c.process for c in self.clients.values() if not c.idle]
            self.checker.fail(
                "liveness", f"no fresh write and reads within {LIVENESS_S}s of healing (busy clients: {busy})"
            )
        failed = [op for op in self.history if op.process == 0 and op.outcome != "ok"]
        if failed:
            self.checker.fail(
                "liveness",
                f"the final client's calls failed after healing: {failed[0].describe()}: {probe.last_error}",
            )
        self._learn_shards()
        self._settle_placement()
        self._settle_deletions()
        leaders = {shard: self._converge(shard) for shard in self.shard_ids}
        meta = leaders[META_SHARD].node
        assert meta is not None
        final_map = stored_map(meta.replicas[META_SHARD].storage)
        if final_map is None:
            self.checker.fail("meta shard", "the meta shard holds no map")
        assert final_map is not None
        for shard in sorted(set(final_map.replicas) - set(leaders)):  # added after the nodes' maps
            leaders[shard] = self._converge(shard)
        added = set(final_map.replicas) - set(self.shard_map.replicas)
        self.world.count("partition_in_added_shard", sum(owner in added for owner in final_map.owners))
        # A founder that holds no meta replica learnt the map (and the founders) from a peer.
        self.world.count(
            "founder_without_meta",
            sum(
                1
                for shard in added
                for node in final_map.founders.get(shard, ())
                if (host := self.hosts.get(node)) is not None
                and host.node is not None
                and shard in host.node.replicas
                and META_SHARD not in host.node.replicas
            ),
        )
        self.world.count("partition_moved", final_map.epoch - self.shard_map.epoch)
        self._judge_watchers(leaders)
        for holder in self.holders.values():
            holder.running = False
            if holder.problems:
                self.checker.fail("lease", "\n".join(holder.problems[:5]))
        problems = check_history(self.history, final_changes(leaders, self.keys, final_map.shard_of))
        if problems:
            self.checker.fail("history", "\n".join(problems[:5]))

    def _judge_watchers(self, leaders: dict[int, SimHost]) -> None:
        """Healed and converged: each watcher catches up with every shard, then what it was told is judged."""
        applied = {}
        for shard, leader in leaders.items():
            if shard != META_SHARD and leader.node is not None:
                applied[shard] = leader.node.replicas[shard].applied
        deadline = self.world.now + LIVENESS_S
        watchers = list(self.watchers.values())
        self.world.run_until(deadline, stop=lambda: all(w.caught_up(applied) for w in watchers))
        for watcher in watchers:
            watcher.running = False
            if not watcher.caught_up(applied):
                ends = {shard: str(c.end) for shard, c in watcher.coverage.items()}
                self.checker.fail(
                    "watch liveness",
                    f"a watcher was told up to {ends} of {applied}, not further, once healed",
                )
            problems = watcher.problems(list(self.history))
            if problems:
                self.checker.fail("watch", "\n".join(problems[:5]))

    def _converge(self, shard: int) -> SimHost:  # noqa: RET503 (the checker fails by raising)
        """Wait until every member of `shard` has applied the same state; returns its leader."""
        world = self.world
        end = world.now + CONVERGE_S

        def hosting(h: SimHost) -> bool:
            return h.node is not None and shard in h.node.replicas

        members: list[SimHost] = []
        while world.now < end:
            leader = self._leader(shard)
            if leader is None or leader.node is None:
                world.run_until(world.now + 0.1)
                continue
            raft = leader.node.replicas[shard].raft
            membership = raft.membership
            assert membership is not None
            members = [self.hosts[i] for i in sorted(membership.members)]
            target = raft.commit_index
            if all(hosting(h) and h.node.replicas[shard].applied.index >= target for h in members):  # type: ignore[union-attr]
                if len({state_digest(h, shard) for h in members}) == 1:
                    return leader
                applied = {h.id: state_digest(h, shard)[0] for h in members}
                if len(set(applied.values())) == 1:
                    self.checker.fail(
                        "convergence", f"shard {shard}: replicas differ at the same applied index {applied}"
                    )
            world.run_until(world.now + 0.1)
        applied = {h.id: state_digest(h, shard)[0] for h in members if hosting(h)}
        self.checker.fail(
            "convergence", f"shard {shard}: replicas did not catch up within {CONVERGE_S}s: {applied}"
        )

    def _busiest_leader(self) -> SimHost | None:
        """The up node that leads the most shards (the lowest id of a tie): what faults aim at."""
        counts: dict[int, int] = {}
        for shard in self.shard_ids:
            leader = self._leader(shard)
            if leader is not None:
                counts[leader.id] = counts.get(leader.id, 0) + 1
        if not counts:
            return None
        return self.hosts[min(counts, key=lambda node: (-counts[node], node))]

    def _leader(self, shard: int = 1) -> SimHost | None:
        """The up node that leads the newest term of `shard`, if any."""
        leaders = []
        for host in self.hosts.values():
            if host.node is not None and shard in host.node.replicas:
                raft = host.node.replicas[shard].raft
                if raft.role is Role.LEADER:
                    leaders.append((raft.term, host.id))
        return self.hosts[max(leaders)[1]] if leaders else None

    # ------------------------------------------------------------------ faults

    def _heal_all(self) -> None:
        self.calm = True
        self.world.blocked = frozenset()
        self.world.calm()
        for host in self.active:
            host.calm()
            host.wall_offset_ms = 0
            host.disk_full_until = 0.0
            if host.paused:
                host.resume()
            if not host.up:
                if host.on_empty_disk:
                    host.remount()
                self._start(host)

    def _start(self, host: SimHost) -> None:
        try:
            host.start()
        except StorageError as exc:
            self.checker.fail("restart", f"node {host.id} refused to start on what survived: {exc}")
        self.checker.restarted(host)
        self._note(f"node {host.id} starts (incarnation {host.incarnation})")

    def _restart_later(self, host: SimHost) -> None:
        delay = self.fault_rng.uniform(self.scenario.restart_min_s, self.scenario.restart_max_s)
        incarnation = host.incarnation

        def restart() -> None:
            if not host.up and host.incarnation == incarnation and not host.retired:
                self._start(host)

        self.world.at(self.world.now + delay, restart)

    def _fault_roll(self) -> None:
        if self.calm:
            return
        s, rng, world = self.scenario, self.fault_rng, self.world
        world.at(world.now + FAULT_EVERY_S, self._fault_roll)
        if world.now >= self._partition_until and world.blocked:
            world.blocked = frozenset()
            self._note("partition healed")
        active = self.active
        up = [h.id for h in active if h.up]
        leader = self._busiest_leader()
        if s.crash_rate and rng.random() < s.crash_rate * FAULT_EVERY_S:
            down = len(active) - len(up)
            if up and down < (len(active) - 1) // 2 + (1 if rng.random() < 0.2 else 0):
                victim = (
                    leader.id
                    if leader is not None and rng.random() < s.leader_crash_share
                    else rng.choice(up)
                )
                host = self.hosts[victim]
                if host.stop_by is not None:
                    pass
                elif rng.random() < 0.3:
                    host.stop(HAND_OFF_S)
                    world.count("graceful_stop")
                    self._note(f"node {victim} is stopped (SIGTERM): it hands off leadership, then exits")
                    return
                lost = host.crash()
                self.checker.restarted(host)
                world.count("crash")
                self._note(f"node {victim} loses power ({lost} unsynced batches lost)")
                self._maybe_unmount(host)
                self._restart_later(host)
        if s.pause_rate and rng.random() < s.pause_rate * FAULT_EVERY_S:
            self._pause(leader, up)
        if s.partition_rate and not world.blocked and rng.random() < s.partition_rate * FAULT_EVERY_S:
            self._partition(leader)
        if s.disk_full_rate and rng.random() < s.disk_full_rate * FAULT_EVERY_S and up:
            host = self.hosts[rng.choice(up)]
            host.disk_full_until = world.now + rng.uniform(0.2, 2.0)
            world.count("disk_full")
            self._note(f"node {host.id}'s disk is full until {host.disk_full_until:.3f}")
        if s.clock_step_rate and rng.random() < s.clock_step_rate * FAULT_EVERY_S:
            host = self.hosts[rng.choice([h.id for h in active])]
            step = rng.choice((-1, 1)) * rng.randint(100, 3000)
            host.wall_offset_ms += step
            world.count("clock_step")
            self._note(f"node {host.id}'s wall clock steps {step:+d} ms (offset {host.wall_offset_ms})")

    # ------------------------------------------------------------------ the operator

    def _operator(self) -> None:
        """Membership changes and leadership transfers of one shard at a time, made on its leader.

        Once healed the operator changes nothing more, but still shuts down the nodes it removed.
        """
        s, rng, world = self.scenario, self.operator_rng, self.world
        world.at(world.now + OPERATOR_EVERY_S, self._operator)
        self._learn_shards()
        self._retire_removed()
        self._unlist_retired()
        if self.calm:
            return
        if s.move_rate and rng.random() < s.move_rate * OPERATOR_EVERY_S:
            self._move_partition(rng)
        if s.place_rate and rng.random() < s.place_rate * OPERATOR_EVERY_S:
            self._place_replica(rng)
        if s.add_rate and rng.random() < s.add_rate * OPERATOR_EVERY_S:
            self._add_shard(rng)
        shard = rng.choice(self.shard_ids)
        leader = self._leader(shard)
        if leader is None or leader.node is None:
            return
        raft = leader.node.replicas[shard].raft
        if rng.random() < s.membership_rate * OPERATOR_EVERY_S:
            self._change_membership(leader, shard, rng)
        if rng.random() < s.transfer_rate * OPERATOR_EVERY_S:
            membership = raft.membership
            assert membership is not None
            others = sorted(membership.voters - {leader.id})
            if others:
                target = rng.choice(others)
                self._try(
                    leader,
                    shard,
                    f"transfer shard {shard} to {target}",
                    lambda: raft.transfer_leadership(target),
                )

    def _move_partition(self, rng: random.Random) -> None:
        """Start moving the partition of a key the clients use to another data shard, on its leader."""
        partition = partition_of(rng.choice(self.keys), self.shard_map.partitions)
        leaders = [h for h in self.hosts.values() if h.node is not None and not h.paused]
        owners = {h.node.shard_map.owners[partition] for h in leaders if h.node is not None}
        if len(owners) != 1:  # the nodes disagree while a move settles: wait
            return
        (source,) = owners
        leader = self._leader(source)
        if leader is None or leader.node is None:
            return
        targets = [d for d in leader.node.shard_map.data_shards if d != source]
        target = rng.choice(targets)
        self._propose(
            leader,
            source,
            Freeze(partition, target),
            f"move partition {partition} from shard {source} to {target}",
        )

    def _place_replica(self, rng: random.Random) -> None:
        """Move one replica of a shard (the meta shard's too) to a node that holds none, by
        changing the map; now and then only reorder its replicas (its leadership moves)."""
        leader = self._leader(META_SHARD)
        if leader is None or leader.node is None:
            return
        shard_map = leader.node.shard_map
        shard = rng.choice(sorted(shard_map.replicas))
        if rng.random() < 0.25:
            current = shard_map.replicas[shard]
            reordered = tuple(rng.sample(current, len(current)))
            self._propose(
                leader, META_SHARD, MapReplicas(shard, reordered), f"place shard {shard} on {list(reordered)}"
            )
            return
        current = shard_map.replicas[shard]
        spare = [h.id for h in self.active if h.id not in current and h.id not in self.removed]
        if not spare:
            return
        leaving, joining = rng.choice(current), rng.choice(spare)
        placed = tuple(joining if n == leaving else n for n in current)
        self._propose(
            leader,
            META_SHARD,
            MapReplicas(shard, placed),
            f"place shard {shard} on {list(placed)} (was {list(current)})",
        )

    def _add_shard(self, rng: random.Random) -> None:
        """Add a data shard on `replication` nodes in service (the moves then bring it partitions)."""
        leader = self._leader(META_SHARD)
        if leader is None or leader.node is None:
            return
        shard_map = leader.node.shard_map
        if len(shard_map.data_shards) >= self.scenario.data_shards + MAX_ADDED_SHARDS:
            return
        shard = max(shard_map.replicas) + 1
        # Never a node being removed: the operator may shut it down before the shard is known
        # (seed 3286 retired a founder of a shard added a moment before).
        candidates = [h.id for h in self.active if h.id not in self.removed]
        if len(candidates) < self.scenario.replication:
            return
        founders = tuple(rng.sample(candidates, self.scenario.replication))
        self.founding[shard] = founders
        self._propose(
            leader, META_SHARD, MapAddShard(shard, founders), f"add shard {shard} on {list(founders)}"
        )

    def _learn_shards(self) -> None:
        """The shards the nodes' newest map names (an added shard is checked like the first ones)."""
        maps = [h.node.shard_map for h in self.hosts.values() if h.node is not None]
        newest = max(maps, key=lambda m: m.epoch, default=None)
        if newest is not None and len(newest.replicas) > len(self.shard_ids):
            self.world.count("shard_added", len(newest.replicas) - len(self.shard_ids))
            self.shard_ids = sorted({*self.shard_ids, *newest.replicas})

    def _propose(self, leader: SimHost, shard: int, op: PartitionOp, what: str) -> None:
        """Have `leader` propose a step an operator asks for (its answer goes nowhere)."""
        assert leader.node is not None
        command = Command(op, leader.node.clock.now(), "operator", None)
        replica = leader.node.replicas[shard]
        deadline = leader.node.now + 5.0
        self._try(leader, shard, what, lambda: replica.accept_write(command, DaemonSink(), 0, deadline))

    def _settle_placement(self) -> None:
        """Wait until every data shard's voters are the map's replicas (when leaders follow the map)."""
        if self.scenario.membership_rate:
            return
        world, end = self.world, self.world.now + CONVERGE_S
        unsettled: dict[int, object] = {}
        while world.now < end:
            unsettled = {}
            for shard in self.shard_ids:
                leader = self._leader(shard)
                if leader is None or leader.node is None:
                    continue
                membership = leader.node.replicas[shard].raft.membership
                wanted = frozenset(leader.node.shard_map.replicas[shard])
                if membership is None or membership.voters != wanted or membership.learners:
                    unsettled[shard] = (membership, sorted(wanted))
            if not unsettled:
                return
            world.run_until(world.now + 0.1)
        self.checker.fail(
            "placement", f"memberships are not the map's replicas within {CONVERGE_S}s: {unsettled}"
        )

    def _settle_deletions(self) -> None:
        """Wait until no node in service holds a replica of a shard it is no member of, nor any
        record of one it deleted (when leaders follow the map: docs/raft.md, *Leaving a shard*)."""
        if self.scenario.membership_rate:
            return
        world, end = self.world, self.world.now + CONVERGE_S
        left: list[str] = []
        while world.now < end:
            left = self._left_behind()
            if not left:
                return
            world.run_until(world.now + 0.1)
        self.checker.fail("left replicas deleted", f"within {CONVERGE_S}s: {'; '.join(left[:5])}")

    def _left_behind(self) -> list[str]:
        found = []
        for shard in self.shard_ids:
            leader = self._leader(shard)
            if leader is None or leader.node is None:
                return [f"shard {shard} has no leader"]
            membership = leader.node.replicas[shard].raft.membership
            assert membership is not None
            for host in self.active:
                node = host.node
                if node is None or host.id in membership.members:
                    continue
                if shard in node.replicas:
                    found.append(f"node {host.id} holds a replica of shard {shard}, members {membership}")
                elif node.storage.holds_records(shard):
                    found.append(f"node {host.id} still holds records of shard {shard}")
        return found

    def _change_membership(self, leader: SimHost, shard: int, rng: random.Random) -> None:
        assert leader.node is not None
        raft = leader.node.replicas[shard].raft
        membership = raft.membership
        assert membership is not None
        voters, learners = sorted(membership.voters), sorted(membership.learners)
        # A node in service that does not hold this shard yet takes it before a new node joins.
        spare = [h.id for h in self.active if h.id not in membership.members and h.id not in self.removed]
        kind, roll = MembershipChangeKind, rng.random()
        if learners and roll < 0.6:
            change = MembershipChange(kind.PROMOTE, rng.choice(learners))
        elif len(voters) > MIN_VOTERS and roll < 0.8:
            change = MembershipChange(kind.REMOVE, leader.id if rng.random() < 0.4 else rng.choice(voters))
        elif learners:
            change = MembershipChange(kind.REMOVE, rng.choice(learners))
        elif spare:
            change = MembershipChange(kind.ADD_LEARNER, rng.choice(spare))
        elif self.next_id in self.hosts:
            change = MembershipChange(kind.ADD_LEARNER, self.next_id)
        else:
            return
        what = f"{change.kind.value} {change.node} (shard {shard})"
        if not self._try(leader, shard, what, lambda: raft.propose_membership(change)):
            return
        if change.kind is kind.REMOVE:
            self.removed.add(change.node)
        elif change.kind is kind.ADD_LEARNER and change.node == self.next_id:
            joiner = self.hosts[self.next_id]
            self.next_id += 1
            joiner.enrolled = True
            self._start(joiner)

    def _retire_removed(self) -> None:
        """Shut down, for good, every removed node that no shard's committed membership holds."""
        maps = [h.node.shard_map for h in self.hosts.values() if h.node is not None]
        newest = max(maps, key=lambda m: m.epoch, default=None)
        placed = set() if newest is None else {n for nodes in newest.replicas.values() for n in nodes}
        for shard, founders in self.founding.items():
            if newest is None or shard not in newest.replicas:
                placed.update(founders)  # the shard may yet appear with them
        for node_id in sorted(self.removed):
            host = self.hosts[node_id]
            if host.retired or node_id in placed:
                continue
            if not all(self._committed_without(shard, node_id) for shard in self.shard_ids):
                continue
            host.retire()
            self.checker.restarted(host)
            self.world.count("retired")
            self.unlisting.add(node_id)
            self._note(f"node {node_id} is removed from every shard: the operator shuts it down")

    def _unlist_retired(self) -> None:
        """The operator edits every config and sends SIGHUP: a retired node leaves the [[peers]]
        (a first-membership one marked removed = true, a joined one deleted). A node that still
        counts it a member keeps it, and is asked again at the next round."""
        for node_id in sorted(self.unlisting):
            waiting = False
            for host in self.hosts.values():
                running = host.node.config if host.node is not None else host.config
                if host.retired or node_id not in running.client_addresses:
                    continue
                peers = tuple(
                    dataclasses.replace(p, removed=True) if p.id == node_id else p
                    for p in host.config.peers
                    if p.id != node_id or not p.joins
                )
                host.reload(dataclasses.replace(host.config, peers=peers))
                if host.node is not None and node_id in host.node.config.client_addresses:
                    waiting = True  # it still counts the node a member: the edit waits
                    continue
                self.world.count("peer_unlisted")
            if not waiting:
                self.unlisting.discard(node_id)

    def _committed_without(self, shard: int, node_id: int) -> bool:
        leader = self._leader(shard)
        if leader is None or leader.node is None:
            return False
        raft = leader.node.replicas[shard].raft
        membership = raft.membership
        return (
            membership is not None
            and raft.log.commit >= raft.members.latest_index
            and node_id not in membership.members
        )

    def _try(self, leader: SimHost, shard: int, what: str, call: Callable[[], object]) -> bool:
        try:
            call()
        except (NotLeader, ProposalRejected) as exc:
            self.world.count(f"operator_{type(exc).__name__}")
            return False
        self.world.count("operator_" + what.split(maxsplit=1)[0])
        self._note(f"the operator asks leader {leader.id}: {what}")
        assert leader.node is not None
        leader.node.nudge(shard)
        leader.poke()
        return True

    def _pause(self, leader: SimHost | None, up: list[int]) -> None:
        rng, world = self.fault_rng, self.world
        if not up:
            return
        host = (
            leader
            if leader is not None and rng.random() < self.scenario.pause_leader_share
            else self.hosts[rng.choice(up)]
        )
        if host.paused:
            return
        duration = rng.uniform(0.2, 3.0)
        if host is leader:  # clients that still think it leads go on asking it, through and after
            self._stale_leader = (host.id, world.now + duration + STALE_LEADER_S)
        host.pause()
        world.count("pause")
        isolate = not world.blocked and rng.random() < self.scenario.pause_isolate_share
        if isolate:  # a paused leader that comes back cut off from its peers
            others = [h.id for h in self.active if h.id != host.id]
            world.blocked = frozenset((host.id, o) for o in others) | frozenset((o, host.id) for o in others)
            self._partition_until = world.now + duration + rng.uniform(0.2, 1.0)
        self._note(f"node {host.id} paused for {duration:.2f}s{' and cut off' if isolate else ''}")

        def resume() -> None:
            if host.paused:
                host.resume()
                self._note(f"node {host.id} resumes")

        world.at(world.now + duration, resume)

    def _partition(self, leader: SimHost | None) -> None:
        rng, world = self.fault_rng, self.world
        ids = [h.id for h in self.active]
        rng.shuffle(ids)
        kind = rng.choice(("split", "isolate_leader", "one_way", "bridge"))
        if kind == "isolate_leader" and leader is not None:
            side_a, side_b = [leader.id], [i for i in ids if i != leader.id]
        elif kind == "bridge" and len(ids) >= 3:
            rest = ids[1:]
            cut = rng.randrange(1, len(rest))
            side_a, side_b = rest[:cut], rest[cut:]
        else:
            cut = rng.randrange(1, len(ids))
            side_a, side_b = ids[:cut], ids[cut:]
        links = {(a, b) for a in side_a for b in side_b}
        if kind != "one_way":
            links |= {(b, a) for a, b in links}
        world.blocked = frozenset(links)
        duration = rng.uniform(0.3, 3.0)
        self._partition_until = world.now + duration
        if leader is not None and leader.id in side_a and len(side_a) <= len(side_b):
            self._stale_leader = (leader.id, world.now + duration)
        world.count(f"partition_{kind}")
        self._note(f"partition {kind}: {sorted(side_a)} / {sorted(side_b)} for {duration:.2f}s")


__all__ = ["RunResult", "Simulation", "Violation", "replay_command", "run_seed"]
