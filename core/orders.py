"""The order events. A paid order or a refund is a fact, the money has moved: it is refused only for
malformed input, an unknown member or order, or an idempotency conflict; what can no longer be honoured (a
coupon used meanwhile, points gone) comes back as ``CONFLICT`` effects and the order is recorded."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from memberkit.core import checks
from memberkit.core.checks import order_lines, require_key, require_moment
from memberkit.core.context import Context
from memberkit.core.db import Prepared
from memberkit.core.intake import EventResult, collect, run_event
from memberkit.core.members import load_member
from memberkit.core.models import Member, Order
from memberkit.core.runtime import Runtime
from memberkit.core.settings import Shop
from memberkit.core.types import (
    Effect,
    EffectKind,
    OrderLine,
    PaidOrder,
    Redemption,
    RedemptionRefused,
    Refund,
    Refused,
)

MEMBERS, ORDERS = Member.__table__, Order.__table__
# Counting the order also checks the member is this shop's (and not erased) and locks the member's row until commit.
_COUNT_ORDER = Prepared(MEMBERS.update().where(MEMBERS.c.id == bindparam("p_id"), MEMBERS.c.shop == bindparam("p_shop"),
                                               MEMBERS.c.erased_at.is_(None))
                        .values(paid_orders=MEMBERS.c.paid_orders + 1).returning(MEMBERS.c.paid_orders))
_INSERT_ORDER = Prepared(ORDERS.insert())


def record_order_paid(runtime: Runtime, shop: Shop, api_key_id: str | None, *, order_id: str, member_id: str,
                      total: int, lines: list[dict[str, Any]] | None = None,
                      coupon_codes: list[str] | None = None, points_redeemed: int | None = None,
                      reservation_ids: list[str] | None = None, checkout_id: str | None = None,
                      paid_at: datetime | None = None) -> EventResult:
    payload = {"order_id": order_id, "member_id": member_id, "total": total, "lines": lines,
               "coupon_codes": coupon_codes, "points_redeemed": points_redeemed,
               "reservation_ids": reservation_ids, "checkout_id": checkout_id, "paid_at": paid_at}
    checked: dict[str, Any] = {}

    def validate(ctx: Context) -> None:
        key = require_key(order_id, "orderId")
        require_moment(paid_at, "paidAt", ctx.now)
        if total < 0:
            raise Refused("NEGATIVE_AMOUNT", f"total is {total}: expected 0 or more", "total")
        if (points_redeemed or 0) < 0:
            raise Refused("NEGATIVE_AMOUNT", f"pointsRedeemed is {points_redeemed}: expected 0 or more",
                          "pointsRedeemed")
        found_lines = order_lines(lines)
        if found_lines and total > sum(line.amount for line in found_lines):
            raise Refused("TOTAL_EXCEEDS_LINES", "total is more than the sum of its lines at list price", "total")
        checked["order"] = PaidOrder(
            key, member_id, total, shop.currency, paid_at or ctx.now, found_lines, checks.coupon_codes(coupon_codes),
            points_redeemed or 0, tuple(reservation_ids or ()), checkout_id)

    def handle(ctx: Context) -> EventResult:
        number = _COUNT_ORDER.scalar(ctx.conn, {"p_id": member_id, "p_shop": shop.slug})
        if number is None:  # no such member, or an erased one: load_member says which
            load_member(ctx.conn, shop.slug, member_id)
        order: PaidOrder = replace(checked["order"], number=number)
        effects: list[Effect] = []
        held_points = 0
        if order.checkout_id:
            # The checkout decides what the order uses: completed, its holds turn into use (order.checkout_id
            # stays set for plugins to capture theirs); expired, released or unknown, a CONFLICT says so and
            # what is still free is taken below as for an order without a checkout (checkout_id cleared).
            payment = ctx.hook.checkout_payment(ctx=ctx, order=order)
            if payment is None:
                payment_effect = Effect("core", EffectKind.CONFLICT, f"checkout {order.checkout_id}: this shop "
                                        "keeps no checkouts; the order is recorded as sent", code="CHECKOUT_UNKNOWN",
                                        rule="checkout")
                order, effects = replace(order, checkout_id=None), [payment_effect]
            else:
                order, effects, held_points = payment.order, list(payment.effects), payment.held_points
        _INSERT_ORDER.cursor(ctx.conn, dict(
            shop=shop.slug, order_id=order.order_id, member_id=order.member_id, currency=order.currency,
            total=order.total, refunded=0, paid_at=order.paid_at,
            detail={"lines": [line.__dict__ for line in order.lines], "coupon_codes": list(order.coupon_codes),
                    "points_redeemed": order.points_redeemed, "reservation_ids": list(order.reservation_ids),
                    "checkout_id": order.checkout_id, "number": order.number, "stored_value": order.stored_value,
                    "stored_value_bonus": order.stored_value_bonus,
                    **({"checkout_sent": checkout_id} if checkout_id else {})}))
        spend = sum(line.amount for line in order.lines) if order.lines else order.total
        effects += ctx.wallet.use(order.member_id, order.coupon_codes, order.order_id, spend, order.checkout_id)
        if order.points_redeemed > held_points:  # held points are captured by their plugin in order_paid
            effects += redeem_for_order(ctx, order, order.points_redeemed - held_points)
        effects += collect(ctx.hook.order_paid(ctx=ctx, order=order))
        ctx.emit("order.paid", order.member_id, orderId=order.order_id, total=order.total, currency=order.currency,
                 paidAt=order.paid_at, number=order.number, couponCodes=list(order.coupon_codes),
                 pointsRedeemed=order.points_redeemed)
        return EventResult(order.member_id, effects)

    return run_event(runtime, shop, "order_paid", order_id.strip(), payload, handle, api_key_id, validate, "orderId")


def redeem_for_order(ctx: Context, order: PaidOrder, points: int) -> list[Effect]:
    """Points as cash: the plugin that owns points spends them; what it cannot spend is a CONFLICT."""
    redemption = Redemption("points", points, "order", order.order_id)
    try:
        with ctx.conn.begin_nested():  # a refusal undoes what the plugin wrote, and only that
            result = ctx.hook.redemption(ctx=ctx, member_id=order.member_id, redemption=redemption)
    except RedemptionRefused as refusal:
        return [Effect("core", EffectKind.CONFLICT, f"{points} points not taken: {refusal.message}",
                       code=refusal.code, rule="points_as_cash")]
    if result is None:
        return [Effect("core", EffectKind.CONFLICT, f"{points} points not taken: this shop has no points plugin",
                       code="REDEMPTION_UNSUPPORTED", rule="points_as_cash")]
    return list(result.effects)


def stored_order(conn: Connection, shop: str, order_id: str) -> tuple[int, PaidOrder, int]:
    row = conn.execute(select(Order).where(Order.shop == shop, Order.order_id == order_id)).first()
    if row is None:
        raise Refused("ORDER_NOT_FOUND", f"no paid order {order_id!r} in this shop", "orderId")
    detail = row.detail
    order = PaidOrder(row.order_id, row.member_id, row.total, row.currency, row.paid_at,
                      tuple(OrderLine(**line) for line in detail.get("lines", [])),
                      tuple(detail.get("coupon_codes", [])), detail.get("points_redeemed", 0),
                      tuple(detail.get("reservation_ids", [])), detail.get("checkout_id"), detail.get("number", 0),
                      detail.get("stored_value", 0), detail.get("stored_value_bonus", 0))
    return row.id, order, row.refunded


def record_order_refunded(runtime: Runtime, shop: Shop, api_key_id: str | None, *, order_id: str,
                          refund_id: str, amount: int, refunded_at: datetime | None = None) -> EventResult:
    payload = {"order_id": order_id, "refund_id": refund_id, "amount": amount, "refunded_at": refunded_at}
    checked: dict[str, Any] = {}

    def validate(ctx: Context) -> None:
        require_key(refund_id, "refundId")
        require_key(order_id, "orderId")
        require_moment(refunded_at, "refundedAt", ctx.now)
        if amount <= 0:
            raise Refused("INVALID_AMOUNT", f"amount is {amount}: expected more than zero", "amount")
        checked["row_id"], checked["order"], _ = stored_order(ctx.conn, shop.slug, order_id.strip())
        paid_at = checked["order"].paid_at
        if (refunded_at or ctx.now) < paid_at:
            raise Refused("REFUND_BEFORE_PAYMENT", f"refundedAt is {(refunded_at or ctx.now).isoformat()}, before "
                          f"the order was paid at {paid_at.isoformat()}", "refundedAt")

    def handle(ctx: Context) -> EventResult:
        order: PaidOrder = checked["order"]
        # One conditional UPDATE: two refunds racing can never refund more than was paid.
        refunded = ctx.conn.execute(
            update(Order).where(Order.id == checked["row_id"], Order.refunded <= Order.total - amount)
            .values(refunded=Order.refunded + amount).returning(Order.refunded)).scalar()
        if refunded is None:
            raise Refused("REFUND_EXCEEDS_ORDER", "amount is more than what is left to refund of the order", "amount")
        refund = Refund(refund_id.strip(), order, amount, refunded, refunded_at or ctx.now)
        effects = collect(ctx.hook.order_refunded(ctx=ctx, refund=refund))
        ctx.emit("order.refunded", order.member_id, orderId=order.order_id, refundId=refund.refund_id,
                 amount=amount, refundedTotal=refunded, currency=order.currency, full=refund.is_full,
                 refundedAt=refund.refunded_at)
        return EventResult(order.member_id, effects)

    return run_event(runtime, shop, "order_refunded", refund_id.strip(), payload, handle, api_key_id, validate,
                     "refundId")
