"""The export document of `confctl export` and what `confctl import` makes of one. Pure.

A document (JSON or YAML, the same structure):

    confman_export: 1
    prefix: app/            # what was exported: every key under it
    exported_at: ...        # when (UTC, ISO 8601), for people
    versions: {"1": "3:40"} # per shard, the version its keys were read at
    keys:
      app/db/url: postgres://db1        # a value that is UTF-8 text, as text
      app/cert: {base64: MIIB...}       # any other value, as base64

An import compares the document's keys with the cluster's and plans, per namespace (the text
before a key's first `/`, which one shard holds), the puts that make each key what the document
says, and with `prune` the deletes of keys under the document's prefix it does not list. Each
namespace's plan is then applied as one transaction whose compares pin every key it touches to
the version read (absent ones to absence): all of it is written, or, if anything changed in
between, none of it (confctl/commands/transfer.py).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from confmand.protocol.shardmap import namespace_of

FORMAT: Final = 1
FORMAT_FIELD: Final = "confman_export"


class DocumentError(ValueError):
    """The file is not an export document; the message says where."""


@dataclass(frozen=True, slots=True)
class Document:
    prefix: str
    keys: dict[str, bytes]
    versions: dict[str, str] = field(default_factory=dict)
    exported_at: str = ""

    def to_plain(self) -> dict[str, object]:
        """The document as JSON/YAML-ready objects, keys in order."""
        return {
            FORMAT_FIELD: FORMAT,
            "prefix": self.prefix,
            "exported_at": self.exported_at,
            "versions": dict(sorted(self.versions.items())),
            "keys": {key: _plain_value(value) for key, value in sorted(self.keys.items())},
        }


def _plain_value(value: bytes) -> object:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(value).decode("ascii")}


def document_from_plain(doc: object) -> Document:
    """Check and read a parsed document; raises DocumentError naming what is wrong."""
    if not isinstance(doc, Mapping):
        raise DocumentError("an export document is a map with confman_export, prefix and keys")
    if doc.get(FORMAT_FIELD) != FORMAT:
        raise DocumentError(
            f"{FORMAT_FIELD}: want {FORMAT} (a document confctl export wrote), got {doc.get(FORMAT_FIELD)!r}"
        )
    prefix = doc.get("prefix", "")
    if not isinstance(prefix, str):
        raise DocumentError("prefix: want a string")
    keys = doc.get("keys")
    if not isinstance(keys, Mapping):
        raise DocumentError("keys: want a map of key to value")
    values: dict[str, bytes] = {}
    for key, raw in keys.items():
        if not isinstance(key, str) or not key or "\x00" in key:
            raise DocumentError(f"keys: {key!r} is not a key (a non-empty string without NUL)")
        if not key.startswith(prefix):
            raise DocumentError(f"keys: {key!r} is not under the document's prefix {prefix!r}")
        values[key] = _value(key, raw)
    versions = doc.get("versions") or {}
    if not isinstance(versions, Mapping):
        raise DocumentError("versions: want a map of shard to version")
    exported_at = doc.get("exported_at") or ""
    return Document(prefix, values, {str(k): str(v) for k, v in versions.items()}, str(exported_at))


def _value(key: str, raw: Any) -> bytes:
    if isinstance(raw, str):
        return raw.encode("utf-8")
    if isinstance(raw, Mapping) and set(raw) == {"base64"} and isinstance(raw["base64"], str):
        try:
            return base64.b64decode(raw["base64"], validate=True)
        except binascii.Error as exc:
            raise DocumentError(f"keys: {key!r}: bad base64: {exc}") from None
    raise DocumentError(f"keys: {key!r}: a value is text or {{base64: ...}}, got {type(raw).__name__}")


@dataclass(frozen=True, slots=True)
class Current:
    """A key as the cluster holds it now."""

    value: bytes
    version: str  # term:index


@dataclass(frozen=True, slots=True)
class Change:
    op: str  # "add", "change" or "remove"
    key: str
    value: bytes | None  # the new value (None for a remove)
    expected: str | None  # the version the key must still be at (None: it must still be absent)


def plan(document: Document, current: Mapping[str, Current], prune: bool) -> dict[str, list[Change]]:
    """Per namespace, the changes that make the cluster's keys under the prefix what `document` says."""
    changes: dict[str, list[Change]] = {}
    for key, value in sorted(document.keys.items()):
        now = current.get(key)
        if now is None:
            change = Change("add", key, value, None)
        elif now.value != value:
            change = Change("change", key, value, now.version)
        else:
            continue
        changes.setdefault(namespace_of(key), []).append(change)
    if prune:
        for key in sorted(set(current) - set(document.keys)):
            if key.startswith(document.prefix):
                changes.setdefault(namespace_of(key), []).append(
                    Change("remove", key, None, current[key].version)
                )
    return changes
