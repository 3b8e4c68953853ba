"""``memberkit members export``: the members a filter matches, streamed to CSV a page at a time through the
shop's own ``members`` query (the same filter, keyset cursor and limits as the API), never all in memory.

The columns are what tells members apart, never personal data: id, externalId, joinedAt, tags, and the
tier, lifecycle stage and segments where the shop's plugins serve them.
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Callable
from typing import IO, Any

from memberkit.core.runtime import Runtime
from memberkit.core.settings import Shop
from memberkit.schema.auth import Principal
from memberkit.schema.builder import build_schema
from memberkit.schema.context import RequestContext

PAGE = 200
# column -> the Member selection it needs, and how a node becomes the cell
OPTIONAL = {"tier": ("tier { code }", lambda n: (n["tier"] or {}).get("code", "")),
            "lifecycle": ("lifecycle { stage }", lambda n: (n["lifecycle"] or {}).get("stage", "")),
            "segments": ("segments", lambda n: " ".join(n["segments"]))}


class ExportError(Exception):
    """The shop cannot answer the export (no member search) or refused the filter; the message says why."""


def export(runtime: Runtime, shop: Shop, member_filter: dict[str, Any], out: IO[str],
           progress: Callable[[int, int], None] | None = None) -> int:
    """Write the CSV of the members `member_filter` (a MemberFilter's fields) matches; returns how many."""
    schema = build_schema(shop.plugins)
    if schema.get_type_by_name("MemberConnection") is None:
        raise ExportError(f"shop {shop.slug!r} has no member search: enable the segments plugin")
    member_fields = {field.name for field in schema.get_type_by_name("Member").fields}
    columns = [name for name in OPTIONAL if name in member_fields]
    query = ("query($counted: Boolean!, $filter: MemberFilter, $after: String, $first: Int) { members(filter: "
             "$filter, first: $first, after: $after) { totalCount @include(if: $counted) edges { node { id "
             "externalId joinedAt tags " + " ".join(OPTIONAL[c][0] for c in columns) + " } } pageInfo { "
             "hasNextPage endCursor } } }")
    context = RequestContext(runtime, Principal(shop.slug, "secret"), shop)
    writer = csv.writer(out)
    writer.writerow(["id", "externalId", "joinedAt", "tags", *columns])

    async def pages() -> int:
        written, after, total = 0, None, 0
        while True:
            result = await schema.execute(query, {"filter": member_filter, "after": after, "first": PAGE,
                                                  "counted": after is None}, context_value=context)
            if result.errors:
                raise ExportError("; ".join(error.message for error in result.errors))
            page = result.data["members"]
            total = page.get("totalCount", total)
            for edge in page["edges"]:
                node = edge["node"]
                writer.writerow([node["id"], node["externalId"], node["joinedAt"], " ".join(node["tags"]),
                                 *(OPTIONAL[c][1](node) for c in columns)])
            written += len(page["edges"])
            if progress:
                progress(written, max(total, written))
            if not page["pageInfo"]["hasNextPage"]:
                return written
            after = page["pageInfo"]["endCursor"]

    return asyncio.run(pages())
