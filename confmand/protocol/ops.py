"""The shape of each operation's request: one immutable value class per op (value.py), and its wire fields.

The client builds a request from these (`to_wire()` gives the op's fields of the frame);
the server's parser (confmand/server/requests.py) validates a frame into the same types,
and the write ops are what a log entry carries (confmand/kv/commands.py). So an op's
fields are defined here once. `to_wire` leaves out optional fields at their defaults,
as the protocol allows.
"""

from __future__ import annotations

from confmand.protocol.types import Compare, TxnOp, Version, version_text
from confmand.protocol.value import value_class


@value_class
class Put:
    key: str
    value: bytes
    lease: int = 0  # attach the key to this lease of its shard (0: none)

    def to_wire(self) -> dict[str, object]:
        fields: dict[str, object] = {"key": self.key, "value": self.value}
        if self.lease:
            fields["lease"] = self.lease
        return fields


@value_class
class Delete:
    key: str

    def to_wire(self) -> dict[str, object]:
        return {"key": self.key}


@value_class
class Cas:
    """Write `value` if the key's current state matches exactly one expectation.

    `expected_version == ABSENT` (0:0) means "the key must not exist".
    """

    key: str
    value: bytes
    expected_version: Version | None = None
    expected_value: bytes | None = None
    lease: int = 0  # attach the key to this lease of its shard (0: none)

    def to_wire(self) -> dict[str, object]:
        fields: dict[str, object] = {"key": self.key, "value": self.value}
        if self.expected_version is not None:
            fields["expected_version"] = version_text(self.expected_version)
        if self.expected_value is not None:
            fields["expected_value"] = self.expected_value
        if self.lease:
            fields["lease"] = self.lease
        return fields


@value_class
class Txn:
    """If every compare holds, apply `success` in order, else `failure`: one entry, one version."""

    compare: tuple[Compare, ...]
    success: tuple[TxnOp, ...]
    failure: tuple[TxnOp, ...] = ()

    def to_wire(self) -> dict[str, object]:
        return {
            "compare": [c.to_wire() for c in self.compare],
            "success": [o.to_wire() for o in self.success],
            "failure": [o.to_wire() for o in self.failure],
        }


@value_class
class Rollback:
    """Write `key` back to what it was at `to_version` (a delete if it was absent then), read from
    its history as the entry applies; with `expected_version`, only if the key is still at that
    version (as a cas). Audited as a rollback naming `to_version`."""

    key: str
    to_version: Version
    expected_version: Version | None = None

    def to_wire(self) -> dict[str, object]:
        fields: dict[str, object] = {"key": self.key, "to_version": str(self.to_version)}
        if self.expected_version is not None:
            fields["expected_version"] = str(self.expected_version)
        return fields


@value_class
class LeaseGrant:
    """A lease of `ttl_ms` in the shard of `key`'s namespace; its id is the index of this entry."""

    key: str
    ttl_ms: int

    def to_wire(self) -> dict[str, object]:
        return {"key": self.key, "ttl_ms": self.ttl_ms}


@value_class
class LeaseRevoke:
    """End the lease now: every key attached to it is deleted."""

    key: str
    lease: int

    def to_wire(self) -> dict[str, object]:
        return {"key": self.key, "lease": self.lease}


@value_class
class LeaseExpire:
    """The shard's leader saw the lease run out: as a revoke (proposed by the daemon, never a client)."""

    lease: int

    def to_wire(self) -> dict[str, object]:
        return {"lease": self.lease}


Operation = Put | Delete | Cas | Txn | Rollback | LeaseGrant | LeaseRevoke | LeaseExpire


@value_class
class GetQuery:
    key: str
    at_version: Version | None = None  # the key as it was then, from its history (kv/past.py)

    def to_wire(self) -> dict[str, object]:
        fields: dict[str, object] = {"key": self.key}
        if self.at_version is not None:
            fields["at_version"] = str(self.at_version)
        return fields


@value_class
class ListQuery:
    prefix: str
    after: str | None = None
    limit: int = 100
    keys_only: bool = False
    at_version: Version | None = None  # the keys as they were then, from their history (kv/past.py)

    def to_wire(self) -> dict[str, object]:
        fields: dict[str, object] = {"prefix": self.prefix, "limit": self.limit}
        if self.after is not None:
            fields["after"] = self.after
        if self.keys_only:
            fields["keys_only"] = True
        if self.at_version is not None:
            fields["at_version"] = str(self.at_version)
        return fields


@value_class
class HistoryQuery:
    key: str
    limit: int = 100

    def to_wire(self) -> dict[str, object]:
        return {"key": self.key, "limit": self.limit}


@value_class
class AuditQuery:
    after_hlc: int | None = None
    limit: int = 100
    prefix: str = ""  # only records of keys under it

    def to_wire(self) -> dict[str, object]:
        fields: dict[str, object] = {"limit": self.limit}
        if self.after_hlc is not None:
            fields["after_hlc"] = self.after_hlc
        if self.prefix:
            fields["prefix"] = self.prefix
        return fields


@value_class
class BackupQuery:
    """A shard's whole state, at its leader's applied version (confmand/backup/)."""

    shard: int

    def to_wire(self) -> dict[str, object]:
        return {"shard": self.shard}


@value_class
class LeaseKeepAlive:
    """Keep the lease alive for another TTL: answered by the shard's leader, once it has confirmed
    it still leads (as a linearizable read), which is what restarts the lease's clock."""

    key: str
    lease: int

    def to_wire(self) -> dict[str, object]:
        return {"key": self.key, "lease": self.lease}


Query = GetQuery | ListQuery | HistoryQuery | AuditQuery | BackupQuery | LeaseKeepAlive
