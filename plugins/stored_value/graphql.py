"""Stored value in the schema: Member.storedValue, recordTopUp and refundTopUp (integrator)."""

from __future__ import annotations

from datetime import datetime
from typing import Optional

import strawberry

from memberkit.plugin import (
    EventResult,
    Money,
    PageInfo,
    RequestContext,
    VisibleError,
    event_payload,
    id_after,
    id_cursor,
    load_member,
    payload_of,
    require_moment,
    run_event,
)
from memberkit.plugins.stored_value import ledger

MAX_PAGE = 100


@strawberry.type
class StoredValueEntry:
    id: strawberry.ID
    principal: int = strawberry.field(description="Signed, in minor units.")
    bonus: int = strawberry.field(description="Signed, in minor units.")
    reason: str = strawberry.field(description="TOP_UP, TOP_UP_REFUND, SPEND, RETURN or EXPIRE.")
    rule: str = strawberry.field(description="Which rule: bonus:50000 (the top-up rule reached), none, refund, "
                                             "expiry, order.")
    reference: Optional[str]
    created_at: datetime


@strawberry.type
class StoredValueEntryEdge:
    node: StoredValueEntry
    cursor: str


@strawberry.type
class StoredValueEntryConnection:
    edges: list[StoredValueEntryEdge]
    page_info: PageInfo


@strawberry.type(description="A member's prepaid balance: principal (money paid in) and bonus kept apart.")
class StoredValueAccount:
    member_id: strawberry.Private[str]
    balance: Money = strawberry.field(description="Spendable now: principal + bonus - held.")
    principal: Money
    bonus: Money
    held: Money
    refundable: Money = strawberry.field(description="Principal that refundTopUp would accept now (unspent "
                                                     "principal, less any bonus already spent that the refund "
                                                     "would have to take back).")

    @strawberry.field(description="Ledger entries, newest first.")
    async def history(self, info: strawberry.Info, first: Optional[int] = 20,
                      after: Optional[str] = None) -> StoredValueEntryConnection:
        size = 20 if first is None else first
        if not 0 <= size <= MAX_PAGE:
            raise VisibleError(f"history: first must be from 0 to {MAX_PAGE}")
        before_id = id_after("entry", after, "history")
        rows = await info.context.read(lambda ctx: ledger.history(ctx, self.member_id, size, before_id))
        edges = [StoredValueEntryEdge(cursor=id_cursor("entry", row.id), node=StoredValueEntry(
            id=strawberry.ID(str(row.id)), principal=row.principal, bonus=row.bonus, reason=row.reason,
            rule=row.rule, reference=row.reference, created_at=row.created_at)) for row in rows[:size]]
        return StoredValueEntryConnection(edges=edges, page_info=PageInfo(
            has_next_page=len(rows) > size, end_cursor=edges[-1].cursor if edges else None))


async def stored_value(root, info: strawberry.Info) -> Optional[StoredValueAccount]:
    view = await info.context.read(lambda ctx: ledger.account_view(ctx, root.id))
    currency = info.context.shop.currency

    def money(amount: int) -> Money:
        return Money(amount=amount, currency=currency)

    return StoredValueAccount(member_id=root.id, balance=money(view.balance), principal=money(view.principal),
                              bonus=money(view.bonus), held=money(view.held), refundable=money(view.refundable))


@strawberry.input
class TopUpInput:
    top_up_id: str
    member_id: strawberry.ID
    amount: int
    paid_at: datetime


@strawberry.input
class TopUpRefundInput:
    refund_id: str
    top_up_id: str
    amount: int = strawberry.field(description="Principal to give back; refused with INSUFFICIENT_BALANCE above "
                                               "`refundable`.")
    refunded_at: datetime


async def record_top_up(info: strawberry.Info, input: TopUpInput) -> EventResult:
    """The platform received a top-up: credit its principal and the bonus of the largest rule reached.
    Idempotent on topUpId (another amount under the same id is IDEMPOTENCY_CONFLICT)."""
    context: RequestContext = info.context
    key_id = context.require_integrator().key_id
    member_id = str(input.member_id)

    def validate(ctx) -> None:
        require_moment(input.paid_at, "paidAt", ctx.now)
        load_member(ctx.conn, ctx.shop.slug, member_id)

    def handle(ctx) -> EventResult:
        return EventResult(member_id, ledger.top_up(ctx, member_id, input.top_up_id, input.amount, input.paid_at))

    payload = {"member_id": member_id, "amount": input.amount, "paid_at": input.paid_at.isoformat()}
    return await context.call(run_event, context.runtime, context.shop, "stored_value.top_up", input.top_up_id,
                              payload, handle, key_id, validate, key_field="topUpId")


async def refund_top_up(info: strawberry.Info, input: TopUpRefundInput) -> EventResult:
    """Asked before the platform sends a top-up's money back: accepts at most `refundable`, takes the bonus
    back in proportion. Idempotent on refundId."""
    context: RequestContext = info.context
    key_id = context.require_integrator().key_id

    def validate(ctx) -> None:
        require_moment(input.refunded_at, "refundedAt", ctx.now)

    def handle(ctx) -> EventResult:
        member_id, effects = ledger.refund_top_up(ctx, input.refund_id, input.top_up_id, input.amount)
        return EventResult(member_id, effects)

    payload = {"top_up_id": input.top_up_id, "amount": input.amount, "refunded_at": input.refunded_at.isoformat()}
    return await context.call(run_event, context.runtime, context.shop, "stored_value.refund", input.refund_id,
                              payload, handle, key_id, validate, key_field="refundId")


def contribute(builder) -> None:
    payloads: dict[type, type] = {}  # one TopUpPayload for both mutations of a schema

    def mutation(run):
        def factory(Member):
            Payload = payloads.setdefault(Member, payloads.get(Member) or event_payload("TopUpPayload", Member))

            async def resolve(info: strawberry.Info, input) -> Payload:  # type: ignore[valid-type]
                return payload_of(Payload, await run(info, input))

            resolve.__annotations__ = {"info": strawberry.Info, "input": run.__annotations__["input"],
                                       "return": Payload}
            resolve.__doc__ = run.__doc__
            return resolve
        return factory

    builder.member_field("stored_value", stored_value,
                         description="The member's prepaid balance; null where the shop has no stored value.")
    builder.mutation_field("record_top_up", mutation(record_top_up))
    builder.mutation_field("refund_top_up", mutation(refund_top_up))
