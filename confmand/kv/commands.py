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

from dataclasses import dataclass

# Txn parts and sessions are the wire's own types: the one definition both sides import.
from confmand.protocol.types import Compare, CompareTarget, Session, TxnOp, TxnOpKind, Version

__all__ = [
    "Cas",
    "Command",
    "CommandDecodeError",
    "Compare",
    "CompareTarget",
    "Delete",
    "Operation",
    "Put",
    "Session",
    "Txn",
    "TxnOp",
    "TxnOpKind",
]


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: bytes


@dataclass(frozen=True, slots=True)
class Delete:
    key: str


@dataclass(frozen=True, slots=True)
class Cas:
    """Write `value` if the key's current state matches exactly one expectation.

    `expected_version == ABSENT` (0:0) means "the key must not exist".
    """

    key: str
    value: bytes
    expected_version: Version | None = None
    expected_value: bytes | None = None


@dataclass(frozen=True, slots=True)
class Txn:
    """If every compare holds, apply `success` in order, else `failure`: one entry, one version."""

    compare: tuple[Compare, ...]
    success: tuple[TxnOp, ...]
    failure: tuple[TxnOp, ...] = ()


Operation = Put | Delete | Cas | Txn


@dataclass(frozen=True, slots=True)
class Command:
    op: Operation
    hlc: int  # the proposing leader's HLC stamp (see confmand/hlc.py); orders the audit log
    principal: str = "anonymous"
    session: Session | None = None


class CommandDecodeError(ValueError):
    """The bytes are not a command this version understands."""
