"""One simulated host: a real `Node` over the in-memory twins of its disk, links and clock.

The host plays the daemon's loop (confmand/server/run.py): it runs
`node.turn()` when input arrives or when the node's next tick is due, never
while the node is still busy with its previous turn, and never while it is
paused. A turn takes simulated time: a little CPU, and each write to disk
(an fsync most of all) moves the host's clock on, so messages sent after an
fsync leave later than those sent before it, as on a real machine.

Crashes lose the process and every write that was not synced
(`MemoryDisk.power_loss`); a restart opens the real `NodeStorage` on what
survived and builds a new `Node` on it, so recovery runs the real code.

The host also keeps, for the checker, which Raft log entries of every shard
are durable on its disk and since when (`durable_term`): an entry is
durable once a synced write that covers it has *finished*.
"""

from __future__ import annotations

import errno
import logging
import random
from collections.abc import Callable
from pathlib import Path

from confmand.config import ClusterShape, NodeConfig, PeerConfig, RaftSettings, RequestSettings
from confmand.raft import Role
from confmand.server.node import Node
from confmand.storage import DataDirError, NodeStorage
from confmand.storage.keys import LOG_ENTRY, log_index_of, shard_of
from confmand.storage.memory_db import MemoryDisk, Op
from confmand.storage.records import decode_entry
from confmand.transport.peer import UnknownPeerError
from tests.sim.scenario import Scenario
from tests.sim.world import World

log = logging.getLogger(__name__)

CLUSTER_ID = "sim"
EPOCH_MS = 1_800_000_000_000
TURN_CPU_S = 0.0002  # what one loop turn of Python costs, beyond its writes
WRITE_S = 0.00002  # an unsynced LevelDB write
# A left replica's records deleted per turn: few, so that a deletion spans many turns and the
# run's crashes and full disks land inside one (the daemon deletes 4,096 per turn).
DELETE_KEYS_PER_TURN = 3
LOG_START, LOG_STOP = LOG_ENTRY, bytes([LOG_ENTRY[0] + 1])  # every shard's Raft log
LogSlot = tuple[int, int]  # (shard, index)


class SimCrash(Exception):
    """Raised inside a write: the process dies before the batch lands."""


def client_address(node_id: int) -> str:
    return f"tcp://sim-node-{node_id}:7100"


def node_config(scenario: Scenario, node_id: int) -> NodeConfig:
    peers = tuple(
        PeerConfig(i, f"tcp://sim-node-{i}:7000", client_address(i), joins=i > scenario.node_count)
        for i in range(1, scenario.node_count + scenario.joins + 1)
    )
    return NodeConfig(
        source=Path(f"/nonexistent/confman-sim/node{node_id}.toml"),
        cluster_id=CLUSTER_ID,
        node_id=node_id,
        data_dir=Path(f"/nonexistent/confman-sim/node{node_id}"),
        peer_address=peers[node_id - 1].peer_address,
        client_address=client_address(node_id),
        peers=peers,
        # Few partitions: the sim's handful of keys still spreads over every shard.
        cluster=ClusterShape(
            partitions=16, data_shards=scenario.data_shards, replication=scenario.replication
        ),
        raft=RaftSettings(
            tick_ms=scenario.tick_ms,
            election_ticks=scenario.election_ticks,
            pre_vote=scenario.pre_vote,
            check_quorum=scenario.check_quorum,
            snapshot_interval_entries=scenario.snapshot_interval_entries,
            log_retain_entries=scenario.log_retain_entries,
            max_append_entries=scenario.max_append_entries,
            max_apply_entries=scenario.max_apply_entries,
            quiet_shards=scenario.quiet_shards,
            # The membership profile changes memberships itself; elsewhere leaders follow the map.
            map_membership=scenario.membership_rate == 0,
        ),
        requests=RequestSettings(request_timeout_ms=scenario.request_timeout_ms, version_read_wait_ms=500),
    )


class SimClock:
    """The node's clocks: monotonic runs at the host's rate; wall time may be stepped."""

    def __init__(self, host: SimHost) -> None:
        self._host = host

    def monotonic(self) -> float:
        host = self._host
        return 100.0 + host.cursor * host.clock_rate

    def wall_ms(self) -> int:
        host = self._host
        return EPOCH_MS + int(host.cursor * 1000) + host.wall_offset_ms


class SimPeerLink:
    def __init__(self, host: SimHost) -> None:
        self._host = host

    def send(self, node_id: int, payload: bytes) -> bool:
        host = self._host
        if node_id not in host.peer_ids:
            raise UnknownPeerError(f"node {node_id} is not a peer of node {host.id}")
        host.world.send_peer(host.id, node_id, payload, host.cursor, host.deliver_peer_to)
        return True

    def receive(self, max_messages: int) -> list[tuple[int, bytes]]:
        inbox = self._host.peer_inbox
        out, self._host.peer_inbox = inbox[:max_messages], inbox[max_messages:]
        return out

    def add_peer(self, node_id: int, address: str) -> None:
        self._host.peer_ids |= {node_id}

    def remove_peer(self, node_id: int) -> None:
        self._host.peer_ids -= {node_id}

    def close(self) -> None:
        return None


class SimClientLink:
    def __init__(self, host: SimHost) -> None:
        self._host = host

    def receive(self, max_messages: int) -> list[tuple[list[bytes], bytes]]:
        inbox = self._host.client_inbox
        out, self._host.client_inbox = inbox[:max_messages], inbox[max_messages:]
        return out

    def reply(self, envelope: list[bytes], payload: bytes) -> bool:
        host = self._host
        host.deliver_reply(envelope, payload, host.cursor + host.world.delay())
        return True

    def close(self) -> None:
        return None


class SimHost:
    def __init__(
        self,
        world: World,
        scenario: Scenario,
        node_id: int,
        *,
        deliver_peer_to: Callable[[int, int, bytes], None],
        deliver_reply: Callable[[list[bytes], bytes, float], None],
        after_turn: Callable[[SimHost], None],
    ) -> None:
        self.world = world
        self.scenario = scenario
        self.id = node_id
        self.config = node_config(scenario, node_id)
        self.peer_ids = frozenset(range(1, scenario.node_count + scenario.joins + 1)) - {node_id}
        self.deliver_peer_to = deliver_peer_to
        self.deliver_reply = deliver_reply
        self._after_turn = after_turn
        self.rng = scenario.rng(f"host/{node_id}")
        # Small memtables make LevelDB switch log files often, and each switch leaves the old
        # file's unsynced tail at risk until it is flushed (memory_db.py).
        self.disk = self._new_disk()
        # The data volume failed to mount (mount_empty_disk): the real disk waits here meanwhile.
        self._unmounted: tuple[MemoryDisk, dict[LogSlot, tuple[int, float | None]]] | None = None
        self.on_refused: Callable[[SimHost], None] = lambda host: None
        self._crash_in_writes: int | None = None  # a crash aimed at the window after a log switch
        self._crash_after_write = False  # a crash aimed between a leader's fsync and its sends
        self.clock_rate = scenario.clock_rates[node_id - 1]
        self.wall_offset_ms = 0
        self.node: Node | None = None
        self.incarnation = 0
        self.paused = False
        self.disk_full_until = 0.0
        self.cursor = 0.0  # this host's time inside its current turn
        self.busy_until = 0.0
        self.wake_at: float | None = None
        self.peer_inbox: list[tuple[int, bytes]] = []
        self.client_inbox: list[tuple[list[bytes], bytes]] = []
        # data-shard log entries on disk: index -> (term, when it became durable; None: not yet)
        self.log_terms: dict[LogSlot, tuple[int, float | None]] = {}
        self._undurable: list[LogSlot] = []
        # (shard, index, old term, new term): entries a write replaced, for the checker
        self.overwritten: list[tuple[int, int, int, int]] = []
        self.calmed = False  # the final phase: the disk stops failing
        self.stop_by: float | None = None  # stopping (SIGTERM): exit once leadership is handed off
        self.on_exit: Callable[[SimHost], None] = lambda host: None
        self.starting = False
        self.turns = 0
        self.crash_note = ""  # why the host lost power inside its last turn
        self.enrolled = node_id <= scenario.node_count  # started once the operator adds it
        self.retired = False  # removed from the membership and shut down for good
        self._leader_commit_term: dict[int, int] = {}  # shard -> last term it committed in as leader

    @property
    def up(self) -> bool:
        return self.node is not None

    @property
    def on_empty_disk(self) -> bool:
        return self._unmounted is not None

    def _new_disk(self) -> MemoryDisk:
        disk = MemoryDisk(self.scenario.log_bytes_max, self.scenario.flush_after_writes)
        disk.before_write = self._before_write
        disk.after_write = self._after_write
        disk.on_log_switch = self._log_switched
        return disk

    def mount_empty_disk(self) -> None:
        """The host comes back without its data volume: the node's next start finds an empty
        data dir, with the node id it always had. Its peers must refuse it (identity.py)."""
        assert self.node is None
        assert self._unmounted is None
        self._unmounted = (self.disk, self.log_terms)
        self.disk = self._new_disk()
        self.log_terms = {}

    def remount(self) -> None:
        """The operator mounted the real volume again: the next start runs from it."""
        assert self.node is None
        assert self._unmounted is not None
        self.disk, self.log_terms = self._unmounted
        self._unmounted = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.incarnation += 1
        self.cursor = self.busy_until = max(self.world.now, self.busy_until)
        rng = random.Random(f"{self.scenario.seed}/node/{self.id}/{self.incarnation}")
        # No disk faults while starting: a restart writes nothing but a first start's bootstrap,
        # so any refusal to start is about what survived, which is what the checker judges.
        self.starting = True
        try:
            storage = NodeStorage.open_with(self.disk.opener, self.config.data_dir, CLUSTER_ID, self.id)
            self.node = Node(
                self.config,
                storage,
                peers=SimPeerLink(self),
                clients=SimClientLink(self),
                clock=SimClock(self),
                rng=rng,
                faults=self.scenario.faults,
            )
            self.node.delete_keys_per_turn = DELETE_KEYS_PER_TURN
        finally:
            self.starting = False
        self._schedule(self.world.now)

    def crash(self) -> int:
        """The process dies and the host loses power: returns how many unsynced batches were lost."""
        self.node = None
        self.stop_by = None
        self.paused = False
        self.peer_inbox, self.client_inbox = [], []
        self.wake_at = None
        lost = self.disk.power_loss(self.rng)
        self._undurable.clear()
        self._crash_in_writes = None
        self.log_terms = {
            (shard_of(k), log_index_of(k)): (decode_entry(k, v).term, float("-inf"))
            for k, v in self.disk.durable_items(LOG_START, LOG_STOP)
        }
        return lost

    def calm(self) -> None:
        self.calmed = True

    def stop(self, hand_off_s: float) -> None:
        """SIGTERM: hand leadership away, turning until that is done or `hand_off_s` passed; then exit.

        As run.py's `serve` does. The exit is clean: what LevelDB wrote is kept (the kernel has it).
        """
        assert self.node is not None
        self.stop_by = self.world.now + hand_off_s
        if not self.node.hand_off_leadership():
            self.stop_by = self.world.now

    def _exit(self) -> None:
        assert self.node is not None
        self.node.close()
        self.node = None
        self.stop_by = None
        self.peer_inbox, self.client_inbox = [], []
        self.wake_at = None

    def reload(self, config: NodeConfig) -> None:
        """The operator edited this node's config file and sends SIGHUP: the node applies what it
        may between turns, as the daemon's loop does; a restart reads the edited file."""
        self.config = config
        if self.node is None:
            return
        try:
            self.node.reconfigure(config)
        except SimCrash as exc:  # e.g. in the synced write that forgets a removed node's dir id
            self.world.count("crash_in_write")
            self.crash_note = str(exc)
            self.crash()

    def retire(self) -> None:
        """Removed from the membership: the operator shuts the node down, for good."""
        self.retired = True
        if self.node is not None:
            self._exit()

    def poke(self) -> None:
        """Something outside the loop (the operator) gave the node work: take a turn soon."""
        self._schedule(self.world.now)

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self.wake_at = None
        self._schedule(self.world.now)

    # ------------------------------------------------------------------ input

    def deliver_peer(self, src: int, payload: bytes) -> None:
        if self.node is None:
            self.world.count("peer_to_down_node")
            return
        self.peer_inbox.append((src, payload))
        self._schedule(self.world.now)

    def deliver_client(self, envelope: list[bytes], payload: bytes) -> None:
        if self.node is None:
            self.world.count("request_to_down_node")
            return
        self.client_inbox.append((envelope, payload))
        self._schedule(self.world.now)

    # ------------------------------------------------------------------ the loop

    def _schedule(self, when: float) -> None:
        if self.node is None or self.paused:
            return
        when = max(when, self.busy_until)
        if self.wake_at is not None and self.wake_at <= when:
            return
        self.wake_at = when
        incarnation = self.incarnation
        self.world.at(when, lambda: self._wake(when, incarnation))

    def _wake(self, when: float, incarnation: int) -> None:
        if self.wake_at != when or incarnation != self.incarnation:
            return  # a wake-up that a sooner one, or a crash, replaced
        self.wake_at = None
        if self.node is None or self.paused:
            return
        node = self.node
        self.cursor = max(self.world.now, self.busy_until)
        self.turns += 1
        # Each shard's ballot and commit index before the turn: a crash may aim right after either.
        before = {s: (r.raft.term, r.raft.vote, r.raft.commit_index) for s, r in node.replicas.items()}
        try:
            node.turn()
        except DataDirError as exc:  # a peer refused it: it lost its data dir (mount_empty_disk)
            self.world.count("lost_dir_refused")
            self.crash_note = f"node {self.id} stops: {exc}"[:160]
            self._exit()
            self.on_refused(self)
            return
        except SimCrash as exc:
            self.world.count("crash_in_write")
            self.crash_note = str(exc)
            self.crash()
            self._after_turn(self)
            return
        self.cursor += TURN_CPU_S
        self.busy_until = self.cursor
        self._after_turn(self)  # the checker sees the turn's outcome before any crash aimed after it
        if self.node is not node:
            return
        voted = self._granted_vote(node, before)
        if voted is not None and self._roll(self.scenario.crash_after_vote_rate):
            self._lose_power("crash_after_vote", f"right after granting a vote in {voted}")
            return
        committed = self._first_commit(node, before)
        if committed is not None and self._roll(self.scenario.crash_after_first_commit_rate):
            self._lose_power(
                "crash_after_first_commit", f"right after its first commit as leader of {committed}"
            )
            return
        if self.stop_by is not None and (not node.leads_any() or self.world.now >= self.stop_by):
            self._exit()
            self.on_exit(self)
            return
        if self.peer_inbox or self.client_inbox:
            self._schedule(self.cursor)
        else:
            self._schedule(self.cursor + node.seconds_to_next_turn() / self.clock_rate)

    def _lose_power(self, counter: str, when: str) -> None:
        self.world.count(counter)
        self.crash_note = f"node {self.id} loses power {when}"
        self.crash()
        self._after_turn(self)

    def _first_commit(self, node: Node, before: dict[int, tuple[int, int | None, int]]) -> str | None:
        """Which shard's leader this turn moved its commit index for the first time in its term."""
        found = None
        for shard, replica in node.replicas.items():
            raft = replica.raft
            if shard not in before or raft.role is not Role.LEADER or raft.commit_index == before[shard][2]:
                continue
            if self._leader_commit_term.get(shard) != raft.term:
                self._leader_commit_term[shard] = raft.term
                found = found or f"term {raft.term} of shard {shard}"
        return found

    def _granted_vote(self, node: Node, before: dict[int, tuple[int, int | None, int]]) -> str | None:
        """Which shard's replica granted a new vote in this turn, if any."""
        for shard, replica in node.replicas.items():
            raft = replica.raft
            if (
                shard in before
                and raft.vote not in (None, self.id)
                and (raft.term, raft.vote) != before[shard][:2]
            ):
                return f"term {raft.term} of shard {shard}"
        return None

    def _roll(self, rate: float) -> bool:
        """A fault drawn from the host's generator: no draw at all when the rate is 0 or healed."""
        return bool(rate) and not self.calmed and self.rng.random() < rate

    def _before_write(self, sync: bool, ops: list[Op]) -> None:
        s, rng, now = self.scenario, self.rng, self.world.now
        if self._crash_in_writes is not None:
            self._crash_in_writes -= 1
            if self._crash_in_writes <= 0 and not (self.calmed or self.starting):
                self._crash_in_writes = None
                self.world.count("crash_after_log_switch")
                raise SimCrash(f"node {self.id} loses power soon after a LevelDB log switch")
        if self.starting:
            pass
        elif self.disk_full_until > now:
            raise OSError(errno.ENOSPC, "IO error: No space left on device")
        elif self.calmed:
            pass
        elif s.write_error_rate and rng.random() < s.write_error_rate:
            self.world.count("write_error")
            raise OSError(errno.EIO, "IO error: Input/output error")
        elif sync and s.crash_in_write_rate and rng.random() < s.crash_in_write_rate:
            raise SimCrash(f"node {self.id} crashes in a synced write")
        if sync:
            latency = s.fsync_min_s + rng.random() * (s.fsync_max_s - s.fsync_min_s)
            if not self.calmed and s.slow_fsync_rate and rng.random() < s.slow_fsync_rate:
                latency += rng.uniform(0.1, 1.0)
                self.world.count("slow_fsync")
            self.cursor += latency
        else:
            self.cursor += WRITE_S
        terms = self.log_terms
        for key, value in ops:
            if key.startswith(LOG_ENTRY):
                slot = (shard_of(key), log_index_of(key))
                if value is None:
                    terms.pop(slot, None)
                else:
                    term = decode_entry(key, value).term
                    before = terms.get(slot)
                    if before is not None and before[0] != term:
                        self.overwritten.append((*slot, before[0], term))
                    terms[slot] = (term, None)
                    self._undurable.append(slot)
        if sync and any(key.startswith(LOG_ENTRY) for key, _ in ops) and self._leads():
            self._crash_after_write = self._roll(s.crash_after_leader_write_rate)
        if sync:
            done = self.cursor
            for slot in self._undurable:
                found = terms.get(slot)
                if found is not None and found[1] is None:
                    terms[slot] = (found[0], done)
            self._undurable.clear()

    def _after_write(self, sync: bool) -> None:
        if self._crash_after_write:
            self._crash_after_write = False
            self.world.count("crash_after_leader_write")
            raise SimCrash(f"node {self.id} loses power after writing its new entries, before sending them")

    def _leads(self) -> bool:
        node = self.node
        return node is not None and any(r.raft.role is Role.LEADER for r in node.replicas.values())

    def _log_switched(self) -> None:
        """LevelDB just closed a log file unsynced: now and then, lose power before its flush."""
        s = self.scenario
        if not (self.calmed or self.starting) and self.rng.random() < s.crash_after_log_switch_rate:
            self._crash_in_writes = self.rng.randint(1, max(1, s.flush_after_writes - 1))

    def durable_term(self, shard: int, index: int, at: float) -> int | None:
        """The term of `shard`'s entry at `index` that is durable on this disk at time `at`.

        While the host runs without its data volume, that volume is its disk: what the node writes
        on the empty one is lost when the volume is mounted again."""
        terms = self.log_terms if self._unmounted is None else self._unmounted[1]
        found = terms.get((shard, index))
        if found is None or found[1] is None or found[1] > at:
            return None
        return found[0]
