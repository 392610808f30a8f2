"""The peer wire format: every message round-trips; anything else is a PeerDecodeError, never a crash."""

from __future__ import annotations

import dataclasses
import re

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from confmand.raft.messages import (
    MESSAGE_TYPES,
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    Removed,
    RequestVote,
    RequestVoteResponse,
    StaleCheck,
    TimeoutNow,
)
from confmand.raft.types import Entry, EntryKind, Membership, SnapshotMeta
from confmand.transport import codec
from confmand.transport.codec import (
    VERSION,
    ForwardReply,
    ForwardRequest,
    PeerBatch,
    PeerDecodeError,
    PeerEncodeError,
    decode_peer_batch,
    encode_peer_batch,
    layout_fields,
    parse_membership,
)

SENDER = 1
uints = st.integers(min_value=0, max_value=(1 << 64) - 1)
small = st.integers(min_value=0, max_value=1000)
node_ids = st.integers(min_value=1, max_value=(1 << 32))
memberships = st.builds(
    lambda voters, learners: Membership(voters, learners - voters),
    st.frozensets(node_ids, min_size=1, max_size=5),
    st.frozensets(node_ids, max_size=3),
)
entries = st.builds(
    Entry,
    uints,
    uints,
    st.sampled_from([EntryKind.NORMAL, EntryKind.NOOP]),
    st.binary(max_size=64),
) | st.builds(lambda t, i, m: Entry(t, i, EntryKind.MEMBERSHIP, m.encode()), uints, uints, memberships)


def _message(cls: type, **fields: st.SearchStrategy[object]) -> st.SearchStrategy[Message]:
    return st.builds(cls, shard=uints, term=uints, src=st.just(SENDER), dst=node_ids, **fields)


MESSAGES: dict[type, st.SearchStrategy[Message]] = {
    RequestVote: _message(
        RequestVote,
        last_log_index=uints,
        last_log_term=uints,
        pre_vote=st.booleans(),
        transfer=st.booleans(),
    ),
    RequestVoteResponse: _message(RequestVoteResponse, vote_granted=st.booleans(), pre_vote=st.booleans()),
    AppendEntries: _message(
        AppendEntries,
        prev_log_index=uints,
        prev_log_term=uints,
        entries=st.lists(entries, max_size=5).map(tuple),
        leader_commit=uints,
    ),
    AppendEntriesResponse: _message(
        AppendEntriesResponse,
        success=st.booleans(),
        match_index=uints,
        reject_index=uints,
        conflict_index=uints,
        conflict_term=uints,
    ),
    Heartbeat: _message(Heartbeat, leader_commit=uints, read_seq=uints),
    HeartbeatResponse: _message(HeartbeatResponse, read_seq=uints, last_index=uints),
    InstallSnapshot: _message(
        InstallSnapshot,
        meta=st.builds(SnapshotMeta, uints, uints, memberships),
        offset=uints,
        data=st.binary(max_size=64),
        done=st.booleans(),
    ),
    InstallSnapshotResponse: _message(
        InstallSnapshotResponse, snapshot_index=uints, next_offset=uints, installed=st.booleans()
    ),
    TimeoutNow: _message(TimeoutNow),
    StaleCheck: _message(StaleCheck),
    Removed: _message(Removed, commit_index=uints, commit_term=uints),
}
any_message = st.one_of(*MESSAGES.values())
batches = st.builds(
    PeerBatch,
    from_node=st.just(SENDER),
    hlc=uints,
    raft=st.lists(any_message.map(lambda m: (m.shard, m)), max_size=6),
    forwards=st.lists(st.builds(ForwardRequest, uints, uints, st.binary(max_size=32)), max_size=3),
    forward_replies=st.lists(st.builds(ForwardReply, uints, st.binary(max_size=32)), max_size=3),
    incarnation=uints,
    map_epoch=uints,
    dir_id=uints,
    refused_dir=uints,
    sent_at=st.floats(0.0, 1e9),
    echo_sent_at=st.floats(0.0, 1e9),
    echo_held_s=st.floats(0.0, 1e3),
)


def _batch(*messages: Message) -> PeerBatch:
    return PeerBatch(SENDER, 7, [(m.shard, m) for m in messages], [], [])


def _wire(*raft: tuple[object, ...], version: int = VERSION, sender: object = SENDER) -> bytes:
    return msgpack.packb((version, sender, 7, list(raft), [], [], 1, 1))


def test_a_batch_from_a_node_without_dir_ids_decodes_with_none() -> None:
    batch = decode_peer_batch(_wire())

    assert (batch.incarnation, batch.map_epoch, batch.dir_id, batch.refused_dir) == (1, 1, 0, 0)


def test_a_batch_from_a_node_without_round_trip_times_decodes_with_zeros() -> None:
    batch = decode_peer_batch(msgpack.packb((VERSION, SENDER, 7, [], [], [], 1, 1, 5, 6)))

    assert (batch.dir_id, batch.refused_dir) == (5, 6)
    assert (batch.sent_at, batch.echo_sent_at, batch.echo_held_s) == (0.0, 0.0, 0.0)


def test_fields_a_later_version_adds_after_the_known_ones_are_ignored() -> None:
    fields: tuple[object, ...] = (VERSION, SENDER, 7, [], [], [], 1, 1, 5, 6, 10.5, 9.25, 0.125, "later", [1])
    batch = decode_peer_batch(msgpack.packb(fields))

    assert (batch.dir_id, batch.refused_dir) == (5, 6)
    assert (batch.sent_at, batch.echo_sent_at, batch.echo_held_s) == (10.5, 9.25, 0.125)


def test_every_message_type_has_a_layout_covering_exactly_its_fields() -> None:
    assert set(MESSAGES) == set(MESSAGE_TYPES)
    for cls in MESSAGE_TYPES:
        assert layout_fields(cls) == tuple(f.name for f in dataclasses.fields(cls)), cls.__name__


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda c: c.__name__)
@settings(max_examples=60)
@given(data=st.data())
def test_every_message_type_round_trips(cls: type, data: st.DataObject) -> None:
    msg = data.draw(MESSAGES[cls])
    decoded = decode_peer_batch(encode_peer_batch(_batch(msg)))
    assert decoded.raft == [(msg.shard, msg)]
    assert type(decoded.raft[0][1]) is cls


@given(batches)
def test_whole_batches_round_trip(batch: PeerBatch) -> None:
    assert decode_peer_batch(encode_peer_batch(batch)) == batch


def test_decoded_entry_kinds_are_entry_kinds_not_bare_ints() -> None:
    msg = AppendEntries(3, 2, SENDER, 2, 0, 0, (Entry(2, 1, EntryKind.NOOP, b""),), 0)
    (entry,) = decode_peer_batch(encode_peer_batch(_batch(msg))).raft[0][1].entries  # type: ignore[union-attr]
    assert entry.kind is EntryKind.NOOP


COMMON = (AppendEntries, AppendEntriesResponse, Heartbeat, HeartbeatResponse)
odd_values = st.one_of(
    st.integers(-3, 3),
    st.booleans(),
    st.none(),
    st.text(max_size=2),
    st.binary(max_size=2),
    st.floats(allow_nan=False),
    st.tuples(st.integers(-1, 1)),
    st.tuples(st.tuples(st.integers(-1, 2), st.integers(-1, 2), st.integers(-1, 3), st.binary(max_size=2))),
)


@settings(max_examples=500)
@given(st.sampled_from(COMMON).flatmap(lambda cls: MESSAGES[cls]), st.data())
def test_the_fast_path_for_common_messages_accepts_exactly_what_the_generic_path_does(
    msg: Message, data: st.DataObject
) -> None:
    """`_decode_common` builds the message `_decode_message` builds, or leaves it to that one."""
    wire = msgpack.packb(codec._encode_message(msg.shard, msg, SENDER))
    fields = list(msgpack.unpackb(wire, use_list=False))
    mutated = data.draw(st.booleans())
    if mutated:
        fields[data.draw(st.integers(0, len(fields) - 1))] = data.draw(odd_values)
    item = tuple(fields)
    fast = codec._decode_common(item, SENDER)
    try:
        generic = codec._decode_message(item, SENDER)
    except codec._Bad:
        assert fast is None
    else:
        assert fast == generic or (fast is None and mutated)


@given(st.binary(max_size=200))
def test_random_bytes_raise_only_peer_decode_error(data: bytes) -> None:
    _decodes_cleanly_or_fails_cleanly(data)


@settings(max_examples=300)
@given(batches, st.data())
def test_mutated_batches_raise_only_peer_decode_error(batch: PeerBatch, data: st.DataObject) -> None:
    wire = bytearray(encode_peer_batch(batch))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(wire) - 1))
        action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if action == "flip":
            wire[position] = data.draw(st.integers(0, 255))
        elif action == "insert":
            wire.insert(position, data.draw(st.integers(0, 255)))
        elif len(wire) > 1:
            del wire[position]
    _decodes_cleanly_or_fails_cleanly(bytes(wire))


def _decodes_cleanly_or_fails_cleanly(data: bytes) -> None:
    """Whatever is accepted is a valid batch (it round-trips); whatever is not is a PeerDecodeError."""
    try:
        batch = decode_peer_batch(data)
    except PeerDecodeError as exc:
        message = str(exc)
        assert message
    else:
        assert decode_peer_batch(encode_peer_batch(batch)) == batch


# A structurally valid Heartbeat on the wire: shard, tag, term, src, dst, commit, read_seq, quiesce.
HEARTBEAT = (0, 4, 1, SENDER, 2, 0, 0, False)
BAD_WIRES = {
    "not msgpack": (b"\xc1", "not a msgpack peer batch"),
    "trailing bytes": (_wire() + b"\x00", "not a msgpack peer batch"),
    "not an array": (msgpack.packb({"v": 1}), "batch: must be an array"),
    "short batch": (msgpack.packb((1, 1, 0)), "batch: expected 8, 10 or at least 13 fields, got 3"),
    "9 fields": (
        msgpack.packb((VERSION, SENDER, 7, [], [], [], 1, 1, 5)),
        "expected 8, 10 or at least 13 fields, got 9",
    ),
    "11 fields": (
        msgpack.packb((VERSION, SENDER, 7, [], [], [], 1, 1, 5, 0, 1.0)),
        "expected 8, 10 or at least 13 fields, got 11",
    ),
    "negative send time": (
        msgpack.packb((VERSION, SENDER, 7, [], [], [], 1, 1, 5, 0, -1.0, 0.0, 0.0)),
        "sent_at: want a float of seconds, got -1.0",
    ),
    "negative dir id": (msgpack.packb((VERSION, SENDER, 7, [], [], [], 1, 1, -5, 0)), "dir_id: "),
    "future version": (_wire(version=2), "unsupported peer codec version 2"),
    "sender 0": (_wire(sender=0), "from_node: must be a node id >= 1"),
    "sender as bool": (_wire(sender=True), "from_node: must be a node id >= 1"),
    "unknown tag": (_wire((0, 99, 1, SENDER, 2)), "raft[0]: unknown message tag 99"),
    "short message": (_wire((0, 4, 1)), "raft[0]: must be an array [shard, tag"),
    "extra field": (_wire((*HEARTBEAT, 0)), "raft[0]: Heartbeat must have 8 items (got 9)"),
    "negative term": (
        _wire((0, 4, -1, SENDER, 2, 0, 0, False)),
        "raft[0]: Heartbeat.term: must be a non-negative",
    ),
    "negative index": (
        _wire((0, 4, 1, SENDER, 2, -5, 0, False)),
        "Heartbeat.leader_commit: must be a non-negative",
    ),
    "forged sender": (_wire((0, 4, 1, 3, 2, 0, 0, False)), "Heartbeat.src: node 3 in a batch from node 1"),
    "string for bool": (_wire((0, 1, 1, SENDER, 2, "yes", False)), "vote_granted: must be a boolean"),
    "int for bool": (_wire((0, 1, 1, SENDER, 2, 1, False)), "vote_granted: must be a boolean"),
    "str for bytes": (
        _wire((0, 6, 1, SENDER, 2, (0, 0, b"v1;l"), 0, "text", True)),
        "InstallSnapshot.data: must be bytes",
    ),
    "bad entry kind": (
        _wire((0, 2, 1, SENDER, 2, 0, 0, ((1, 1, 7, b""),), 0)),
        "entries[0]: kind must be one of [0, 1, 2] (got 7)",
    ),
    "short entry": (_wire((0, 2, 1, SENDER, 2, 0, 0, ((1, 1, 0),), 0)), "entries[0]: must be an array"),
    "negative entry index": (
        _wire((0, 2, 1, SENDER, 2, 0, 0, ((1, 1, 0, b""), (1, -2, 0, b"")), 0)),
        "entries[1]: term and index must be non-negative",
    ),
    "bad membership entry": (
        _wire((0, 2, 1, SENDER, 2, 0, 0, ((1, 1, 2, b"v-1;l"),), 0)),
        "entries[0]: not an encoded membership",
    ),
    "bad snapshot membership": (
        _wire((0, 6, 1, SENDER, 2, (0, 0, b"v1;l1"), 0, b"", True)),
        "InstallSnapshot.meta: snapshot meta: nodes [1] are both voter and learner",
    ),
    "bad forward": (
        msgpack.packb((1, 1, 0, [], [(1, 2)], [], 1, 1)),
        "forwards[0]: must be an array of 3 items",
    ),
    "bad forward reply": (
        msgpack.packb((1, 1, 0, [], [], [(-1, b"")], 1, 1)),
        "forward_replies[0]: must be a non",
    ),
    "negative incarnation": (msgpack.packb((1, 1, 0, [], [], [], -1, 1)), "incarnation: must be a non"),
    "negative map epoch": (msgpack.packb((1, 1, 0, [], [], [], 1, -1)), "map_epoch: must be a non"),
}


@pytest.mark.parametrize(("wire", "message"), BAD_WIRES.values(), ids=BAD_WIRES.keys())
def test_malformed_batches_are_rejected_with_a_message_naming_the_fault(wire: bytes, message: str) -> None:
    with pytest.raises(PeerDecodeError, match=re.escape(message)):
        decode_peer_batch(wire)


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"v;l",
        b"v1,,2;l",
        b"v01;l",
        b"v 1;l",
        b"v1_0;l",
        b"v+1;l",
        b"v1;l2;",
        b"v1,1;l",
        b"v\xff;l",
        b"l1;v2",
    ],
)
def test_membership_strings_parse_strictly(text: bytes) -> None:
    with pytest.raises(ValueError, match="membership"):
        parse_membership(text)


@given(memberships)
def test_membership_strings_round_trip(membership: Membership) -> None:
    assert parse_membership(membership.encode()) == membership


def test_encoding_a_message_under_another_shard_is_refused() -> None:
    msg = TimeoutNow(shard=3, term=1, src=SENDER, dst=2)
    with pytest.raises(PeerEncodeError, match="shard 3 filed under shard 4"):
        encode_peer_batch(PeerBatch(SENDER, 0, [(4, msg)], [], []))


def test_encoding_a_message_from_another_node_is_refused() -> None:
    msg = TimeoutNow(shard=0, term=1, src=2, dst=3)
    with pytest.raises(PeerEncodeError, match="from node 2 in a batch from node 1"):
        encode_peer_batch(_batch(msg))


def test_encoding_an_out_of_range_integer_is_refused() -> None:
    with pytest.raises(PeerEncodeError, match="cannot encode"):
        encode_peer_batch(PeerBatch(SENDER, 1 << 64, [], [], []))
