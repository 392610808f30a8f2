"""Structural checks on incoming messages: a malformed or impossible message is dropped, never obeyed.

The codec guarantees field types; these checks catch what types cannot:
wrong shard or receiver, negative terms and indices, entries that do not
follow `prev_log_index` or claim a term newer than the message. Each failure
returns a short reason that the core counts.
"""

from __future__ import annotations

from operator import itemgetter
from typing import cast

from confmand.raft.messages import (
    MESSAGE_TYPES,
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    Removed,
    RequestVote,
)
from confmand.raft.types import NodeId, ShardId

_term_of = itemgetter(0)
_index_of = itemgetter(1)
_KNOWN_TYPES = frozenset(MESSAGE_TYPES)


def check_message(raw: object, node_id: NodeId, shard: ShardId) -> str | None:
    """Why `raw` must be dropped, or None when it is a well-formed message."""
    if type(raw) not in _KNOWN_TYPES:
        return "unknown_type"
    msg = cast(Message, raw)
    if msg.shard != shard:
        return "wrong_shard"
    if msg.dst != node_id:
        return "wrong_destination"
    if msg.src == node_id:
        return "from_self"
    if msg.term < 0:
        return "negative_term"
    if isinstance(msg, AppendEntries):
        return _check_append(msg)
    if isinstance(msg, RequestVote):
        if msg.last_log_index < 0 or msg.last_log_term < 0 or msg.last_log_term > msg.term:
            return "index_out_of_range"
    elif isinstance(msg, AppendEntriesResponse):
        if min(msg.match_index, msg.reject_index, msg.conflict_index, msg.conflict_term) < 0:
            return "index_out_of_range"
    elif isinstance(msg, Heartbeat):
        if msg.leader_commit < 0 or msg.read_seq < 0:
            return "index_out_of_range"
    elif isinstance(msg, InstallSnapshot):
        if msg.offset < 0 or msg.meta.index < 0 or msg.meta.term > msg.term:
            return "index_out_of_range"
    elif isinstance(msg, InstallSnapshotResponse):
        if msg.next_offset < 0 or msg.snapshot_index < 0:
            return "index_out_of_range"
    elif isinstance(msg, Removed) and (msg.commit_index < 0 or not 0 <= msg.commit_term <= msg.term):
        return "index_out_of_range"
    return None


def _check_append(msg: AppendEntries) -> str | None:
    prev = msg.prev_log_index
    if prev < 0 or msg.prev_log_term < 0 or msg.leader_commit < 0 or msg.prev_log_term > msg.term:
        return "index_out_of_range"
    entries = msg.entries
    if entries:
        # Every entry, not just the ends: one out of place in the middle would corrupt the log.
        # map/itemgetter keeps this a C loop (about 40 ns an entry).
        if list(map(_index_of, entries)) != list(range(prev + 1, prev + 1 + len(entries))):
            return "entries_not_contiguous"
        terms = list(map(_term_of, entries))
        if terms[0] < msg.prev_log_term or terms[-1] > msg.term or terms != sorted(terms):
            return "entry_term_out_of_range"
    return None
