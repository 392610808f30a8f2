"""One page out of the pages of several shards: a list across namespaces, the audit log. Pure.

Each shard is asked for the same page (the same `after` or `after_hlc`, the same
`limit`), so each shard's answer holds every one of its entries that can be among the
first `limit` of the union: the merged page is those first `limit`, and the caller
pages on from its last entry exactly as against one shard.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from confctl.client.types import AuditResult, ListResult, ReplyMeta


def list_pages(pages: Sequence[ListResult], limit: int) -> ListResult:
    """The first `limit` items of all pages in key order; `more` if any shard has more or items were cut.

    The merged page's `meta` is empty: each shard's `applied` is its own.
    """
    items = sorted((item for page in pages for item in page.items), key=lambda item: item.key)
    kept = tuple(items[:limit])
    more = len(items) > limit or any(page.more for page in pages)
    return ListResult(kept, more, kept[-1].key if more and kept else None, ReplyMeta())


def audit_pages(pages: Sequence[tuple[int | None, AuditResult]], limit: int) -> AuditResult:
    """The first `limit` records of all shards by (hlc, shard), each record naming its shard.

    A shard whose page says `more` has looked only as far as its `next_hlc` (with a prefix,
    perhaps not `limit` records far): records of the others past that horizon wait for the
    next page, or a record of that shard below them would be skipped. A page cut between two
    records with one HLC would lose the second on the next page (`after_hlc` is exclusive):
    the cut is moved before the tie, unless the tie fills the whole page.
    """
    horizons = [page.next_hlc for _, page in pages if page.more and page.next_hlc is not None]
    horizon = min(horizons, default=None)
    records = sorted(
        (
            r if r.shard is not None else dataclasses.replace(r, shard=shard)
            for shard, page in pages
            for r in page.records
            if horizon is None or r.hlc <= horizon
        ),
        key=lambda r: (r.hlc, r.shard or 0),
    )
    kept = records[:limit]
    cut = len(records) > limit
    if cut and kept and records[limit].hlc == kept[-1].hlc:
        tied = kept[-1].hlc
        before = [r for r in kept if r.hlc != tied]
        kept = before or kept
    more = cut or any(page.more for _, page in pages)
    next_hlc = (kept[-1].hlc if kept else None) if cut else horizon if more else None
    return AuditResult(tuple(kept), more, ReplyMeta(), next_hlc)
