"""The cart quote and the checkout: what a member would pay and why, then a hold on what that price uses.

The price of a cart is built stage by stage in the order RULES.md section 6 gives
(``PriceStage``: unit price -> coupons -> percentages -> points as cash). At each stage core asks every
enabled plugin's ``price_adjustments`` with the price so far, adds its own part (the COUPON stage: the
cart's coupons from the wallet), folds what came back (adjustments sharing an ``exclusive_group`` keep
only the largest discount, unless the shop's ``[checkout] percent_rule`` is "all") and never lets the price
go below zero. A quote only reads.

``startCheckout`` computes the same quote inside one event transaction and holds what it uses: the
coupons (core's wallet), then everything plugins own through ``checkout_hold`` (points, flash-sale
reservations). Any ``Refused`` rolls all of it back. ``releaseCheckout`` and the ``core.expire_checkouts``
job give everything back; ``recordOrderPaid(checkoutId)`` completes the checkout and turns the holds into use
(``checkout_for_order`` below, called from ``core.events.record_order_paid``).

Coupon problems (unknown, expired, held elsewhere, minimum spend not met, over the shop's coupon limit) are
not purchase denials: the quote returns them in ``couponProblems`` (an addition to the contract) and prices
the cart without that coupon; ``startCheckout`` refuses with the problem's code, since a hold that silently
dropped a coupon the member chose would surprise them.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from memberkit.core.context import Context
from memberkit.core.events import EventResult, load_member, require_key, run_event
from memberkit.core.models import Checkout as CheckoutRow
from memberkit.core.models import Coupon
from memberkit.core.runtime import Runtime
from memberkit.core.settings import Shop
from memberkit.core.types import (
    Adjustment,
    Cart,
    Effect,
    EffectKind,
    OrderLine,
    PaidOrder,
    PriceStage,
    PurchaseDenial,
    Refused,
)
from sqlalchemy import select, update

CHECKOUTS = CheckoutRow.__table__
MAX_LINES = 200
MAX_IDEMPOTENCY_KEY = 160  # stored as "<member id>:<key>" in core_event.key (200)
EXPIRE_BATCH = 500


# ---------------------------------------------------------------- the cart


def make_cart(member_id: str | None, lines: list[dict[str, Any]] | None, coupon_codes: list[str] | None = None,
              points_to_redeem: int | None = None, reservation_ids: list[str] | None = None,
              checkout_id: str | None = None) -> Cart:
    """A validated cart; malformed input raises ``Refused`` with the field it concerns."""
    from memberkit.core.events import _order_lines
    from memberkit.core.wallet import normalise_code

    if lines is not None and len(lines) > MAX_LINES:
        raise Refused("TOO_MANY_LINES", f"a cart has at most {MAX_LINES} lines", "lines")
    order_lines = _order_lines(lines)
    codes = [normalise_code(c) for c in coupon_codes or []]
    if len(set(codes)) != len(codes) or not all(codes):
        raise Refused("INVALID_COUPON_CODES", "couponCodes must be distinct and not empty", "couponCodes")
    if (points_to_redeem or 0) < 0:
        raise Refused("NEGATIVE_AMOUNT", "pointsToRedeem must not be negative", "pointsToRedeem")
    reservations = [r.strip() for r in reservation_ids or []]
    if len(set(reservations)) != len(reservations) or not all(reservations):
        raise Refused("INVALID_RESERVATION_IDS", "reservationIds must be distinct and not empty", "reservationIds")
    return Cart(order_lines, member_id, tuple(codes), points_to_redeem or 0, tuple(reservations), checkout_id)


def cart_json(cart: Cart) -> dict[str, Any]:
    return {"lines": [line.__dict__ for line in cart.lines], "member_id": cart.member_id,
            "coupon_codes": list(cart.coupon_codes), "points_to_redeem": cart.points_to_redeem,
            "reservation_ids": list(cart.reservation_ids)}


# ---------------------------------------------------------------- helpers for plugins


def line_shares(lines: tuple[OrderLine, ...], subtotal: int) -> list[int]:
    """Each line's share of the price so far: its list amount, or, once earlier stages took something off,
    its proportional share of `subtotal`, rounded down to the minor unit."""
    amounts = [line.amount for line in lines]
    total = sum(amounts)
    if total <= 0 or subtotal <= 0:
        return [0] * len(amounts)
    if subtotal >= total:
        return amounts
    return [amount * subtotal // total for amount in amounts]


def percent_off(lines: tuple[OrderLine, ...], subtotal: int, percent: int) -> int:
    """`percent` of the price so far as a positive discount, rounded down to the minor unit on each line."""
    return sum(share * percent // 100 for share in line_shares(lines, subtotal))


def spread(amounts: list[int], amount: int) -> list[int]:
    """Split `amount` over lines in proportion to `amounts`, each share rounded towards zero and the units
    left over given one each to the lines with the largest remainders (the first on a tie), so the shares add
    up to `amount` exactly; a discount no larger than the lines' sum takes no line below zero."""
    base = sum(amounts)
    if not amount or base <= 0:
        return [0] * len(amounts)
    size = abs(amount)
    shares = [size * a // base for a in amounts]
    by_remainder = sorted(range(len(amounts)), key=lambda i: (-(size * amounts[i] % base), i))
    for i in by_remainder[:size - sum(shares)]:
        shares[i] += 1
    return [share if amount > 0 else -share for share in shares]


def _apply_to_lines(totals: list[int], lines: tuple[OrderLine, ...], adjustment: Adjustment) -> None:
    """An adjustment for one product goes to its lines; any other to every line, by what each costs now."""
    chosen = [i for i, line in enumerate(lines) if adjustment.sku is not None and line.sku == adjustment.sku]
    if not chosen or (adjustment.amount < 0 and sum(totals[i] for i in chosen) < -adjustment.amount):
        chosen = list(range(len(lines)))
    for i, share in zip(chosen, spread([totals[i] for i in chosen], adjustment.amount), strict=True):
        totals[i] += share


# ---------------------------------------------------------------- the quote


@dataclass(frozen=True)
class QuoteLine:
    """A cart line's list amount and its share of the price after every adjustment: a refund of the line
    gives back `total`, which is what the order charged for it."""

    sku: str
    quantity: int
    subtotal: int
    total: int


@dataclass(frozen=True)
class CouponProblem:
    coupon_code: str
    code: str
    message: str


@dataclass(frozen=True)
class Quote:
    """A cart's price: every adjustment names its plugin and rule; `coupon_codes` and `points_used` are what
    the price uses (and what a checkout holds)."""

    currency: str
    subtotal: int
    adjustments: tuple[Adjustment, ...]
    total: int
    points_to_earn: int
    denials: tuple[PurchaseDenial, ...]
    coupon_problems: tuple[CouponProblem, ...] = ()
    coupon_codes: tuple[str, ...] = ()
    points_used: int = 0
    lines: tuple[QuoteLine, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"currency": self.currency, "subtotal": self.subtotal, "total": self.total,
                "adjustments": [asdict(a) for a in self.adjustments], "points_to_earn": self.points_to_earn,
                "denials": [asdict(d) for d in self.denials],
                "coupon_problems": [asdict(p) for p in self.coupon_problems],
                "coupon_codes": list(self.coupon_codes), "points_used": self.points_used,
                "lines": [asdict(line) for line in self.lines]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Quote:
        return cls(data["currency"], data["subtotal"], tuple(Adjustment(**a) for a in data["adjustments"]),
                   data["total"], data["points_to_earn"], tuple(PurchaseDenial(**d) for d in data["denials"]),
                   tuple(CouponProblem(**p) for p in data.get("coupon_problems", [])),
                   tuple(data.get("coupon_codes", [])), data.get("points_used", 0),
                   tuple(QuoteLine(**line) for line in data.get("lines", [])))


def _flatten(results: list[Any]) -> list[Any]:
    return [item for result in results if result for item in result]


def fold(proposed: list[Adjustment], rule: str) -> list[Adjustment]:
    """Within one stage: of the adjustments sharing an exclusive group only the largest discount stays
    (the first of equals, in the shop's plugin order). The shop's percent_rule "all" lets every percentage
    discount (group "percent") apply; other groups, such as one line's member and flash prices, stay exclusive."""
    best: dict[str, Adjustment] = {}
    for adjustment in proposed:
        group = adjustment.exclusive_group
        if group is None or (group == "percent" and rule == "all"):
            continue
        if group not in best or adjustment.amount < best[group].amount:
            best[group] = adjustment
    return [a for a in proposed if a.exclusive_group not in best or best[a.exclusive_group] is a]


def _coupon_stage(ctx: Context, cart: Cart, price: int) -> tuple[list[Adjustment], list[CouponProblem], list[str]]:
    """Core's part of the COUPON stage: the cart's coupons from the member's wallet, checked on the price so
    far (minimum spend) and limited to the shop's `max_coupons`, in the order the cart lists them."""
    if not cart.coupon_codes:
        return [], [], []
    if cart.member_id is None:
        return [], [CouponProblem(c, "COUPON_NEEDS_MEMBER", "coupons need a signed-in member")
                    for c in cart.coupon_codes], []
    rows = {row.code: row for row in ctx.conn.execute(
        select(Coupon.code, Coupon.member_id, Coupon.title, Coupon.kind, Coupon.value, Coupon.min_spend,
               Coupon.status, Coupon.valid_until, Coupon.held_by, Coupon.held_until)
        .where(Coupon.shop == ctx.shop.slug, Coupon.code.in_(cart.coupon_codes)))}
    limit = ctx.shop.checkout.max_coupons
    found, problems, applied = [], [], []
    for code in cart.coupon_codes:
        row = rows.get(code)
        problem = None
        if row is None:
            problem = ("COUPON_UNKNOWN", "no such coupon")
        elif row.member_id != cart.member_id:
            problem = ("COUPON_NOT_OWNED", "it belongs to another member")
        elif row.status == "USED":
            problem = ("COUPON_ALREADY_USED", "already used")
        elif row.status != "AVAILABLE":
            problem = ("COUPON_WITHDRAWN", "withdrawn")
        elif row.valid_until is not None and row.valid_until <= ctx.now:
            problem = ("COUPON_EXPIRED", "expired")
        elif (row.held_by is not None and row.held_until is not None and row.held_until > ctx.now
              and row.held_by != cart.checkout_id):
            problem = ("COUPON_HELD", "held by another checkout until it is paid, released or expires")
        elif row.min_spend > price:
            problem = ("COUPON_MIN_SPEND_NOT_MET", f"needs a spend of {row.min_spend}, the price so far is {price}")
        elif len(applied) >= limit:
            problem = ("COUPON_LIMIT", f"an order may use {limit} coupon(s)")
        elif price == 0:
            problem = ("COUPON_NOTHING_LEFT", "earlier discounts already took the price to zero")
        if problem:
            problems.append(CouponProblem(code, problem[0], f"coupon {code} not applied: {problem[1]}"))
            continue
        off = min(row.value if row.kind == "FIXED" else price * row.value // 100, price)
        price -= off  # the next coupon's threshold is checked on the price after this one (RULES.md 6)
        applied.append(code)
        found.append(Adjustment("core", "COUPON", f"coupon {row.title} ({code})", -off, uses=1))
    return found, problems, applied


def quote(ctx: Context, cart: Cart) -> Quote:
    """Price `cart` (reads only): the same cart and the same data always give the same quote."""
    subtotal = price = sum(line.amount for line in cart.lines)
    line_totals = [line.amount for line in cart.lines]
    applied: list[Adjustment] = []
    problems: list[CouponProblem] = []
    coupon_codes: list[str] = []
    points_used = 0
    for stage in PriceStage:
        proposed: list[Adjustment] = []
        if stage is PriceStage.COUPON:
            proposed, problems, coupon_codes = _coupon_stage(ctx, cart, price)
        proposed += _flatten(ctx.hook.price_adjustments(ctx=ctx, cart=cart, stage=stage, subtotal=price))
        for adjustment in fold(proposed, ctx.shop.checkout.percent_rule):
            amount = max(int(adjustment.amount), -price)  # never below zero
            if amount == 0:
                continue
            uses = adjustment.uses
            if amount != adjustment.amount and uses:
                uses = uses * amount // adjustment.amount  # a clamped adjustment uses its share only
            price += amount
            applied.append(replace(adjustment, amount=amount, uses=uses))
            _apply_to_lines(line_totals, cart.lines, applied[-1])
            if stage is PriceStage.POINTS:
                points_used += uses
    total = max(price, 0)
    earn = sum(n for n in ctx.hook.points_to_earn(ctx=ctx, cart=cart, total=total) if n)
    denials = tuple(_flatten(ctx.hook.purchase_denials(ctx=ctx, cart=cart)))
    lines = tuple(QuoteLine(line.sku, line.quantity, line.amount, line_total)
                  for line, line_total in zip(cart.lines, line_totals, strict=True))
    return Quote(ctx.shop.currency, subtotal, tuple(applied), total, earn, denials, tuple(problems),
                 tuple(coupon_codes), points_used, lines)


# ---------------------------------------------------------------- startCheckout


def start_checkout(runtime: Runtime, shop: Shop, api_key_id: str | None, *, member_id: str, idempotency_key: str,
                   lines: list[dict[str, Any]] | None, coupon_codes: list[str] | None = None,
                   points_to_redeem: int | None = None, reservation_ids: list[str] | None = None) -> EventResult:
    """Quote the cart and hold what the quote uses, in one transaction; `data["checkout_id"]` names it.

    A repeat of the member's idempotency key returns the same checkout marked duplicate; the same key with
    another cart is refused with IDEMPOTENCY_CONFLICT.
    """
    payload = {"member_id": member_id, "lines": lines, "coupon_codes": coupon_codes,
               "points_to_redeem": points_to_redeem, "reservation_ids": reservation_ids}
    checked: dict[str, Any] = {}

    def validate(ctx: Context) -> None:
        key = require_key(idempotency_key, "idempotencyKey")
        if len(key) > MAX_IDEMPOTENCY_KEY:
            raise Refused("INVALID_KEY", f"idempotencyKey must be 1 to {MAX_IDEMPOTENCY_KEY} characters",
                          "idempotencyKey")
        cart = make_cart(member_id, lines, coupon_codes, points_to_redeem, reservation_ids)
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
        expires_at = ctx.now + timedelta(minutes=shop.checkout.hold_minutes)
        ctx.conn.execute(CHECKOUTS.insert().values(
            id=checkout_id, shop=shop.slug, member_id=member_id, status="HELD", cart=cart_json(cart),
            quote=priced.as_json(), created_at=ctx.now, expires_at=expires_at))
        ctx.wallet.hold(member_id, priced.coupon_codes, checkout_id, expires_at)
        held = replace(cart, coupon_codes=priced.coupon_codes, points_to_redeem=priced.points_used,
                       checkout_id=checkout_id)
        effects = [Effect("core", "CHECKOUT_HELD", f"checkout {checkout_id} holds until "
                          f"{expires_at.isoformat()}", rule="checkout")]
        if priced.coupon_codes:
            effects.append(Effect("core", "COUPON_HELD", f"coupon(s) {', '.join(priced.coupon_codes)} held",
                                  rule="wallet"))
        effects += _flatten(ctx.hook.checkout_hold(ctx=ctx, checkout_id=checkout_id, cart=held))
        return EventResult(member_id, effects, data={"checkout_id": checkout_id})

    key = f"{member_id}:{idempotency_key.strip()}"
    return run_event(runtime, shop, "checkout_start", key, payload, handle, api_key_id, validate)


# ---------------------------------------------------------------- release and expiry


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
        return EventResult(member_id, [Effect("core", "CHECKOUT_RELEASED", f"checkout {checkout_id} released",
                                              rule="checkout")], data={"checkout_id": checkout_id})

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
    return f"{expired} checkout(s) expired"


# ---------------------------------------------------------------- paying with a checkout


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


def checkout_for_order(ctx: Context, order: PaidOrder) -> tuple[PaidOrder, list[Effect], int]:
    """What a paid order with `checkout_id` uses: (the order as recorded, core's effects, held points).

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
        return replace(order, checkout_id=None), [Effect(
            "core", EffectKind.CONFLICT, f"checkout {checkout_id} is not one of this member's: the order is "
            "recorded as sent", code="CHECKOUT_UNKNOWN", rule="checkout")], 0
    if row.status == "COMPLETED":  # paid by another order, which used its coupons and points
        return replace(order, checkout_id=None), [Effect(
            "core", EffectKind.CONFLICT, f"checkout {checkout_id} was already completed by another order: this "
            "order is recorded as sent", code="CHECKOUT_COMPLETED", rule="checkout")], 0
    held_points = row.quote.get("points_used", 0)
    recorded = replace(order, coupon_codes=_merged(row.quote.get("coupon_codes", []), order.coupon_codes),
                       reservation_ids=_merged(row.cart.get("reservation_ids", []), order.reservation_ids),
                       points_redeemed=max(order.points_redeemed, held_points))
    completed = ctx.conn.execute(
        update(CHECKOUTS).where(CHECKOUTS.c.id == checkout_id, CHECKOUTS.c.shop == ctx.shop.slug,
                                CHECKOUTS.c.status == "HELD", CHECKOUTS.c.expires_at > ctx.now)
        .values(status="COMPLETED", settled_at=ctx.now, order_id=order.order_id)).rowcount
    if completed:
        return recorded, [Effect("core", "CHECKOUT_COMPLETED", f"checkout {checkout_id} completed by order "
                                 f"{order.order_id}", rule="checkout")], held_points
    status = row.status
    if status == "HELD":  # past its expiry, not yet expired by the job: give its holds back first
        _close(ctx, checkout_id, "EXPIRED", "expired")
        status = "EXPIRED"
    code = "CHECKOUT_RELEASED" if status == "RELEASED" else "CHECKOUT_EXPIRED"
    conflict = Effect("core", EffectKind.CONFLICT, f"checkout {checkout_id} was {status.lower()} before the "
                      "payment: its coupons, points and reservations are taken only where still free",
                      code=code, rule="checkout")
    return replace(recorded, checkout_id=None), [conflict], 0
