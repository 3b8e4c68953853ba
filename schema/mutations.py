"""Core's writes in every schema: the four events and member tokens, and the payload every write returns."""

from datetime import datetime
from typing import Any, Optional

import strawberry

from memberkit.core import members, orders
from memberkit.core.intake import EventResult
from memberkit.schema import auth
from memberkit.schema.auth import MAX_TOKEN_TTL
from memberkit.schema.context import RequestContext
from memberkit.schema.member import load_member, member_fields
from memberkit.schema.types import (
    Effect,
    OrderPaidInput,
    OrderRefundedInput,
    SignUpMemberInput,
    UpdateMemberInput,
    UserError,
    line_dicts,
)


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


def payload_of(payload_type: type, result: EventResult, with_duplicate: bool = True):
    values = {"member_id": result.member_id, "effects": [Effect.of(e) for e in result.effects],
              "errors": [UserError.of(e) for e in result.errors]}
    if with_duplicate:
        values["duplicate"] = result.duplicate
    return payload_type(**values)


def contribute(builder) -> None:
    """Core's mutations, added before any plugin's."""
    def sign_up_member(Member):
        Payload = event_payload("SignUpMemberPayload", Member)

        async def resolve(info: strawberry.Info, input: SignUpMemberInput) -> Payload:
            result = await info.context.integrator_write(
                members.sign_up_member, external_id=input.external_id,
                phone=input.phone, email=input.email, birthday=input.birthday, referral_code=input.referral_code,
                tags=input.tags, joined_at=input.joined_at)
            return payload_of(Payload, result)
        return resolve

    def update_member(Member):
        Payload = event_payload("UpdateMemberPayload", Member, with_duplicate=False)

        async def resolve(info: strawberry.Info, input: UpdateMemberInput) -> Payload:
            result = await info.context.integrator_write(
                members.update_member, member_id=input.member_id,
                phone=input.phone, email=input.email, birthday=input.birthday, tags=input.tags)
            return payload_of(Payload, result, with_duplicate=False)
        return resolve

    def record_order_paid(Member):
        Payload = event_payload("OrderPaidPayload", Member)

        async def resolve(info: strawberry.Info, input: OrderPaidInput) -> Payload:
            result = await info.context.integrator_write(
                orders.record_order_paid, order_id=input.order_id,
                member_id=input.member_id, total=input.total, lines=line_dicts(input.lines),
                coupon_codes=input.coupon_codes, points_redeemed=input.points_redeemed,
                reservation_ids=input.reservation_ids, checkout_id=input.checkout_id, paid_at=input.paid_at)
            return payload_of(Payload, result)
        return resolve

    def record_order_refunded(Member):
        Payload = event_payload("OrderRefundedPayload", Member)

        async def resolve(info: strawberry.Info, input: OrderRefundedInput) -> Payload:
            result = await info.context.integrator_write(
                orders.record_order_refunded, order_id=input.order_id,
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
