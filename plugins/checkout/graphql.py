"""The checkout plugin's part of the schema: quoteCart, startCheckout, releaseCheckout.

Additions to the contract: ``Quote.couponProblems`` (a coupon the cart asked for that
the price could not use, with its code: coupon problems are not purchase denials), ``Quote.couponCodes`` and
``Quote.pointsUsed`` (what the price uses, and what a checkout holds). ``storedValueToUse`` and
``Quote.storedValue`` (the stored-value contract) are carried here, held by the plugin that keeps balances.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Optional

import strawberry

from memberkit.plugin import (
    MAX_COUPON_CODES,
    MAX_LINES,
    MAX_RESERVATIONS,
    EventResult,
    Money,
    OrderLineInput,
    Refused,
    RequestContext,
    UserError,
    VisibleError,
    acting_member_field,
    input_values,
    limited_list,
    load_member,
)
from memberkit.plugins.checkout import holds, pricing


class CartError(VisibleError):
    """A malformed cart in a query (a query has no errors list): a GraphQL error with the refusal's code."""

    def __init__(self, refusal: Refused):
        super().__init__(refusal.message)
        self.extensions = {"code": refusal.code, "field": refusal.field}


@strawberry.type(description="One step of a cart's price: which plugin, by which rule, how much (negative: off).")
class Adjustment:
    plugin: str
    code: str
    label: str
    sku: Optional[str]
    amount: Money


@strawberry.type
class PurchaseDenial:
    sku: str
    code: str
    message: str


@strawberry.type(description="A coupon the cart asked for that the price does not use, and why (code).")
class CouponProblem:
    coupon_code: str
    code: str
    message: str


@strawberry.type(description="A cart line's list amount and its share of the price after every adjustment "
                             "(rounded to the minor unit): refunding the line gives back its total.")
class QuoteLine:
    sku: str
    quantity: int
    subtotal: Money
    total: Money


@strawberry.type(description="What the member would pay, and why: list price, then each adjustment in order.")
class Quote:
    subtotal: Money
    adjustments: list[Adjustment]
    total: Money
    points_to_earn: int
    denials: list[PurchaseDenial]
    coupon_problems: list[CouponProblem]
    coupon_codes: list[str] = strawberry.field(description="the coupons the price uses")
    points_used: int = strawberry.field(description="the points the price uses as cash")
    lines: list[QuoteLine] = strawberry.field(description="each line's share of every adjustment; the lines' "
                                                          "totals add up to the quote's total")
    stored_value: Optional[Money] = strawberry.field(description="What the checkout takes from the balance; the "
                                                                 "cash to charge is total - storedValue.")

    @classmethod
    def of(cls, quote: pricing.Quote) -> Quote:
        def money(amount: int) -> Money:
            return Money(amount=amount, currency=quote.currency)

        return cls(
            subtotal=money(quote.subtotal), total=money(quote.total), points_to_earn=quote.points_to_earn,
            adjustments=[Adjustment(plugin=a.plugin, code=a.code, label=a.label, sku=a.sku, amount=money(a.amount))
                         for a in quote.adjustments],
            denials=[PurchaseDenial(sku=d.sku, code=d.code, message=d.message) for d in quote.denials],
            coupon_problems=[CouponProblem(coupon_code=p.coupon_code, code=p.code, message=p.message)
                             for p in quote.coupon_problems],
            coupon_codes=list(quote.coupon_codes), points_used=quote.points_used,
            lines=[QuoteLine(sku=line.sku, quantity=line.quantity, subtotal=money(line.subtotal),
                             total=money(line.total)) for line in quote.lines],
            stored_value=money(quote.stored_value))


@strawberry.enum
class CheckoutStatus(enum.Enum):
    HELD = "HELD"
    COMPLETED = "COMPLETED"
    RELEASED = "RELEASED"
    EXPIRED = "EXPIRED"


@strawberry.type(description="A hold on the coupons, points and reservations a quote uses, until paid or released.")
class Checkout:
    id: strawberry.ID
    status: CheckoutStatus
    quote: Quote
    expires_at: datetime

    @classmethod
    def of(cls, view: holds.CheckoutView) -> Checkout:
        return cls(id=strawberry.ID(view.id), status=CheckoutStatus(view.status), quote=Quote.of(view.quote),
                   expires_at=view.expires_at)


@strawberry.input
class CartInput:
    lines: list[OrderLineInput] = limited_list(MAX_LINES, required=True)
    coupon_codes: Optional[list[str]] = limited_list(MAX_COUPON_CODES)
    points_to_redeem: Optional[int] = None
    reservation_ids: Optional[list[strawberry.ID]] = limited_list(MAX_RESERVATIONS)
    member_id: Optional[strawberry.ID] = acting_member_field()
    stored_value_to_use: Optional[int] = None


@strawberry.input
class CheckoutInput:
    lines: list[OrderLineInput] = limited_list(MAX_LINES, required=True)
    idempotency_key: str
    coupon_codes: Optional[list[str]] = limited_list(MAX_COUPON_CODES)
    points_to_redeem: Optional[int] = None
    reservation_ids: Optional[list[strawberry.ID]] = limited_list(MAX_RESERVATIONS)
    member_id: Optional[strawberry.ID] = acting_member_field()
    stored_value_to_use: Optional[int] = None


@strawberry.type
class CheckoutPayload:
    checkout: Optional[Checkout]
    duplicate: bool
    errors: list[UserError]


async def _payload(context: RequestContext, result: EventResult, member_id: str) -> CheckoutPayload:
    errors = [UserError.of(e) for e in result.errors]
    checkout_id = result.data.get("checkout_id")
    if errors or not checkout_id:
        return CheckoutPayload(checkout=None, duplicate=False, errors=errors)
    view = await context.read(lambda ctx: holds.load_checkout(ctx, checkout_id, member_id))
    return CheckoutPayload(checkout=Checkout.of(view) if view else None, duplicate=result.duplicate, errors=[])


def contribute(builder) -> None:
    def quote_cart(Member):
        async def resolve(info: strawberry.Info, input: CartInput) -> Quote:
            """The price of a cart for the member (a member token's, or memberId with the secret key); a
            shop key without memberId quotes anonymously, without member pricing. A read: nothing is held."""
            context: RequestContext = info.context
            member_id = context.acting_member(input.member_id, required=False)
            try:
                if member_id is not None and member_id != context.member_id:  # named by the secret key
                    await context.read(lambda ctx: load_member(ctx.conn, ctx.shop.slug, member_id))
                cart = pricing.make_cart(member_id, input_values(input.lines), input.coupon_codes,
                                         input.points_to_redeem, input.reservation_ids, input.stored_value_to_use)
            except Refused as refusal:
                raise CartError(refusal) from None
            return Quote.of(await context.read(lambda ctx: pricing.quote(ctx, cart)))
        return resolve

    def start_checkout(Member):
        async def resolve(info: strawberry.Info, input: CheckoutInput) -> CheckoutPayload:
            """Quote the member's cart and hold its coupons, points and reservations until it is paid
            (recordOrderPaid with checkoutId), released or expires. Retry-safe with idempotencyKey."""
            context: RequestContext = info.context
            member_id = context.acting_member(input.member_id)
            result = await context.call(
                holds.start_checkout, context.runtime, context.shop, context.principal.key_id,
                member_id=member_id, idempotency_key=input.idempotency_key, lines=input_values(input.lines),
                coupon_codes=input.coupon_codes, points_to_redeem=input.points_to_redeem,
                reservation_ids=input.reservation_ids, stored_value_to_use=input.stored_value_to_use)
            return await _payload(context, result, member_id)
        return resolve

    def release_checkout(Member):
        async def resolve(info: strawberry.Info, id: strawberry.ID) -> CheckoutPayload:
            """Give back everything the member's checkout holds; a repeat is a duplicate."""
            context: RequestContext = info.context
            member_id = context.require_member()
            result = await context.call(holds.release_checkout, context.runtime, context.shop,
                                        context.principal.key_id, member_id=member_id, checkout_id=str(id))
            return await _payload(context, result, member_id)
        return resolve

    builder.query_field("quote_cart", quote_cart)
    builder.mutation_field("start_checkout", start_checkout)
    builder.mutation_field("release_checkout", release_checkout)
