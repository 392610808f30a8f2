"""The commands the config state machine applies: what a NORMAL log entry carries.

A command is built by the leader from a validated client request, stamped
with the leader's HLC and the request's principal and session, encoded with
`encode_command` and proposed. Every replica decodes and applies the same
bytes, so decoding is strict and deterministic: an entry that does not decode
is applied as a no-op that answers INVALID_REQUEST on every replica alike.

Wire form (msgpack, versioned): `[1, op_code, hlc, principal, session, body]`
where session is `None` or `[client_id, seq, ack]`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# The ops, txn parts and sessions are the wire's own types: the one definition both sides import.
from confmand.protocol.ops import (
    Cas,
    Delete,
    LeaseExpire,
    LeaseGrant,
    LeaseRevoke,
    Operation,
    Put,
    Rollback,
    Txn,
)
from confmand.protocol.types import Compare, CompareTarget, Session, TxnOp, TxnOpKind
from confmand.protocol.value import value_class

if TYPE_CHECKING:
    from confmand.kv.partitions import PartitionOp

__all__ = [
    "Cas",
    "Command",
    "CommandDecodeError",
    "Compare",
    "CompareTarget",
    "Delete",
    "LeaseExpire",
    "LeaseGrant",
    "LeaseRevoke",
    "Operation",
    "Put",
    "Rollback",
    "Session",
    "Txn",
    "TxnOp",
    "TxnOpKind",
]


@value_class
class Command:
    op: Operation | PartitionOp  # PartitionOp: a step of a partition move (kv/partitions.py)
    hlc: int  # the proposing leader's HLC stamp (see confmand/hlc.py); orders the audit log
    principal: str = "anonymous"
    session: Session | None = None


class CommandDecodeError(ValueError):
    """The bytes are not a command this version understands."""
