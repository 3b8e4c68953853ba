"""The stamp card's part of the schema: ``Member.stamps``."""

from __future__ import annotations

import strawberry
from sqlalchemy import Connection, func, select

from mk_stamps.models import StampEntry


def total_stamps(conn: Connection, shop: str, member_id: str) -> int:
    query = select(func.coalesce(func.sum(StampEntry.stamps), 0)).where(
        StampEntry.shop == shop, StampEntry.member_id == member_id)
    return int(conn.execute(query).scalar_one())


async def stamps(root, info: strawberry.Info) -> int:
    context = info.context
    card_size = context.shop.settings_for("stamps").card_size
    total = await context.read(lambda ctx: total_stamps(ctx.conn, ctx.shop.slug, str(root.id)))
    return total % card_size


def contribute(builder) -> None:
    builder.member_field("stamps", stamps, description="Stamps on the member's current card.")
