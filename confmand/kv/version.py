"""A version token: the `term:index` of the log entry that wrote something.

Versions of one shard are totally ordered by `index` alone: two committed
entries never share an index, so `term` only makes a token self-describing
(and lets a reader tell a token from another shard history apart in logs).
`Version(0, 0)` is "absent": the version a key has before it exists.
"""

from __future__ import annotations

from typing import NamedTuple


class Version(NamedTuple):
    term: int
    # Shadows tuple.index(); Raft's own name wins, as in confmand.raft.types.Entry.
    index: int  # type: ignore[assignment]

    def __str__(self) -> str:
        return f"{self.term}:{self.index}"

    @staticmethod
    def parse(text: str) -> Version:
        """`"term:index"` -> Version; raises ValueError naming the bad token."""
        term_text, sep, index_text = text.partition(":")
        if not sep or not term_text.isdigit() or not index_text.isdigit():
            raise ValueError(f"not a version token (want term:index, e.g. 3:1042): {text!r}")
        return Version(int(term_text), int(index_text))


ABSENT = Version(0, 0)
