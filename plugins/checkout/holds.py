"""The checkout: a hold on what a quote uses, until the order is paid, the member releases it or it expires.

``startCheckout`` computes the quote inside one event transaction and holds what it uses: the coupons
(core's wallet), then everything plugins own through ``checkout_hold`` (points, flash-sale reservations).
Any ``Refused`` rolls all of it back. ``releaseCheckout`` and the ``expire_checkouts`` job give everything
back; ``recordOrderPaid(checkoutId)`` completes the checkout (``checkout_payment`` below) and plugins turn
their holds into use in ``order_paid``. This is Stripe's authorise-then-capture.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from memberkit.plugin import (
    Cart,
    CheckoutPayment,
    Context,
    Effect,
    EffectKind,
    EventResult,
    PaidOrder,
    Refused,
    Runtime,
    Shop,
    collect,
    load_member,
    require_key,
    run_event,
)
from memberkit.plugins.checkout.models import Checkout
from memberkit.plugins.checkout.pricing import Quote, cart_json, make_cart, quote
from memberkit.plugins.checkout.settings import NAME, settings_of

CHECKOUTS = Checkout.__table__
MAX_IDEMPOTENCY_KEY = 160  # stored as "<member id>:<key>" in core_event.key (200)
EXPIRE_BATCH = 500
STORED_VALUE_HELD = "STORED_VALUE_HELD"  # the effect of the plugin that held the quote's stored value


def _effect(kind: str, description: str, code: str | None = None) -> Effect:
    return Effect(NAME, kind, description, code=code, rule="checkout")


def start_checkout(runtime: Runtime, shop: Shop, api_key_id: str | None, *, member_id: str, idempotency_key: str,
                   lines: list[dict[str, Any]] | None, coupon_codes: list[str] | None = None,
                   points_to_redeem: int | None = None, reservation_ids: list[str] | None = None,
                   stored_value_to_use: int | None = None) -> EventResult:
    """Quote the cart and hold what the quote uses, in one transaction; `data["checkout_id"]` names it.

    A repeat of the member's idempotency key returns the same checkout marked duplicate; the same key with
    another cart is refused with IDEMPOTENCY_CONFLICT.
    """
    # storedValueToUse only where asked: a checkout without it keeps the payload (and retry key) it had before
    payload = {"member_id": member_id, "lines": lines, "coupon_codes": coupon_codes,
               "points_to_redeem": points_to_redeem, "reservation_ids": reservation_ids,
               **({"stored_value_to_use": stored_value_to_use} if stored_value_to_use else {})}
    checked: dict[str, Any] = {}

    def validate(ctx: Context) -> None:
        require_key(idempotency_key, "idempotencyKey", MAX_IDEMPOTENCY_KEY)
        cart = make_cart(member_id, lines, coupon_codes, points_to_redeem, reservation_ids, stored_value_to_use)
        if not cart.lines:
            raise Refused("EMPTY_CART", "a checkout needs at least one line", "lines")
        load_member(ctx.conn, shop.slug, member_id)
        checked["cart"] = cart

    def handle(ctx: Context) -> EventResult:
        cart: Cart = checked["cart"]
        priced = quote(ctx, cart)
        if priced.denials:
            reasons = "; ".join(f"{d.sku}: {d.message} ({d.code})" for d in priced.denials)
            raise Refused("PURCHASE_DENIED", f"the cart cannot be bought: {reasons}", "lines")
        if priced.coupon_problems:
            first = priced.coupon_problems[0]
            raise Refused(first.code, first.message, "couponCodes")
        checkout_id = "chk_" + secrets.token_hex(12)
        expires_at = ctx.now + timedelta(minutes=settings_of(ctx).hold_minutes)
        ctx.conn.execute(CHECKOUTS.insert().values(
            id=checkout_id, shop=shop.slug, member_id=member_id, status="HELD", cart=cart_json(cart),
            quote=priced.as_json(), created_at=ctx.now, expires_at=expires_at))
        ctx.wallet.hold(member_id, priced.coupon_codes, checkout_id, expires_at)
        held = replace(cart, coupon_codes=priced.coupon_codes, points_to_redeem=priced.points_used,
                       checkout_id=checkout_id, stored_value_to_use=priced.stored_value)
        effects = [_effect("CHECKOUT_HELD", f"checkout {checkout_id} holds until {expires_at.isoformat()}")]
        if priced.coupon_codes:
            effects.append(Effect(NAME, "COUPON_HELD", f"coupon(s) {', '.join(priced.coupon_codes)} held",
                                  rule="wallet"))
        effects += collect(ctx.hook.checkout_hold(ctx=ctx, checkout_id=checkout_id, cart=held,
                                                  expires_at=expires_at))
        if priced.stored_value and not any(e.kind == STORED_VALUE_HELD for e in effects):
            raise Refused("STORED_VALUE_UNSUPPORTED", "storedValueToUse: this shop keeps no stored value",
                          "storedValueToUse")
        return EventResult(member_id, effects, data={"checkout_id": checkout_id})

    key = f"{member_id}:{idempotency_key.strip()}"
    return run_event(runtime, shop, "checkout_start", key, payload, handle, api_key_id, validate)


def _close(ctx: Context, checkout_id: str, status: str, reason: str, *conditions) -> bool:
    """Move a HELD checkout to `status` (one conditional UPDATE) and give back everything it holds."""
    closed = ctx.conn.execute(
        update(CHECKOUTS).where(CHECKOUTS.c.id == checkout_id, CHECKOUTS.c.shop == ctx.shop.slug,
                                CHECKOUTS.c.status == "HELD", *conditions)
        .values(status=status, settled_at=ctx.now)).rowcount
    if closed:
        ctx.wallet.release(checkout_id)
        ctx.hook.checkout_release(ctx=ctx, checkout_id=checkout_id, reason=reason)
    return bool(closed)


def forget(ctx: Context, member_id: str) -> None:
    """``member_erased``: the member's HELD checkouts are released (what they hold goes back) and every
    checkout's cart and quote, what the person meant to buy, emptied; statuses and order ids stay."""
    mine = (CHECKOUTS.c.shop == ctx.shop.slug, CHECKOUTS.c.member_id == member_id)
    for checkout_id in ctx.conn.execute(select(CHECKOUTS.c.id).where(*mine, CHECKOUTS.c.status == "HELD")).scalars():
        _close(ctx, checkout_id, "RELEASED", "released")
    ctx.conn.execute(update(CHECKOUTS).where(*mine).values(cart={}, quote={}))


def release_checkout(runtime: Runtime, shop: Shop, api_key_id: str | None, *, member_id: str,
                     checkout_id: str) -> EventResult:
    """Give back what the member's HELD checkout holds; a repeat is a duplicate. Only the member's own."""
    payload = {"member_id": member_id, "checkout_id": checkout_id}

    def validate(ctx: Context) -> None:
        row = ctx.conn.execute(select(CHECKOUTS.c.member_id, CHECKOUTS.c.status).where(
            CHECKOUTS.c.id == checkout_id, CHECKOUTS.c.shop == shop.slug)).first()
        if row is None or row.member_id != member_id:
            raise Refused("CHECKOUT_NOT_FOUND", f"no checkout {checkout_id!r} of this member", "id")

    def handle(ctx: Context) -> EventResult:  # a repeat of a release is answered before this, as a duplicate
        if not _close(ctx, checkout_id, "RELEASED", "released"):
            status = ctx.conn.execute(select(CHECKOUTS.c.status).where(CHECKOUTS.c.id == checkout_id)).scalar()
            raise Refused("CHECKOUT_NOT_HELD", f"checkout {checkout_id} is {status}, not HELD", "id")
        return EventResult(member_id, [_effect("CHECKOUT_RELEASED", f"checkout {checkout_id} released")],
                           data={"checkout_id": checkout_id})

    return run_event(runtime, shop, "checkout_release", checkout_id, payload, handle, api_key_id, validate)


def expire_checkouts(ctx: Context) -> str:
    """The job: every HELD checkout past its expiry becomes EXPIRED and gives back what it held. Safe to
    run twice, late or concurrently with a payment: each closes with a conditional UPDATE."""
    due = ctx.conn.execute(
        select(CHECKOUTS.c.id).where(CHECKOUTS.c.shop == ctx.shop.slug, CHECKOUTS.c.status == "HELD",
                                     CHECKOUTS.c.expires_at <= ctx.now)
        .order_by(CHECKOUTS.c.expires_at, CHECKOUTS.c.id).limit(EXPIRE_BATCH)).scalars().all()
    expired = sum(_close(ctx, checkout_id, "EXPIRED", "expired", CHECKOUTS.c.expires_at <= ctx.now)
                  for checkout_id in due)
    return f"{expired} checkout(s) expired" if expired else None


@dataclass(frozen=True)
class CheckoutView:
    id: str
    status: str
    quote: Quote
    expires_at: datetime


def load_checkout(ctx: Context, checkout_id: str, member_id: str | None = None) -> CheckoutView | None:
    """A checkout of this shop (and of `member_id`, when given); a HELD one past its expiry shows EXPIRED."""
    query = select(CHECKOUTS.c.id, CHECKOUTS.c.status, CHECKOUTS.c.quote, CHECKOUTS.c.expires_at).where(
        CHECKOUTS.c.id == checkout_id, CHECKOUTS.c.shop == ctx.shop.slug)
    if member_id is not None:
        query = query.where(CHECKOUTS.c.member_id == member_id)
    row = ctx.conn.execute(query).first()
    if row is None:
        return None
    status = "EXPIRED" if row.status == "HELD" and row.expires_at <= ctx.now else row.status
    return CheckoutView(row.id, status, Quote.from_json(row.quote), row.expires_at)


def _merged(first: tuple[str, ...] | list[str], then: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*first, *then]))


def payment_for_order(ctx: Context, order: PaidOrder) -> CheckoutPayment:
    """What a paid order with `checkout_id` uses (the ``checkout_payment`` hook).

    A HELD checkout of the member, not expired, is COMPLETED (a conditional UPDATE): its coupons are used
    through their hold and plugins capture their holds in ``order_paid`` (``order.checkout_id`` stays set;
    the held points are not redeemed again). An expired or released checkout still lets the order be
    recorded: its holds are given back (if still there), what is free is taken by the normal path
    (``checkout_id`` cleared; points partially) and CONFLICTs say what was missing (CHECKOUT_EXPIRED or
    CHECKOUT_RELEASED first). An unknown checkout or another member's (CHECKOUT_UNKNOWN), or one another
    order already completed (CHECKOUT_COMPLETED), is a CONFLICT and the order is recorded as sent.
    """
    checkout_id = order.checkout_id
    # Locked (PostgreSQL) while deciding: two orders paying one checkout see one another's outcome.
    row = ctx.conn.execute(select(CHECKOUTS.c.member_id, CHECKOUTS.c.status, CHECKOUTS.c.cart, CHECKOUTS.c.quote)
                           .where(CHECKOUTS.c.id == checkout_id, CHECKOUTS.c.shop == ctx.shop.slug)
                           .with_for_update()).first()
    if row is None or row.member_id != order.member_id:
        return CheckoutPayment(replace(order, checkout_id=None), (_effect(
            EffectKind.CONFLICT, f"checkout {checkout_id} is not one of this member's: the order is recorded as "
            "sent", "CHECKOUT_UNKNOWN"),))
    if row.status == "COMPLETED":  # paid by another order, which used its coupons and points
        return CheckoutPayment(replace(order, checkout_id=None), (_effect(
            EffectKind.CONFLICT, f"checkout {checkout_id} was already completed by another order: this order is "
            "recorded as sent", "CHECKOUT_COMPLETED"),))
    held_points = row.quote.get("points_used", 0)
    recorded = replace(order, coupon_codes=_merged(row.quote.get("coupon_codes", []), order.coupon_codes),
                       reservation_ids=_merged(row.cart.get("reservation_ids", []), order.reservation_ids),
                       points_redeemed=max(order.points_redeemed, held_points))
    completed = ctx.conn.execute(
        update(CHECKOUTS).where(CHECKOUTS.c.id == checkout_id, CHECKOUTS.c.shop == ctx.shop.slug,
                                CHECKOUTS.c.status == "HELD", CHECKOUTS.c.expires_at > ctx.now)
        .values(status="COMPLETED", settled_at=ctx.now, order_id=order.order_id)).rowcount
    if completed:
        return CheckoutPayment(recorded, (_effect(
            "CHECKOUT_COMPLETED", f"checkout {checkout_id} completed by order {order.order_id}"),), held_points)
    status = row.status
    if status == "HELD":  # past its expiry, not yet expired by the job: give its holds back first
        _close(ctx, checkout_id, "EXPIRED", "expired")
        status = "EXPIRED"
    code = "CHECKOUT_RELEASED" if status == "RELEASED" else "CHECKOUT_EXPIRED"
    return CheckoutPayment(replace(recorded, checkout_id=None), (_effect(
        EffectKind.CONFLICT, f"checkout {checkout_id} was {status.lower()} before the payment: its coupons, "
        "points and reservations are taken only where still free", code),))
