"""The simulated replica's state machine: a tiny key-value store with a running digest.

Commands are `key=value` bytes; NOOP and MEMBERSHIP entries change nothing but
the applied index and the digest. The digest chains every applied entry
(index, term, kind, data), so two replicas that applied the same entries
through an index hold the same digest there: the checker compares digests
per index, and a restored snapshot must carry the digest every replica had
at its index.

Invariant: `applied` only moves forward by one entry at a time, or jumps to a
snapshot's index on `restore`.
"""

from __future__ import annotations

import zlib

from confmand.raft import Entry, EntryKind

_NORMAL = EntryKind.NORMAL


class KvMachine:
    __slots__ = ("applied", "data", "digest")

    def __init__(self) -> None:
        self.applied = 0
        self.digest = 0
        self.data: dict[bytes, bytes] = {}

    def apply(self, entry: Entry) -> None:
        """Apply one committed entry; the caller has checked it is the next index."""
        self.applied = entry.index
        self.digest = zlib.crc32(entry.data, zlib.crc32(b"%d:%d:%d:" % entry[:3], self.digest))
        if entry.kind == _NORMAL:
            key, _, value = entry.data.partition(b"=")
            self.data[key] = value

    def encode(self) -> bytes:
        """Snapshot bytes: a header line `index digest`, then one `key=value` line per key, sorted."""
        lines = [b"%d %d" % (self.applied, self.digest)]
        lines.extend(key + b"=" + self.data[key] for key in sorted(self.data))
        return b"\n".join(lines)

    @classmethod
    def decode(cls, blob: bytes) -> KvMachine:
        """The machine a snapshot holds; empty bytes (a bootstrap snapshot) is the empty machine."""
        machine = cls()
        if not blob:
            return machine
        header, *lines = blob.split(b"\n")
        applied, digest = header.split(b" ")
        machine.applied = int(applied)
        machine.digest = int(digest)
        for line in lines:
            key, _, value = line.partition(b"=")
            machine.data[key] = value
        return machine
