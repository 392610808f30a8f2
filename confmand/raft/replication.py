"""The leader's side of log replication: what to send each follower, and what its answers mean.

Sends are deferred: proposals, acknowledgements and ReadIndex requests only
mark what is wanted, and `flush()` (called when the driver asks for a Ready)
turns everything wanted in one loop turn into as few messages as possible —
one append per follower for a whole batch of proposals, one heartbeat round
for all the reads that arrived meanwhile.

Flow control per follower is in progress.py; lost messages are noticed by a
stall counter (`tick`), because the network may drop them without a word.
"""

from __future__ import annotations

from operator import itemgetter
from typing import TYPE_CHECKING

from confmand.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
)
from confmand.raft.progress import Progress, ProgressState
from confmand.raft.quorum import majority, quorum_index
from confmand.raft.types import Entry, Membership, NodeId, Role

if TYPE_CHECKING:
    from confmand.raft.node import RaftNode

_PROBE = ProgressState.PROBE
_REPLICATE = ProgressState.REPLICATE
_SNAPSHOT = ProgressState.SNAPSHOT
_LEADER = Role.LEADER
_data_of = itemgetter(3)


def _cut_to_bytes(entries: list[Entry], limit: int) -> int:
    """Keep the longest prefix within `limit` bytes of data (at least one entry); returns its size."""
    size = 0
    for count, entry in enumerate(entries):
        if size + len(entry.data) > limit and count > 0:
            del entries[count:]
            break
        size += len(entry.data)
    return size


class Replicator:
    def __init__(self, node: RaftNode) -> None:
        self.node = node
        self.progress: dict[NodeId, Progress] = {}
        self._broadcast = False
        self._wanted: set[NodeId] = set()
        self._read_round = False
        self._commit_news = False
        self._wake_round = False
        self._single_voter = False
        cfg = node.config
        self._max_msgs = cfg.max_inflight_msgs
        self._max_bytes = cfg.max_inflight_bytes
        self._stall_limit = max(2, cfg.election_ticks // 2)

    # ------------------------------------------------------------------ membership

    def clear(self) -> None:
        self.progress.clear()
        self._broadcast = self._read_round = self._commit_news = self._wake_round = False
        self._wanted.clear()

    def reset(self, membership: Membership | None) -> None:
        """A new leader: every follower's position is unknown; probe from our last index."""
        self.clear()
        self.membership_changed(membership)
        for pr in self.progress.values():
            pr.recent_active = True

    def membership_changed(self, membership: Membership | None) -> None:
        if membership is None:
            return
        me = self.node.id
        wanted = membership.members - {me}
        for peer in list(self.progress):
            if peer not in wanted:
                del self.progress[peer]
        next_index = self.node.log.last_index + 1
        for peer in wanted.difference(self.progress):  # `frozenset - dict_keys` is a set, not frozen
            pr = self.progress[peer] = Progress(next_index)
            pr.recent_active = True
        self._single_voter = membership.voters == {me}

    def single_voter(self) -> bool:
        return self._single_voter

    def match_indexes(self) -> dict[NodeId, int]:
        return {peer: pr.match for peer, pr in self.progress.items()}

    def quorum_recently_active(self) -> bool:
        """CheckQuorum: did a majority of voters answer since the last check? Resets the marks."""
        membership = self.node.membership
        if membership is None:
            return False
        active = 0
        for voter in membership.voters:
            pr = self.progress.get(voter)
            if voter == self.node.id or (pr is not None and pr.recent_active):
                active += 1
        for pr in self.progress.values():
            pr.recent_active = False
        return active >= majority(len(membership.voters))

    # ------------------------------------------------------------------ what is wanted

    def want_broadcast(self) -> None:
        self._broadcast = True

    def want_read_round(self) -> None:
        self._read_round = True

    def commit_advanced(self) -> None:
        self._commit_news = True

    def want_wake_round(self) -> None:
        """A quiet leader woke: every follower hears from it in the next Ready, an append or a heartbeat."""
        self._wake_round = True

    def has_pending_sends(self) -> bool:
        return (
            self._broadcast or self._read_round or self._commit_news or self._wake_round or bool(self._wanted)
        )

    def transfer_to(self, target: NodeId) -> None:
        pr = self.progress[target]
        if pr.match == self.node.log.last_index:
            self.node.send_timeout_now(target)
        else:
            self._wanted.add(target)

    def tick(self) -> None:
        """Resend to followers that have not answered for a while: the message may be lost."""
        for peer, pr in self.progress.items():
            if pr.awaiting_answer():
                pr.stall_ticks += 1
                if pr.stall_ticks >= self._stall_limit:
                    pr.stall_ticks = 0
                    if pr.state is _REPLICATE:
                        pr.become_probe(pr.match + 1)
                    pr.paused = False
                    self._wanted.add(peer)

    # ------------------------------------------------------------------ sending

    def flush(self) -> None:
        sent_to: set[NodeId] = set()
        if self._read_round:
            self.broadcast_heartbeat()
            sent_to.update(self.progress)
        peers = self.progress.keys() if self._broadcast else self._wanted & self.progress.keys()
        for peer in peers:
            if self._send_appends(peer, self.progress[peer]):
                sent_to.add(peer)
        if self._commit_news or self._wake_round:
            # Tell idle followers the new commit index now rather than at the next heartbeat; wake
            # the quiet followers that got no append (an append wakes one as a heartbeat does).
            seq = self.node.reads.next_round() if self._wake_round else self.node.reads.read_seq
            for peer in self.progress.keys() - sent_to:
                self._send_heartbeat(peer, self.progress[peer], seq)
        self._broadcast = self._read_round = self._commit_news = self._wake_round = False
        self._wanted.clear()

    def broadcast_heartbeat(self, quiesce: bool = False) -> None:
        seq = self.node.reads.next_round()
        for peer, pr in self.progress.items():
            pr.appended = False
            self._send_heartbeat(peer, pr, seq, quiesce)

    def tick_heartbeat(self, quiesce: bool) -> None:
        """The heartbeat tick: a follower streamed appends since the last one has heard from us
        (its election timer restarted, its answers keep CheckQuorum fed) and is skipped — unless
        a read waits on a heartbeat round or the shard goes quiet, which need every follower."""
        everyone = quiesce or self.node.reads.waiting
        seq = self.node.reads.next_round()
        for peer, pr in self.progress.items():
            streamed = pr.appended and pr.state is _REPLICATE
            pr.appended = False
            if everyone or not streamed:
                self._send_heartbeat(peer, pr, seq, quiesce)

    def _send_heartbeat(self, peer: NodeId, pr: Progress, seq: int, quiesce: bool = False) -> None:
        node = self.node
        # Only what the follower is known to match may be committed through a heartbeat.
        commit = min(pr.match, node.log.commit)
        node.send(Heartbeat(node.shard, node.term, node.id, peer, commit, seq, quiesce))

    def all_hold(self, index: int) -> bool:
        """Whether every peer, learners included, is known to hold the log through `index`."""
        return all(pr.match >= index for pr in self.progress.values())

    def forget_activity(self) -> None:
        """CheckQuorum starts afresh: only answers from now on count (a quiet leader woke)."""
        for pr in self.progress.values():
            pr.recent_active = False

    def _send_appends(self, peer: NodeId, pr: Progress) -> bool:
        """Send `peer` what its window allows; returns whether anything left."""
        node = self.node
        log = node.log
        cfg = node.config
        sent = False
        while True:
            if pr.state is _SNAPSHOT:
                if not pr.paused:
                    self._send_snapshot_chunk(peer, pr)
                    sent = True
                return sent
            if not pr.can_send(self._max_msgs, self._max_bytes):
                return sent
            prev = pr.next_index - 1
            prev_term = log.term_at(prev)
            if prev_term is None:
                snapshot = node.storage.snapshot()
                if snapshot is None or snapshot.meta.index < log.snapshot_index:
                    raise AssertionError(f"log compacted to {log.snapshot_index} without a stored snapshot")
                pr.become_snapshot(snapshot)
                continue
            last = log.last_index
            if prev >= last and pr.state is _REPLICATE:
                return sent
            entries = log.slice(prev + 1, min(last, prev + cfg.max_append_entries) + 1)
            size = sum(map(len, map(_data_of, entries)))
            if size > cfg.max_append_bytes:
                size = _cut_to_bytes(entries, cfg.max_append_bytes)
            node.send(
                AppendEntries(
                    node.shard, node.term, node.id, peer, prev, prev_term, tuple(entries), log.commit
                )
            )
            sent = pr.appended = True
            pr.sent(prev + len(entries), size)
            if pr.state is _PROBE:
                return sent

    def _send_snapshot_chunk(self, peer: NodeId, pr: Progress) -> None:
        node = self.node
        snapshot = pr.snapshot
        assert snapshot is not None
        offset = pr.snapshot_offset
        data = snapshot.data[offset : offset + node.config.snapshot_chunk_bytes]
        done = offset + len(data) >= len(snapshot.data)
        node.send(InstallSnapshot(node.shard, node.term, node.id, peer, snapshot.meta, offset, data, done))
        pr.paused = True

    # ------------------------------------------------------------------ answers

    def _progress_of(self, src: NodeId) -> Progress | None:
        pr = self.progress.get(src)
        if pr is None:
            self.node.dropped["unknown_peer"] += 1
            return None
        pr.recent_active = True
        return pr

    def on_append_response(self, msg: AppendEntriesResponse) -> None:
        pr = self._progress_of(msg.src)
        if pr is None:
            return
        node = self.node
        log = node.log
        if max(msg.match_index, msg.reject_index, msg.conflict_index - 1) > log.last_index:
            node.dropped["index_out_of_range"] += 1  # no follower can hold more than we sent
            return
        if msg.success:
            advanced = pr.acknowledged(msg.match_index)
            if pr.state is _PROBE or (
                pr.state is _SNAPSHOT and pr.snapshot is not None and pr.match >= pr.snapshot.meta.index
            ):
                pr.become_replicate()
            if advanced:
                node.maybe_commit()
                if node.role is not _LEADER:
                    return  # its own removal committed and it stepped down: nothing more to send
            if node.transferee == msg.src and pr.match == log.last_index:
                node.send_timeout_now(msg.src)
            self._wanted.add(msg.src)
            return
        stale = (
            pr.state is _SNAPSHOT
            or (pr.state is _REPLICATE and msg.reject_index <= pr.match)
            or (pr.state is _PROBE and msg.reject_index != pr.next_index - 1)
        )
        if stale:
            return
        pr.become_probe(max(1, min(self._next_after_reject(msg), msg.reject_index)))
        self._wanted.add(msg.src)

    def _next_after_reject(self, msg: AppendEntriesResponse) -> int:
        """Skip the follower's whole conflicting term at once (§5.3, the optimisation)."""
        if msg.conflict_term > 0:
            index = self.node.log.last_index_of_term(msg.conflict_term, msg.reject_index)
            if index is not None:
                return index + 1
        return msg.conflict_index

    def on_heartbeat_response(self, msg: HeartbeatResponse) -> None:
        pr = self._progress_of(msg.src)
        if pr is None:
            return
        node = self.node
        if msg.read_seq > pr.read_seq:
            pr.read_seq = msg.read_seq
            self._confirm_reads()
        if msg.last_index < pr.match:
            # It holds less than it acknowledged, which a replica's own log never does: the
            # acknowledgement came late from an earlier replica on that node, deleted since and
            # started again empty (docs/raft.md, *Leaving a shard*; simulator seed 212: the leader
            # probed above the new log forever) — or this answer is older than the acknowledgement.
            # Either way, probing again from the log it reports is safe.
            pr.forget_match(msg.last_index)
            pr.become_probe(msg.last_index + 1)
        if pr.state is _PROBE:
            pr.paused = False
        if pr.match < node.log.last_index:
            self._wanted.add(msg.src)

    def _confirm_reads(self) -> None:
        node = self.node
        membership = node.membership
        if membership is None:
            return
        seqs = {peer: pr.read_seq for peer, pr in self.progress.items()}
        seqs[node.id] = node.reads.read_seq
        node.reads.confirm(quorum_index(membership.voters, seqs))

    def on_snapshot_response(self, msg: InstallSnapshotResponse) -> None:
        pr = self._progress_of(msg.src)
        if pr is None:
            return
        node = self.node
        if msg.snapshot_index > node.log.last_index:
            node.dropped["index_out_of_range"] += 1
            return
        if msg.installed:
            if pr.acknowledged(msg.snapshot_index):
                node.maybe_commit()
                if node.role is not _LEADER:
                    return  # stepped down (see on_append_response)
            if pr.state is _SNAPSHOT:
                pr.become_replicate()
            self._wanted.add(msg.src)
            return
        snapshot = pr.snapshot
        if pr.state is not _SNAPSHOT or snapshot is None or snapshot.meta.index != msg.snapshot_index:
            return
        pr.snapshot_offset = min(msg.next_offset, len(snapshot.data))
        pr.paused = False
        pr.stall_ticks = 0
        self._wanted.add(msg.src)
