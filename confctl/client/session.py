"""The client session: exactly-once write numbering and the read-your-writes version token.

Invariants:
- `client_id` is fixed for the session's life (16 random bytes chosen by the shell).
- `seq` numbers writes from 1 and is taken once per *write call*: every retry of
  that call reuses it, which is what makes retries exactly-once on the server.
- `ack` is the lowest seq still awaiting its reply (or the next seq to hand out
  when none is): every seq below it has had its answer, so the server may forget
  them. A write leaves the outstanding set when it gets a final answer or when
  the call gives up (its outcome is then unknown, and it will never be retried).
- `token` only grows: it is the newest version or applied index seen in any
  reply, the floor of `version` reads when read-your-writes is on. Against a
  sharded cluster there is one token per shard (`tokens`): the shards' logs are
  unrelated, so a write on one shard says nothing of how far another must be.
  `token` is then left to calls that were not routed (an older, unsharded server).
  Seqs stay one sequence for the whole session: a server keeps them per shard
  and tolerates the gaps the other shards' writes leave.
- `hlc` only grows: the largest HLC stamp seen, sent with every request so the
  audit order respects this client's causality.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from confctl.client.types import ABSENT, Version

CLIENT_ID_BYTES = 16


@dataclass(slots=True)
class Session:
    client_id: bytes
    read_your_writes: bool = True
    next_seq: int = 1
    outstanding: set[int] = field(default_factory=set)
    token: Version | None = None
    tokens: dict[int, Version] = field(default_factory=dict)  # shard -> its token
    hlc: int = 0

    def __post_init__(self) -> None:
        if not 1 <= len(self.client_id) <= 64:
            raise ValueError("client_id must be 1 to 64 bytes")

    def begin_write(self) -> int:
        seq = self.next_seq
        self.next_seq += 1
        self.outstanding.add(seq)
        return seq

    def finish_write(self, seq: int) -> None:
        self.outstanding.discard(seq)

    @property
    def ack(self) -> int:
        return min(self.outstanding, default=self.next_seq)

    def observe_version(self, version: Version | None, shard: int | None = None) -> None:
        """Raise the token of `shard` (None: of an unrouted call) to `version` if it is newer."""
        if version is None:
            return
        if shard is None:
            if version.newer_than(self.token):
                self.token = version
        elif version.newer_than(self.tokens.get(shard)):
            self.tokens[shard] = version

    def observe_hlc(self, hlc: object) -> None:
        if isinstance(hlc, int) and not isinstance(hlc, bool) and hlc > self.hlc:
            self.hlc = hlc

    def read_floor(self, explicit: Version | None, shard: int | None = None) -> Version:
        """The `min_version` of a `version` read: the caller's, else the shard's token, else 0:0."""
        if explicit is not None:
            return explicit
        token = self.token if shard is None else self.tokens.get(shard)
        if self.read_your_writes and token is not None:
            return token
        return ABSENT
