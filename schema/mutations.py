"""Core's writes in every schema: the four events and member tokens, and the payload every write returns."""

import inspect
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Optional, get_type_hints

import strawberry

from memberkit.core import members, orders
from memberkit.core.intake import EventResult
from memberkit.schema import auth, erasure
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


def input_values(value: Any) -> Any:
    """An input object as the plain values a write takes: nested inputs become dicts, lists stay lists."""
    if isinstance(value, list):
        return [input_values(item) for item in value]
    if hasattr(value, "__strawberry_definition__"):
        return {name: input_values(item) for name, item in vars(value).items()}
    return value


def event_mutation(payload_name: str, run: Callable[..., Awaitable[EventResult]],
                   with_duplicate: bool = True) -> Callable[[type], Callable[..., Any]]:
    """A mutation whose resolver is `run` (same arguments and description; it returns the event's result)
    and whose payload is the event payload `payload_name` with the composed Member: for ``mutation_field``."""

    def factory(Member: type) -> Callable[..., Any]:
        Payload = event_payload(payload_name, Member, with_duplicate)

        async def resolve(**arguments: Any) -> Any:
            return payload_of(Payload, await run(**arguments), with_duplicate)

        resolve.__signature__ = inspect.signature(run).replace(return_annotation=Payload)
        resolve.__annotations__ = {**get_type_hints(run), "return": Payload}
        resolve.__doc__ = run.__doc__
        return resolve

    return factory


async def sign_up_member(info: strawberry.Info, input: SignUpMemberInput) -> EventResult:
    return await info.context.integrator_write(members.sign_up_member, one_event=True, **input_values(input),
                                               seen_before=erasure.seen_before)


async def update_member(info: strawberry.Info, input: UpdateMemberInput) -> EventResult:
    return await info.context.integrator_write(members.update_member, one_event=True, **input_values(input))


async def record_order_paid(info: strawberry.Info, input: OrderPaidInput) -> EventResult:
    return await info.context.integrator_write(orders.record_order_paid, one_event=True, **input_values(input))


async def record_order_refunded(info: strawberry.Info, input: OrderRefundedInput) -> EventResult:
    return await info.context.integrator_write(orders.record_order_refunded, one_event=True,
                                               **input_values(input))


def _member_not_found(member_id: str) -> UserError:
    return UserError(code="MEMBER_NOT_FOUND", field="memberId", message=f"no member {member_id!r} in this shop")


def contribute(builder) -> None:
    """Core's mutations, added before any plugin's."""
    builder.mutation_field("sign_up_member", event_mutation("SignUpMemberPayload", sign_up_member))
    builder.mutation_field("update_member", event_mutation("UpdateMemberPayload", update_member, False))
    builder.mutation_field("record_order_paid", event_mutation("OrderPaidPayload", record_order_paid))
    builder.mutation_field("record_order_refunded", event_mutation("OrderRefundedPayload", record_order_refunded))

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
            fields = await context.read(lambda ctx: member_fields(ctx, member_id))
            if fields is None or fields["erased_at"]:
                error = _member_not_found(member_id) if fields is None else UserError(
                    code="MEMBER_ERASED", field="memberId", message=f"member {member_id!r} was erased: no token")
                return MemberTokenPayload(token=None, expires_at=None, errors=[error])
            token, expires = auth.mint_member_token(context.shop.slug, member_id, ttl, context.principal.key_id)
            return MemberTokenPayload(token=token, expires_at=expires, errors=[])
        return resolve

    builder.mutation_field("create_member_token", create_member_token)

    def revoke_member_tokens(Member):
        @strawberry.type
        class RevokeMemberTokensPayload:
            revoked: bool
            errors: list[UserError]

        async def resolve(info: strawberry.Info, member_id: strawberry.ID) -> RevokeMemberTokensPayload:
            """Every token minted for the member so far stops working within seconds (a lost phone, a
            signed-out session everywhere); new tokens can be minted at once."""
            context: RequestContext = info.context
            context.require_integrator()

            def revoke() -> bool:
                with context.runtime.db.write() as conn:
                    return auth.revoke_member_tokens(conn, context.shop.slug, member_id)
            if await context.call(revoke):
                return RevokeMemberTokensPayload(revoked=True, errors=[])
            return RevokeMemberTokensPayload(revoked=False, errors=[_member_not_found(member_id)])
        return resolve

    builder.mutation_field("revoke_member_tokens", revoke_member_tokens)
