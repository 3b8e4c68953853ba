"""Core's reads in every schema: Member's own fields and wallet, the shop, and members by id."""

from datetime import date, datetime
from typing import Any, Optional

import strawberry
from sqlalchemy import bindparam, select

from memberkit.core.context import Context
from memberkit.core.db import Prepared
from memberkit.core.models import Coupon as CouponRow
from memberkit.core.models import Member as MemberRow
from memberkit.core.models import MemberPersonal
from memberkit.core.wallet import available_clause
from memberkit.schema.context import RequestContext, VisibleError
from memberkit.schema.types import Coupon, CouponKind, CouponStatus, Money, PageInfo, Shop

MAX_COUPONS = 500  # a wallet read's most coupons


@strawberry.type(description="Member's core fields; each schema adds its plugins' fields to it.")
class MemberBase:
    id: strawberry.ID
    external_id: str
    joined_at: datetime
    birthday: Optional[date]
    tags: list[str]
    erased_at: Optional[datetime] = strawberry.field(
        default=None, description="When the member was erased (eraseMember): personal data and tags gone, "
                                  "externalId a tombstone; null for a member who was not.")

    @strawberry.field(description="The member's wallet, oldest first; AVAILABLE by default, all statuses with "
                                  f"null; the first `first` (at most {MAX_COUPONS}).")
    async def coupons(self, info: strawberry.Info, status: Optional[CouponStatus] = CouponStatus.AVAILABLE,
                      first: Optional[int] = 100) -> list[Coupon]:
        context: RequestContext = info.context
        count = 100 if first is None else first
        if not 0 <= count <= MAX_COUPONS:
            raise VisibleError(f"coupons: first is {count}: expected 0 to {MAX_COUPONS}")
        return await context.read(lambda ctx: member_coupons(ctx, self.id, status, count))


def member_coupons(ctx: Context, member_id: str, status: CouponStatus | None, first: int = 100) -> list[Coupon]:
    query = select(CouponRow).where(CouponRow.shop == ctx.shop.slug, CouponRow.member_id == member_id)
    if status in (CouponStatus.USED, CouponStatus.WITHDRAWN):
        query = query.where(CouponRow.status == status.value)
    elif status is CouponStatus.AVAILABLE:
        query = query.where(available_clause(ctx.now))
    elif status is CouponStatus.EXPIRED:
        query = query.where(CouponRow.status == "AVAILABLE", CouponRow.valid_until <= ctx.now)
    rows = ctx.conn.execute(query.order_by(CouponRow.issued_at, CouponRow.id).limit(first)).all()
    return [coupon_view(row, ctx) for row in rows]


def coupon_view(row: Any, ctx: Context) -> Coupon:
    expired = row.status == "AVAILABLE" and row.valid_until is not None and row.valid_until <= ctx.now
    return Coupon(
        id=strawberry.ID(row.id), code=row.code, title=row.title, kind=CouponKind(row.kind), value=row.value,
        min_spend=Money(amount=row.min_spend, currency=ctx.shop.currency) if row.min_spend else None,
        valid_until=row.valid_until, status=CouponStatus.EXPIRED if expired else CouponStatus(row.status),
        source=row.source,
    )


_MEMBER_ROW = (select(MemberRow.id, MemberRow.external_id, MemberRow.joined_at, MemberRow.tags,
                      MemberPersonal.birthday, MemberRow.erased_at)
               .outerjoin(MemberPersonal, MemberPersonal.member_id == MemberRow.id)
               .where(MemberRow.shop == bindparam("shop")))
_MEMBER_BY_ID = Prepared(_MEMBER_ROW.where(MemberRow.id == bindparam("id")))
_MEMBER_BY_EXTERNAL_ID = Prepared(_MEMBER_ROW.where(MemberRow.external_id == bindparam("id")))


def member_fields(ctx: Context, member_id: str | None = None, external_id: str | None = None) -> dict | None:
    """A member's fields (personal data joined from its one table), or None if not in this shop."""
    if member_id:
        row = _MEMBER_BY_ID.first(ctx.conn, {"shop": ctx.shop.slug, "id": member_id})
    else:
        row = _MEMBER_BY_EXTERNAL_ID.first(ctx.conn, {"shop": ctx.shop.slug, "id": external_id})
    if row is None:
        return None
    return {"id": strawberry.ID(row.id), "external_id": row.external_id, "joined_at": row.joined_at,
            "birthday": row.birthday, "tags": list(row.tags), "erased_at": row.erased_at}


async def load_member(info: strawberry.Info, member_type: type, member_id: str | None = None,
                      external_id: str | None = None):
    context: RequestContext = info.context
    fields = await context.read(lambda ctx: member_fields(ctx, member_id, external_id))
    return member_type(**fields) if fields else None


def contribute(builder) -> None:
    """Core's queries, added before any plugin's fields."""
    builder.extra_type(PageInfo)  # for plugins' Relay connections, part of core's contract

    def shop(Member):
        def resolve(info: strawberry.Info) -> Shop:
            s = info.context.shop
            return Shop(slug=s.slug, name=s.name, currency=s.currency, timezone=s.timezone.key,
                        plugins=list(s.plugins), locale=s.locale)
        return resolve

    def member(Member):
        async def resolve(info: strawberry.Info, id: Optional[strawberry.ID] = None,
                          external_id: Optional[str] = None) -> Optional[Member]:
            """A member of this shop by memberkit id or by the integrator's externalId (integrator)."""
            info.context.require_integrator(allow="read")
            if (id is None) == (external_id is None):
                raise VisibleError("member: give exactly one of id and externalId")
            return await load_member(info, Member, id, external_id)
        return resolve

    def me(Member):
        async def resolve(info: strawberry.Info) -> Optional[Member]:
            """The signed-in member of a member token; null for a key (no member signed in)."""
            member_id = info.context.member_id
            return await load_member(info, Member, member_id) if member_id else None
        return resolve

    builder.query_field("shop", shop)
    builder.query_field("member", member)
    builder.query_field("me", me)
