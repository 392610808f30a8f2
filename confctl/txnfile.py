"""The JSON document `confctl txn FILE` reads, parsed into the client's Compare and TxnOp values.

    {"compare": [{"key": "app/mode", "target": "version", "version": "3:17"},
                 {"key": "app/mode", "target": "value", "value": "blue"},
                 {"key": "app/lock", "target": "exists", "exists": false}],
     "success": [{"op": "put", "key": "app/mode", "value": "green"},
                 {"op": "delete", "key": "app/old"}],
     "failure": []}

Values are UTF-8 text, or base64 when the object also has
`"value_encoding": "base64"` (the same marker `--output json` prints). All three
lists are optional (default empty). Parsing is strict: an unknown field is a
typo, so it is refused; every error names where it is (`success[1].value`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping

from confctl.client.types import Compare, TxnOp, Version

TOP_FIELDS = frozenset({"compare", "success", "failure"})
COMPARE_FIELDS = {
    "version": frozenset({"key", "target", "version"}),
    "value": frozenset({"key", "target", "value", "value_encoding"}),
    "exists": frozenset({"key", "target", "exists"}),
}
OP_FIELDS = {"put": frozenset({"op", "key", "value", "value_encoding"}), "delete": frozenset({"op", "key"})}

TxnDoc = tuple[list[Compare], list[TxnOp], list[TxnOp]]


class TxnFileError(ValueError):
    """The document is not a valid txn; the message says where."""


def parse_text(text: str) -> TxnDoc:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TxnFileError(f"not JSON: {exc}") from exc
    return parse(doc)


def parse(doc: object) -> TxnDoc:
    where = "txn"
    if not isinstance(doc, dict):
        raise TxnFileError("a txn document must be a JSON object with compare, success and failure lists")
    _no_unknown(doc, TOP_FIELDS, where)
    compare = [_compare(c, f"compare[{i}]") for i, c in enumerate(_list(doc, "compare"))]
    success = [_op(o, f"success[{i}]") for i, o in enumerate(_list(doc, "success"))]
    failure = [_op(o, f"failure[{i}]") for i, o in enumerate(_list(doc, "failure"))]
    return compare, success, failure


def _list(doc: Mapping[str, object], name: str) -> list[object]:
    items = doc.get(name, [])
    if not isinstance(items, list):
        raise TxnFileError(f"{name} must be a list")
    return items


def _no_unknown(obj: Mapping[str, object], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise TxnFileError(
            f"{where}: unknown field(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})"
        )


def _str(obj: Mapping[str, object], name: str, where: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        raise TxnFileError(f"{where}.{name} must be a non-empty string")
    return value


def _value(obj: Mapping[str, object], where: str) -> bytes:
    text = obj.get("value")
    if not isinstance(text, str):
        raise TxnFileError(f"{where}.value must be a string")
    encoding = obj.get("value_encoding", "utf-8")
    if encoding == "utf-8":
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise TxnFileError(f"{where}.value is not valid UTF-8 text") from exc
    if encoding == "base64":
        try:
            return base64.b64decode(text, validate=True)
        except binascii.Error as exc:
            raise TxnFileError(f"{where}.value is not base64: {exc}") from exc
    raise TxnFileError(f"{where}.value_encoding must be utf-8 or base64, got {encoding!r}")


def _compare(obj: object, where: str) -> Compare:
    if not isinstance(obj, dict):
        raise TxnFileError(f"{where} must be an object")
    target = obj.get("target")
    if target not in COMPARE_FIELDS:
        raise TxnFileError(f"{where}.target must be version, value or exists, got {target!r}")
    _no_unknown(obj, COMPARE_FIELDS[target], where)
    key = _str(obj, "key", where)
    if target == "version":
        try:
            return Compare(key, "version", version=Version.parse(_str(obj, "version", where)))
        except ValueError as exc:
            raise TxnFileError(f"{where}.version: {exc}") from exc
    if target == "value":
        return Compare(key, "value", value=_value(obj, where))
    exists = obj.get("exists")
    if not isinstance(exists, bool):
        raise TxnFileError(f"{where}.exists must be true or false")
    return Compare(key, "exists", exists=exists)


def _op(obj: object, where: str) -> TxnOp:
    if not isinstance(obj, dict):
        raise TxnFileError(f"{where} must be an object")
    kind = obj.get("op")
    if kind not in OP_FIELDS:
        raise TxnFileError(f"{where}.op must be put or delete, got {kind!r}")
    _no_unknown(obj, OP_FIELDS[kind], where)
    key = _str(obj, "key", where)
    if kind == "put":
        return TxnOp("put", key, _value(obj, where))
    return TxnOp("delete", key)
