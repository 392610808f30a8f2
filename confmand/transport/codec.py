"""The peer wire format: one msgpack message per peer per loop turn, strictly validated.

A `PeerBatch` carries everything one node sends another in one loop turn: the
Raft messages of all shards, client requests forwarded to a leader, and the
leader's replies to forwarded requests. On the wire it is one msgpack array:

    [VERSION, from_node, hlc, raft, forwards, forward_replies]
    raft:            [[shard, tag, term, src, dst, *fields], ...]   (fields in _LAYOUTS order)
    entries:         [[term, index, kind, data], ...]
    snapshot meta:   [index, term, membership]   (membership: `Membership.encode()` bytes)
    forwards:        [[forward_id, shard_id, request], ...]
    forward_replies: [[forward_id, reply], ...]

Arrays with a type tag, never maps: smaller and faster to build and to check.

Invariants:
- `decode_peer_batch` raises `PeerDecodeError` (and nothing else) on any input
  that is not exactly what `encode_peer_batch` produces: wrong version, type,
  length, enum value, a negative integer, a node id below 1, an integer above
  64 bits, a membership that does not parse, a message whose `src` is not the
  batch's sender. The message names where the fault is.
- The shard id is written once per message: the decoded message's `shard` is
  the tuple's shard id, so the two can never disagree.
- The codec checks form, not Raft semantics (contiguous entries, terms in
  range...): that is `confmand.raft.validate`'s job, on the decoded objects.
- Tags are part of the wire format: never renumber one; add new ones at the end
  and bump `VERSION` for any change an older node could misread.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Final, NoReturn

import msgpack

from confmand.raft.messages import (
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

VERSION: Final = 1
_MAX_UINT64: Final = (1 << 64) - 1


class PeerDecodeError(ValueError):
    """Bytes from a peer that are not a valid peer batch; the message says where and why."""


class PeerEncodeError(ValueError):
    """A batch that cannot be put on the wire (a bug in the caller, not a network fault)."""


@dataclass(frozen=True, slots=True)
class ForwardRequest:
    """A client request, raw msgpack, forwarded by a follower to the leader of `shard_id`."""

    forward_id: int
    shard_id: int
    request: bytes

    def __init__(self, forward_id: int, shard_id: int, request: bytes) -> None:
        object.__setattr__(self, "forward_id", forward_id)
        object.__setattr__(self, "shard_id", shard_id)
        object.__setattr__(self, "request", request)


@dataclass(frozen=True, slots=True)
class ForwardReply:
    """The leader's reply to the forwarded request `forward_id`, raw msgpack."""

    forward_id: int
    reply: bytes

    def __init__(self, forward_id: int, reply: bytes) -> None:
        object.__setattr__(self, "forward_id", forward_id)
        object.__setattr__(self, "reply", reply)


@dataclass(frozen=True, slots=True)
class PeerBatch:
    from_node: int
    hlc: int
    raft: list[tuple[int, Message]]  # (shard_id, message)
    forwards: list[ForwardRequest]
    forward_replies: list[ForwardReply]
    # Drawn at random by each start of the sender: a new one tells the peers it restarted.
    incarnation: int = 0
    # The epoch of the sender's shard map: a node that learns of a newer one asks the sender for it.
    map_epoch: int = 0
    # The sender's data dir id (storage/identity.py); 0 from a node too old to send one.
    dir_id: int = 0
    # Nonzero: the receiver's data dir id, which the sender refuses (the receiver lost its state).
    refused_dir: int = 0
    # Round trips: the sender's monotonic time at sending; and, echoed, the `sent_at` of the last
    # batch it had from the receiver and how long it held that before this one (0.0: none).
    sent_at: float = 0.0
    echo_sent_at: float = 0.0
    echo_held_s: float = 0.0

    def __init__(  # noqa: PLR0917 (the fields, in order, as the generated one)
        self,
        from_node: int,
        hlc: int,
        raft: list[tuple[int, Message]],
        forwards: list[ForwardRequest],
        forward_replies: list[ForwardReply],
        incarnation: int = 0,
        map_epoch: int = 0,
        dir_id: int = 0,
        refused_dir: int = 0,
        sent_at: float = 0.0,
        echo_sent_at: float = 0.0,
        echo_held_s: float = 0.0,
    ) -> None:
        object.__setattr__(self, "from_node", from_node)
        object.__setattr__(self, "hlc", hlc)
        object.__setattr__(self, "raft", raft)
        object.__setattr__(self, "forwards", forwards)
        object.__setattr__(self, "forward_replies", forward_replies)
        object.__setattr__(self, "incarnation", incarnation)
        object.__setattr__(self, "map_epoch", map_epoch)
        object.__setattr__(self, "dir_id", dir_id)
        object.__setattr__(self, "refused_dir", refused_dir)
        object.__setattr__(self, "sent_at", sent_at)
        object.__setattr__(self, "echo_sent_at", echo_sent_at)
        object.__setattr__(self, "echo_held_s", echo_held_s)


_BATCH_FIELDS_MIN = 8  # what a node sends that predates data dir ids
_BATCH_FIELDS_DIRS = 10  # ... that predates round-trip times
_BATCH_FIELDS = 13


class _Bad(Exception):
    """Raised deep in the decoder; the caller prefixes where it happened."""


# ------------------------------------------------------------------ field checkers


def _uint(value: object) -> int:
    if type(value) is not int or value < 0:
        raise _Bad(f"must be a non-negative integer (got {_show(value)})")
    return value


def _node_id(value: object) -> int:
    if type(value) is not int or value < 1:
        raise _Bad(f"must be a node id >= 1 (got {_show(value)})")
    return value


def _bool(value: object) -> bool:
    if type(value) is not bool:
        raise _Bad(f"must be a boolean (got {_show(value)})")
    return value


def _bytes(value: object) -> bytes:
    if type(value) is not bytes:
        raise _Bad(f"must be bytes (got {_show(value)})")
    return value


def _array(value: object, length: int | None = None) -> tuple[Any, ...]:
    if type(value) is not tuple:
        raise _Bad(f"must be an array (got {_show(value)})")
    if length is not None and len(value) != length:
        raise _Bad(f"must be an array of {length} items (got {len(value)})")
    return value


_MEMBERSHIP_RE: Final = re.compile(
    rb"v((?:[1-9][0-9]*)(?:,[1-9][0-9]*)*);l((?:[1-9][0-9]*(?:,[1-9][0-9]*)*)?)"
)


def parse_membership(data: bytes) -> Membership:
    """`Membership.decode`, strictly: ASCII decimal node ids >= 1, no blanks, signs or duplicates.

    Raises ValueError with a message naming the fault.
    """
    match = _MEMBERSHIP_RE.fullmatch(data)
    if match is None:
        raise ValueError(f"not an encoded membership (want b'v1,2,3;l4'): {data[:64]!r}")
    voters = [int(n) for n in match.group(1).split(b",")]
    learners = [int(n) for n in match.group(2).split(b",") if n]
    if len(set(voters)) != len(voters) or len(set(learners)) != len(learners):
        raise ValueError(f"membership lists a node twice: {data[:64]!r}")
    return Membership(frozenset(voters), frozenset(learners))  # rejects voter-and-learner


def _membership(value: object) -> Membership:
    try:
        return parse_membership(_bytes(value))
    except ValueError as exc:
        raise _Bad(str(exc)) from None


def _meta(value: object) -> SnapshotMeta:
    index, term, membership = _array(value, 3)
    try:
        return SnapshotMeta(_uint(index), _uint(term), _membership(membership))
    except _Bad as exc:
        raise _Bad(f"snapshot meta: {exc}") from None


_KINDS: Final = {kind.value: kind for kind in EntryKind}


def _entries(value: object) -> tuple[Entry, ...]:
    # The decoder's hot path (every replicated entry passes here): whole-column checks run as C loops
    # (map/set/min) instead of a Python loop per entry; the slow loop only runs to name a culprit.
    items = _array(value)
    if not items:
        return ()
    if set(map(type, items)) != {tuple} or set(map(len, items)) != {4}:
        _entries_fault(items)
    terms, indexes, kinds, datas = zip(*items, strict=True)
    if (
        set(map(type, terms)) != {int}
        or set(map(type, indexes)) != {int}
        or set(map(type, kinds)) != {int}
        or set(map(type, datas)) != {bytes}
        or min(terms) < 0
        or min(indexes) < 0
        or not set(kinds) <= _KINDS.keys()
    ):
        _entries_fault(items)
    if EntryKind.MEMBERSHIP in kinds:
        for position, (_, _, kind, data) in enumerate(items):
            if kind == EntryKind.MEMBERSHIP:
                try:
                    parse_membership(data)
                except ValueError as exc:
                    raise _Bad(f"entries[{position}]: {exc}") from None
    # Entry._make is tuple.__new__ in C; calling Entry(...) would run the NamedTuple's Python __new__.
    return tuple(map(Entry._make, zip(terms, indexes, map(_KINDS.__getitem__, kinds), datas, strict=True)))


def _entries_fault(items: tuple[Any, ...]) -> NoReturn:
    """Raise naming the first malformed entry (the cold path, once the fast checks failed)."""
    for position, item in enumerate(items):
        if type(item) is not tuple or len(item) != 4:
            raise _Bad(f"entries[{position}]: must be an array [term, index, kind, data] (got {_show(item)})")
        term, index, kind, data = item
        if type(term) is not int or term < 0 or type(index) is not int or index < 0:
            raise _Bad(f"entries[{position}]: term and index must be non-negative integers")
        if type(kind) is not int or kind not in _KINDS:
            raise _Bad(f"entries[{position}]: kind must be one of {sorted(_KINDS)} (got {_show(kind)})")
        if type(data) is not bytes:
            raise _Bad(f"entries[{position}]: data must be bytes (got {_show(data)})")
    raise AssertionError("_entries_fault called on well-formed entries")


# ------------------------------------------------------------------ layouts

_Checker = Callable[[object], Any]
_Encoder = Callable[[Any], object]


def _plain(value: Any) -> object:
    return value


def _encode_meta(meta: SnapshotMeta) -> object:
    return (meta.index, meta.term, meta.membership.encode())


# Per message type: its wire tag and the fields after (shard, term, src, dst), in wire order.
# Entries go out as the Entry tuples themselves (msgpack packs NamedTuples and IntEnums natively).
_U = (_plain, _uint)
_B = (_plain, _bool)
_LAYOUTS: Final[dict[type, tuple[int, tuple[tuple[str, tuple[_Encoder, _Checker]], ...]]]] = {
    RequestVote: (
        0,
        (("last_log_index", _U), ("last_log_term", _U), ("pre_vote", _B), ("transfer", _B)),
    ),
    RequestVoteResponse: (1, (("vote_granted", _B), ("pre_vote", _B))),
    AppendEntries: (
        2,
        (
            ("prev_log_index", _U),
            ("prev_log_term", _U),
            ("entries", (_plain, _entries)),
            ("leader_commit", _U),
        ),
    ),
    AppendEntriesResponse: (
        3,
        (
            ("success", _B),
            ("match_index", _U),
            ("reject_index", _U),
            ("conflict_index", _U),
            ("conflict_term", _U),
        ),
    ),
    Heartbeat: (4, (("leader_commit", _U), ("read_seq", _U), ("quiesce", _B))),
    HeartbeatResponse: (5, (("read_seq", _U), ("last_index", _U))),
    InstallSnapshot: (
        6,
        (
            ("meta", (_encode_meta, _meta)),
            ("offset", _U),
            ("data", (_plain, _bytes)),
            ("done", _B),
        ),
    ),
    InstallSnapshotResponse: (
        7,
        (("snapshot_index", _U), ("next_offset", _U), ("installed", _B)),
    ),
    TimeoutNow: (8, ()),
    StaleCheck: (9, ()),
    Removed: (10, (("commit_index", _U), ("commit_term", _U))),
}
HEADER_FIELDS: Final = ("shard", "term", "src", "dst")

_BY_TAG: Final = {
    tag: (cls, tuple(name for name, _ in fields), tuple(check for _, (_, check) in fields))
    for cls, (tag, fields) in _LAYOUTS.items()
}
_ENCODERS: Final = {
    cls: (tag, tuple((name, encode) for name, (encode, _) in fields))
    for cls, (tag, fields) in _LAYOUTS.items()
}
# Layouts whose fields all go out as they are (all but InstallSnapshot): one C call reads them all.
_PLAIN_ENCODERS: Final = {
    cls: (tag, attrgetter("term", "src", "dst", *(name for name, _ in fields)))
    for cls, (tag, fields) in _LAYOUTS.items()
    if all(encode is _plain for _, (encode, _) in fields)
}


def layout_fields(cls: type) -> tuple[str, ...]:
    """The fields of `cls` in wire order (header first): tests check it covers the dataclass exactly."""
    return HEADER_FIELDS + tuple(name for name, _ in _LAYOUTS[cls][1])


# ------------------------------------------------------------------ encoding


def _encode_message(shard_id: int, msg: Message, from_node: int) -> tuple[object, ...]:
    plain = _PLAIN_ENCODERS.get(type(msg))
    layout = _ENCODERS.get(type(msg)) if plain is None else None
    if plain is None and layout is None:
        raise PeerEncodeError(f"not a Raft message: {type(msg).__name__}")
    if msg.shard != shard_id:
        raise PeerEncodeError(f"message for shard {msg.shard} filed under shard {shard_id}")
    if msg.src != from_node:
        raise PeerEncodeError(f"message from node {msg.src} in a batch from node {from_node}")
    if plain is not None:
        head: tuple[object, ...] = (shard_id, plain[0])
        return head + plain[1](msg)
    assert layout is not None
    tag, fields = layout
    head = (shard_id, tag, msg.term, msg.src, msg.dst)
    return head + tuple(encode(getattr(msg, name)) for name, encode in fields)


def encode_peer_batch(batch: PeerBatch) -> bytes:
    """The wire bytes of `batch`; raises PeerEncodeError if a value cannot go on the wire."""
    from_node = batch.from_node
    body = (
        VERSION,
        from_node,
        batch.hlc,
        [_encode_message(shard_id, msg, from_node) for shard_id, msg in batch.raft],
        [(f.forward_id, f.shard_id, f.request) for f in batch.forwards],
        [(r.forward_id, r.reply) for r in batch.forward_replies],
        batch.incarnation,
        batch.map_epoch,
        batch.dir_id,
        batch.refused_dir,
        batch.sent_at,
        batch.echo_sent_at,
        batch.echo_held_s,
    )
    try:
        return msgpack.packb(body, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise PeerEncodeError(f"cannot encode peer batch: {exc}") from exc


# ------------------------------------------------------------------ decoding


def decode_peer_batch(data: bytes) -> PeerBatch:
    """The batch in `data`; raises PeerDecodeError, never anything else, if it is not a valid one."""
    try:
        body = msgpack.unpackb(data, use_list=False, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types on garbage; all mean the same here
        raise PeerDecodeError(f"not a msgpack peer batch: {type(exc).__name__}: {exc}") from None
    where = "batch"
    try:
        fields = _array(body)
        # 8 fields from a node before data dir ids, 10 from one before round-trip times; fields
        # beyond the 13 known are ignored, so that one added later does not cut an older node off.
        count = len(fields)
        if count not in (_BATCH_FIELDS_MIN, _BATCH_FIELDS_DIRS) and count < _BATCH_FIELDS:
            raise _Bad(
                f"expected {_BATCH_FIELDS_MIN}, {_BATCH_FIELDS_DIRS} or at least {_BATCH_FIELDS} "
                f"fields, got {count}"
            )
        version, from_node, hlc, raft, forwards, replies, incarnation, map_epoch = fields[:_BATCH_FIELDS_MIN]
        dir_id, refused_dir = fields[_BATCH_FIELDS_MIN:_BATCH_FIELDS_DIRS] or (0, 0)
        where = "sent_at"
        times = tuple(_seconds(t) for t in fields[_BATCH_FIELDS_DIRS:_BATCH_FIELDS]) or (0.0, 0.0, 0.0)
        if version != VERSION or type(version) is not int:
            raise _Bad(f"unsupported peer codec version {_show(version)} (this node speaks {VERSION})")
        where = "from_node"
        sender = _node_id(from_node)
        where = "hlc"
        stamp = _uint(hlc)
        if stamp > _MAX_UINT64:
            raise _Bad("must fit in 64 bits")
        where = "incarnation"
        started = _uint(incarnation)
        where = "map_epoch"
        epoch = _uint(map_epoch)
        where = "dir_id"
        dir_ids = (_uint(dir_id), _uint(refused_dir))
        messages: list[tuple[int, Message]] = []
        for item in _array(raft):
            decoded = _decode_common(item, sender)
            if decoded is None:  # not a well-formed common message: the full checks name the fault
                where = f"raft[{len(messages)}]"
                decoded = _decode_message(item, sender)
            messages.append(decoded)
        forward_list = []
        for position, item in enumerate(_array(forwards)):
            where = f"forwards[{position}]"
            forward_id, shard_id, request = _array(item, 3)
            forward_list.append(ForwardRequest(_uint(forward_id), _uint(shard_id), _bytes(request)))
        reply_list = []
        for position, item in enumerate(_array(replies)):
            where = f"forward_replies[{position}]"
            forward_id, reply = _array(item, 2)
            reply_list.append(ForwardReply(_uint(forward_id), _bytes(reply)))
    except _Bad as bad:
        raise PeerDecodeError(f"{where}: {bad}") from None
    return PeerBatch(sender, stamp, messages, forward_list, reply_list, started, epoch, *dir_ids, *times)


def _seconds(value: object) -> float:
    if type(value) is not float or not 0.0 <= value < 1e12:
        raise _Bad(f"want a float of seconds, got {_show(value)}")
    return value


def _decode_common(item: object, sender: int) -> tuple[int, Message] | None:
    """The hot path: a well-formed message of a common type, checked in a few C-level tests.

    None when `item` is anything else, malformed or of another type: `_decode_message` then
    decodes it, or raises naming the fault. So this path accepts exactly what that one accepts,
    and builds the same message.
    """
    if type(item) is not tuple or len(item) < 5:
        return None
    tag = item[1]
    fast = _COMMON.get(tag) if type(tag) is int else None
    if fast is None or len(item) != fast[0]:
        return None
    shard, _, term, src, dst = item[:5]
    if not (type(shard) is type(term) is type(src) is type(dst) is int and src == sender):
        return None
    if shard < 0 or term < 0 or dst < 1:
        return None
    return fast[1](item)


def _append(f: tuple[Any, ...]) -> tuple[int, Message] | None:
    shard, _, term, src, dst, prev_index, prev_term, entries, commit = f
    if not (
        type(prev_index) is type(prev_term) is type(commit) is int and min(prev_index, prev_term, commit) >= 0
    ):
        return None
    try:
        return shard, AppendEntries(shard, term, src, dst, prev_index, prev_term, _entries(entries), commit)
    except _Bad:
        return None


def _append_response(f: tuple[Any, ...]) -> tuple[int, Message] | None:
    shard, _, term, src, dst, success, match, reject, conflict_index, conflict_term = f
    if not (
        type(success) is bool
        and type(match) is type(reject) is type(conflict_index) is type(conflict_term) is int
        and min(match, reject, conflict_index, conflict_term) >= 0
    ):
        return None
    msg = AppendEntriesResponse(shard, term, src, dst, success, match, reject, conflict_index, conflict_term)
    return shard, msg


def _heartbeat(f: tuple[Any, ...]) -> tuple[int, Message] | None:
    shard, _, term, src, dst, commit, read_seq, quiesce = f
    if not (
        type(commit) is type(read_seq) is int and commit >= 0 and read_seq >= 0 and type(quiesce) is bool
    ):
        return None
    return shard, Heartbeat(shard, term, src, dst, commit, read_seq, quiesce)


def _heartbeat_response(f: tuple[Any, ...]) -> tuple[int, Message] | None:
    shard, _, term, src, dst, read_seq, last_index = f
    if not (type(read_seq) is type(last_index) is int and read_seq >= 0 and last_index >= 0):
        return None
    return shard, HeartbeatResponse(shard, term, src, dst, read_seq, last_index)


# tag -> (items on the wire, decoder): the messages of every replicated write. The others (and
# any new type) take the generic path, `_decode_message`, which checks by the layouts alone.
_COMMON: Final[dict[int, tuple[int, Callable[[tuple[Any, ...]], tuple[int, Message] | None]]]] = {
    _LAYOUTS[cls][0]: (5 + len(_LAYOUTS[cls][1]), decode)
    for cls, decode in (
        (AppendEntries, _append),
        (AppendEntriesResponse, _append_response),
        (Heartbeat, _heartbeat),
        (HeartbeatResponse, _heartbeat_response),
    )
}


def _decode_message(item: object, sender: int) -> tuple[int, Message]:
    fields = _array(item)
    if len(fields) < 5:
        raise _Bad(f"must be an array [shard, tag, term, src, dst, ...] (got {len(fields)} items)")
    shard, tag, term, src, dst = fields[:5]
    if type(tag) is not int or tag not in _BY_TAG:
        raise _Bad(f"unknown message tag {_show(tag)}")
    cls, names, checkers = _BY_TAG[tag]
    if len(fields) != 5 + len(names):
        raise _Bad(f"{cls.__name__} must have {5 + len(names)} items (got {len(fields)})")
    shard_id = _field(cls, "shard", _uint, shard)
    if _field(cls, "src", _node_id, src) != sender:
        raise _Bad(f"{cls.__name__}.src: node {src} in a batch from node {sender}")
    values = [
        _field(cls, name, check, value)
        for name, check, value in zip(names, checkers, fields[5:], strict=True)
    ]
    msg = cls(shard_id, _field(cls, "term", _uint, term), src, _field(cls, "dst", _node_id, dst), *values)
    return shard_id, msg


def _field(cls: type, name: str, check: _Checker, value: object) -> Any:
    try:
        return check(value)
    except _Bad as exc:
        raise _Bad(f"{cls.__name__}.{name}: {exc}") from None


def _show(value: object) -> str:
    """A short rendering of a bad value for an error message (bounded: it may be hostile)."""
    if isinstance(value, tuple):
        return f"an array of {len(value)} items"
    if isinstance(value, dict):
        return f"a map of {len(value)} items"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
