"""Core's part of every schema: Member's own fields, the shop, members, and the four events."""


from datetime import date, datetime
from typing import Any, Optional

import strawberry
from memberkit.core import auth, events
from memberkit.core.auth import MAX_TOKEN_TTL
from memberkit.core.context import Context
from memberkit.core.db import Prepared
from memberkit.core.models import Coupon as CouponRow
from memberkit.core.models import Member as MemberRow
from memberkit.core.models import MemberPersonal
from memberkit.core.wallet import available_clause
from memberkit.schema.context import RequestContext, VisibleError
from memberkit.schema.types import (
    Coupon,
    CouponKind,
    CouponStatus,
    Effect,
    Money,
    OrderPaidInput,
    OrderRefundedInput,
    PageInfo,
    Shop,
    SignUpMemberInput,
    UpdateMemberInput,
    UserError,
)
from sqlalchemy import bindparam, select


@strawberry.type(description="Member's core fields; each schema adds its plugins' fields to it.")
class MemberBase:
    id: strawberry.ID
    external_id: str
    joined_at: datetime
    birthday: Optional[date]
    tags: list[str]

    @strawberry.field(description="The member's wallet; AVAILABLE by default, all statuses with null.")
    async def coupons(self, info: strawberry.Info,
                      status: Optional[CouponStatus] = CouponStatus.AVAILABLE) -> list[Coupon]:
        context: RequestContext = info.context
        return await context.read(lambda ctx: member_coupons(ctx, self.id, status))


def member_coupons(ctx: Context, member_id: str, status: CouponStatus | None) -> list[Coupon]:
    query = select(CouponRow).where(CouponRow.shop == ctx.shop.slug, CouponRow.member_id == member_id)
    if status in (CouponStatus.USED, CouponStatus.WITHDRAWN):
        query = query.where(CouponRow.status == status.value)
    elif status is CouponStatus.AVAILABLE:
        query = query.where(available_clause(ctx.now))
    elif status is CouponStatus.EXPIRED:
        query = query.where(CouponRow.status == "AVAILABLE", CouponRow.valid_until <= ctx.now)
    rows = ctx.conn.execute(query.order_by(CouponRow.issued_at, CouponRow.id)).all()
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
                      MemberPersonal.birthday)
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
            "birthday": row.birthday, "tags": list(row.tags)}


async def load_member(info: strawberry.Info, member_type: type, member_id: str | None = None,
                      external_id: str | None = None):
    context: RequestContext = info.context
    fields = await context.read(lambda ctx: member_fields(ctx, member_id, external_id))
    return member_type(**fields) if fields else None


def event_payload(name: str, member_type: type, with_duplicate: bool = True) -> type:
    """A write's payload: the member (read only if asked for), what each plugin did, or the refusal."""

    async def member(root, info: strawberry.Info) -> Optional[member_type]:  # type: ignore[valid-type]
        return await load_member(info, member_type, root.member_id) if root.member_id else None

    namespace: dict[str, Any] = {
        "__annotations__": {"member_id": strawberry.Private[Optional[str]], "effects": list[Effect],
                            "errors": list[UserError]},
        "member": strawberry.field(resolver=member),
    }
    if with_duplicate:
        namespace["__annotations__"]["duplicate"] = bool
    return strawberry.type(type(name, (), namespace))


def payload_of(payload_type: type, result: events.EventResult, with_duplicate: bool = True):
    values = {"member_id": result.member_id, "effects": [Effect.of(e) for e in result.effects],
              "errors": [UserError.of(e) for e in result.errors]}
    if with_duplicate:
        values["duplicate"] = result.duplicate
    return payload_type(**values)


def _lines(lines) -> list[dict] | None:
    if lines is None:
        return None
    return [{"sku": line.sku, "quantity": line.quantity, "unit_price": line.unit_price, "category": line.category}
            for line in lines]


def contribute(builder) -> None:
    """Core's fields, added before any plugin's."""
    builder.extra_type(PageInfo)  # for plugins' Relay connections, part of core's contract

    # ------------------------------------------------------------ queries

    def shop(Member):
        def resolve(info: strawberry.Info) -> Shop:
            s = info.context.shop
            return Shop(slug=s.slug, name=s.name, currency=s.currency, timezone=s.timezone.key,
                        plugins=list(s.plugins))
        return resolve

    def member(Member):
        async def resolve(info: strawberry.Info, id: Optional[strawberry.ID] = None,
                          external_id: Optional[str] = None) -> Optional[Member]:
            """A member of this shop by memberkit id or by the integrator's externalId (integrator)."""
            info.context.require_integrator()
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

    # ------------------------------------------------------------ mutations

    def sign_up_member(Member):
        Payload = event_payload("SignUpMemberPayload", Member)

        async def resolve(info: strawberry.Info, input: SignUpMemberInput) -> Payload:
            result = await info.context.integrator_write(
                events.sign_up_member, external_id=input.external_id,
                phone=input.phone, email=input.email, birthday=input.birthday, referral_code=input.referral_code,
                tags=input.tags, joined_at=input.joined_at)
            return payload_of(Payload, result)
        return resolve

    def update_member(Member):
        Payload = event_payload("UpdateMemberPayload", Member, with_duplicate=False)

        async def resolve(info: strawberry.Info, input: UpdateMemberInput) -> Payload:
            result = await info.context.integrator_write(
                events.update_member, member_id=input.member_id,
                phone=input.phone, email=input.email, birthday=input.birthday, tags=input.tags)
            return payload_of(Payload, result, with_duplicate=False)
        return resolve

    def record_order_paid(Member):
        Payload = event_payload("OrderPaidPayload", Member)

        async def resolve(info: strawberry.Info, input: OrderPaidInput) -> Payload:
            result = await info.context.integrator_write(
                events.record_order_paid, order_id=input.order_id,
                member_id=input.member_id, total=input.total, lines=_lines(input.lines),
                coupon_codes=input.coupon_codes, points_redeemed=input.points_redeemed,
                reservation_ids=input.reservation_ids, checkout_id=input.checkout_id, paid_at=input.paid_at)
            return payload_of(Payload, result)
        return resolve

    def record_order_refunded(Member):
        Payload = event_payload("OrderRefundedPayload", Member)

        async def resolve(info: strawberry.Info, input: OrderRefundedInput) -> Payload:
            result = await info.context.integrator_write(
                events.record_order_refunded, order_id=input.order_id,
                refund_id=input.refund_id, amount=input.amount, refunded_at=input.refunded_at)
            return payload_of(Payload, result)
        return resolve

    def create_member_token(Member):
        @strawberry.type
        class MemberTokenPayload:
            token: Optional[str]
            expires_at: Optional[datetime]
            errors: list[UserError]

        async def resolve(info: strawberry.Info, member_id: strawberry.ID,
                          ttl_seconds: Optional[int] = 3600) -> MemberTokenPayload:
            """A signed token a storefront uses to act for this member until it expires."""
            context: RequestContext = info.context
            context.require_integrator()
            ttl = 3600 if ttl_seconds is None else ttl_seconds
            if not 60 <= ttl <= MAX_TOKEN_TTL:
                error = UserError(code="INVALID_TTL", field="ttlSeconds",
                                  message=f"ttlSeconds must be from 60 to {MAX_TOKEN_TTL}")
                return MemberTokenPayload(token=None, expires_at=None, errors=[error])
            exists = await context.read(lambda ctx: member_fields(ctx, member_id) is not None)
            if not exists:
                error = UserError(code="MEMBER_NOT_FOUND", field="memberId",
                                  message=f"no member {member_id!r} in this shop")
                return MemberTokenPayload(token=None, expires_at=None, errors=[error])
            token, expires = auth.mint_member_token(context.shop.slug, member_id, ttl)
            return MemberTokenPayload(token=token, expires_at=expires, errors=[])
        return resolve

    builder.mutation_field("sign_up_member", sign_up_member)
    builder.mutation_field("update_member", update_member)
    builder.mutation_field("record_order_paid", record_order_paid)
    builder.mutation_field("record_order_refunded", record_order_refunded)
    builder.mutation_field("create_member_token", create_member_token)

    from memberkit.schema import checkout

    checkout.contribute(builder)  # quoteCart, startCheckout, releaseCheckout
