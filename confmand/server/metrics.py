"""/metrics: the node's state in the Prometheus text format, read when scraped.

A scrape copies the node's figures as they stand between two loop turns (`NodeFigures.of`, on
the loop: 1,000 shards take about a millisecond) and turns them into text in a worker thread
(`render`), so the loop is not held while the text is built; nothing is counted on the hot path
for it. The per-shard figures come from the replicas, the event counts from `Node.counters`.
docs/daemon.md (*HTTP endpoints*) lists every metric; tests/server/test_node_http.py checks that
list and the Grafana dashboard's queries against what a scrape returns.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import GCCollector, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from confmand import __version__, native
from confmand.server.clock_health import clock_fault
from confmand.server.histograms import HistogramFigures

if TYPE_CHECKING:
    from confmand.server.node import Node


@dataclass(frozen=True, slots=True)
class ShardFigures:
    shard_id: int
    term: int
    role: str
    leader_id: int
    commit_index: int
    applied_index: int
    last_index: int
    proposals: int
    leader_changes: int


@dataclass(frozen=True, slots=True)
class NodeFigures:
    """What a scrape reports, copied from the node between two turns: plain values that a worker
    thread turns into text while the loop goes on (the text of 1,000 shards takes ~70 ms)."""

    node_id: int
    hot_modules: str
    map_epoch: int
    watches: int
    storage_error: bool
    clock_fault: bool
    shards: tuple[ShardFigures, ...]
    counters: tuple[tuple[str, int], ...]
    error_replies: tuple[tuple[str, int], ...]
    hlc_rejected: int
    hlc_ignored: int
    fsync_s: HistogramFigures
    write_batch_records: HistogramFigures
    peer_batch_messages: HistogramFigures
    requests: tuple[tuple[str, str, HistogramFigures], ...]  # (op, consistency, seconds)
    peer_rtt_s: tuple[tuple[int, HistogramFigures], ...]

    @classmethod
    def of(cls, node: Node) -> NodeFigures:
        histograms = node.histograms
        shards = tuple(
            ShardFigures(
                shard_id,
                replica.raft.term,
                replica.raft.role.value,
                replica.raft.leader_id or 0,
                replica.raft.commit_index,
                replica.applied.index,
                replica.raft.last_index,
                replica.proposals,
                replica.leader_changes,
            )
            for shard_id, replica in sorted(node.replicas.items())
        )
        return cls(
            node_id=node.node_id,
            hot_modules="compiled" if native.STATUS.active else "pure",
            map_epoch=node.shard_map.epoch,
            watches=len(node.watches),
            storage_error=node.storage_error is not None,
            clock_fault=clock_fault(node.clock, node.peer_contact, node.now) is not None,
            shards=shards,
            counters=tuple(sorted(node.counters.items())),
            error_replies=tuple(sorted(node.error_replies.items())),
            hlc_rejected=node.clock.rejected,
            hlc_ignored=node.clock.ignored,
            fsync_s=histograms.fsync_s.figures(),
            write_batch_records=histograms.write_batch_records.figures(),
            peer_batch_messages=histograms.peer_batch_messages.figures(),
            requests=tuple(
                (op, consistency, h.figures()) for (op, consistency), h in sorted(histograms.requests.items())
            ),
            peer_rtt_s=tuple((peer, h.figures()) for peer, h in sorted(histograms.peer_rtt_s.items())),
        )


class FiguresCollector(Collector):
    def __init__(self, figures: NodeFigures) -> None:
        self._figures = figures

    def collect(self) -> Iterator[Metric]:
        figures = self._figures
        info = GaugeMetricFamily(
            "confman_node_info",
            "1, labelled with this node's id, version and whether its hot modules are compiled.",
            labels=["node_id", "version", "hot_modules"],
        )
        info.add_metric([str(figures.node_id), __version__, figures.hot_modules], 1)
        yield info
        yield from _shards(figures.shards)
        yield from _node_gauges(figures)
        yield from _counters(figures)
        yield from _histograms(figures)


def _shards(shards: tuple[ShardFigures, ...]) -> Iterator[Metric]:
    label = ["shard"]
    term = GaugeMetricFamily("confman_shard_term", "The Raft term this replica is in.", labels=label)
    role = GaugeMetricFamily(
        "confman_shard_role", "1, labelled with this replica's Raft role.", labels=["shard", "role"]
    )
    leader = GaugeMetricFamily(
        "confman_shard_leader_id", "The node this replica knows as its shard's leader; 0: none.", labels=label
    )
    commit = GaugeMetricFamily(
        "confman_shard_commit_index", "The highest log index this replica knows committed.", labels=label
    )
    applied = GaugeMetricFamily(
        "confman_shard_applied_index",
        "The highest log index this replica's state machine applied.",
        labels=label,
    )
    last = GaugeMetricFamily(
        "confman_shard_last_index", "The last index in this replica's log.", labels=label
    )
    proposals = CounterMetricFamily(
        "confman_shard_proposals",
        "Writes this replica proposed while leading (since the start).",
        labels=label,
    )
    changes = CounterMetricFamily(
        "confman_shard_leader_changes",
        "Times the leader this replica knows changed (since the start).",
        labels=label,
    )
    for shard in shards:
        value = [str(shard.shard_id)]
        term.add_metric(value, shard.term)
        role.add_metric([value[0], shard.role], 1)
        leader.add_metric(value, shard.leader_id)
        commit.add_metric(value, shard.commit_index)
        applied.add_metric(value, shard.applied_index)
        last.add_metric(value, shard.last_index)
        proposals.add_metric(value, shard.proposals)
        changes.add_metric(value, shard.leader_changes)
    yield from (term, role, leader, commit, applied, last, proposals, changes)


def _node_gauges(figures: NodeFigures) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "confman_map_epoch", "The epoch of the shard map this node holds.", value=figures.map_epoch
    )
    yield GaugeMetricFamily("confman_watches", "Watches open on this node.", value=figures.watches)
    yield GaugeMetricFamily(
        "confman_storage_error",
        "1 while the node's storage refuses writes.",
        value=int(figures.storage_error),
    )
    yield GaugeMetricFamily(
        "confman_clock_fault",
        "1 while this node's clock is too far from its peers' to stamp.",
        value=int(figures.clock_fault),
    )


def _counters(figures: NodeFigures) -> Iterator[Metric]:
    events = CounterMetricFamily(
        "confman_events", "Driver events by name (the status request's counters).", labels=["event"]
    )
    for name, count in figures.counters:
        events.add_metric([name], count)
    yield events
    errors = CounterMetricFamily(
        "confman_error_replies",
        "Replies to clients and forwarding peers that carry an error, by code.",
        labels=["code"],
    )
    for code, count in figures.error_replies:
        errors.add_metric([code], count)
    yield errors
    yield CounterMetricFamily(
        "confman_hlc_rejected",
        "Peer HLC stamps refused as too far ahead of this node's clock.",
        value=figures.hlc_rejected,
    )
    yield CounterMetricFamily(
        "confman_hlc_ignored",
        "Client HLC stamps served without being merged (too far ahead).",
        value=figures.hlc_ignored,
    )


def _histograms(figures: NodeFigures) -> Iterator[Metric]:
    singles = (
        (
            "confman_fsync_seconds",
            "Synced LevelDB batch writes: seconds each took, fsync included.",
            figures.fsync_s,
        ),
        ("confman_write_batch_records", "Records per LevelDB batch written.", figures.write_batch_records),
        (
            "confman_peer_batch_messages",
            "Raft messages and forwarded requests per batch sent to a peer (one batch per peer per turn).",
            figures.peer_batch_messages,
        ),
    )
    for name, documentation, histogram in singles:
        family = HistogramMetricFamily(name, documentation)
        family.add_metric([], histogram.cumulative(), histogram.total)
        yield family
    requests = HistogramMetricFamily(
        "confman_request_seconds",
        "Client requests: seconds from arrival to reply on this node, by op and read consistency.",
        labels=["op", "consistency"],
    )
    for op, consistency, histogram in figures.requests:
        requests.add_metric([op, consistency], histogram.cumulative(), histogram.total)
    yield requests
    rtt = HistogramMetricFamily(
        "confman_peer_rtt_seconds",
        "Round trips to each peer: from sending it a batch to hearing back, less the time it held it.",
        labels=["peer"],
    )
    for peer, histogram in figures.peer_rtt_s:
        rtt.add_metric([str(peer)], histogram.cumulative(), histogram.total)
    yield rtt


def render(figures: NodeFigures) -> bytes:
    """The text of one scrape: `figures` and this process's CPU, memory, open files and GC.

    Safe in a worker thread: it reads only `figures` and /proc."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FiguresCollector(figures))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return generate_latest(registry)
