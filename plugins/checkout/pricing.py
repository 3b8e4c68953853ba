"""The cart quote: what a member would pay and why, built stage by stage in RULES.md section 6's order.

At each stage (``PriceStage``: unit price -> coupons -> percentages -> points as cash) every enabled plugin
is asked for its ``price_adjustments`` with the price so far; the COUPON stage adds the cart's coupons from
the core wallet. What came back is folded (adjustments sharing an ``exclusive_group`` keep only the largest
discount, unless the shop's ``percent_rule`` is "all") and the price never goes below zero. A quote only
reads: the same cart and the same data always give the same quote.

Coupon problems (unknown, expired, held elsewhere, minimum spend not met, over the shop's coupon limit) are
not purchase denials: the quote returns them in ``couponProblems`` and prices the cart without that coupon.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from memberkit.plugin import (
    Adjustment,
    Cart,
    Context,
    OrderLine,
    PriceStage,
    PurchaseDenial,
    Refused,
    collect,
    coupon_codes,
    order_lines,
    spread,
)
from memberkit.plugins.checkout.settings import settings_of


def make_cart(member_id: str | None, lines: list[dict[str, Any]] | None, codes: list[str] | None = None,
              points_to_redeem: int | None = None, reservation_ids: list[str] | None = None,
              stored_value_to_use: int | None = None) -> Cart:
    """A validated cart; malformed input raises ``Refused`` with the field it concerns."""
    found_lines, found_codes = order_lines(lines), coupon_codes(codes)
    for field, value in (("pointsToRedeem", points_to_redeem), ("storedValueToUse", stored_value_to_use)):
        if (value or 0) < 0:
            raise Refused("NEGATIVE_AMOUNT", f"{field} is {value}: expected 0 or more", field)
    reservations = [r.strip() for r in reservation_ids or []]
    if len(set(reservations)) != len(reservations) or not all(reservations):
        raise Refused("INVALID_RESERVATION_IDS", "reservationIds has an empty or repeated id: expected distinct ids",
                      "reservationIds")
    return Cart(found_lines, member_id, found_codes, points_to_redeem or 0, tuple(reservations),
                stored_value_to_use=stored_value_to_use or 0)


def cart_json(cart: Cart) -> dict[str, Any]:
    return {"lines": [line.__dict__ for line in cart.lines], "member_id": cart.member_id,
            "coupon_codes": list(cart.coupon_codes), "points_to_redeem": cart.points_to_redeem,
            "reservation_ids": list(cart.reservation_ids), "stored_value_to_use": cart.stored_value_to_use}


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
    the price uses (and what a checkout holds); `stored_value` is the part of `total` the member pays from
    the prepaid balance (what a checkout holds; the cash to charge is total - stored_value)."""

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
    stored_value: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"currency": self.currency, "subtotal": self.subtotal, "total": self.total,
                "adjustments": [asdict(a) for a in self.adjustments], "points_to_earn": self.points_to_earn,
                "denials": [asdict(d) for d in self.denials],
                "coupon_problems": [asdict(p) for p in self.coupon_problems],
                "coupon_codes": list(self.coupon_codes), "points_used": self.points_used,
                "lines": [asdict(line) for line in self.lines], "stored_value": self.stored_value}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Quote:
        return cls(data["currency"], data["subtotal"], tuple(Adjustment(**a) for a in data["adjustments"]),
                   data["total"], data["points_to_earn"], tuple(PurchaseDenial(**d) for d in data["denials"]),
                   tuple(CouponProblem(**p) for p in data.get("coupon_problems", [])),
                   tuple(data.get("coupon_codes", [])), data.get("points_used", 0),
                   tuple(QuoteLine(**line) for line in data.get("lines", [])), data.get("stored_value", 0))


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
    """The COUPON stage's own part: the cart's coupons from the member's wallet, checked on the price so far
    (minimum spend) and limited to the shop's `max_coupons`, in the order the cart lists them."""
    if not cart.coupon_codes:
        return [], [], []
    if cart.member_id is None:
        return [], [CouponProblem(c, "COUPON_NEEDS_MEMBER", "coupons need a signed-in member")
                    for c in cart.coupon_codes], []
    coupons = ctx.wallet.lookup(cart.coupon_codes)
    limit = settings_of(ctx).max_coupons
    found, problems, applied = [], [], []
    for code in cart.coupon_codes:
        row = coupons.get(code)
        problem = ctx.wallet.problem(row, cart.member_id, price, cart.checkout_id)
        if problem is None and len(applied) >= limit:
            problem = ("COUPON_LIMIT", f"an order may use {limit} coupon(s)")
        elif problem is None and price == 0:
            problem = ("COUPON_NOTHING_LEFT", "earlier discounts already took the price to zero")
        if problem:
            problems.append(CouponProblem(code, problem[0], f"coupon {code} not applied: {problem[1]}"))
            continue
        off = min(row.value if row.kind == "FIXED" else price * row.value // 100, price)
        price -= off  # the next coupon's threshold is checked on the price after this one (RULES.md 6)
        applied.append(code)
        found.append(Adjustment("checkout", "COUPON", f"coupon {row.title} ({code})", -off, uses=1))
    return found, problems, applied


def _apply_to_lines(totals: list[int], lines: tuple[OrderLine, ...], adjustment: Adjustment) -> None:
    """An adjustment for one product goes to its lines; any other to every line, by what each costs now."""
    chosen = [i for i, line in enumerate(lines) if adjustment.sku is not None and line.sku == adjustment.sku]
    if not chosen or (adjustment.amount < 0 and sum(totals[i] for i in chosen) < -adjustment.amount):
        chosen = list(range(len(lines)))
    for i, share in zip(chosen, spread([totals[i] for i in chosen], adjustment.amount), strict=True):
        totals[i] += share


def quote(ctx: Context, cart: Cart) -> Quote:
    """Price `cart` (reads only): the same cart and the same data always give the same quote."""
    subtotal = price = sum(line.amount for line in cart.lines)
    line_totals = [line.amount for line in cart.lines]
    applied: list[Adjustment] = []
    problems: list[CouponProblem] = []
    codes: list[str] = []
    points_used = 0
    rule = settings_of(ctx).percent_rule
    for stage in PriceStage:
        proposed: list[Adjustment] = []
        if stage is PriceStage.COUPON:
            proposed, problems, codes = _coupon_stage(ctx, cart, price)
        proposed += collect(ctx.hook.price_adjustments(ctx=ctx, cart=cart, stage=stage, subtotal=price))
        for adjustment in fold(proposed, rule):
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
    denials = tuple(collect(ctx.hook.purchase_denials(ctx=ctx, cart=cart)))
    lines = tuple(QuoteLine(line.sku, line.quantity, line.amount, line_total)
                  for line, line_total in zip(cart.lines, line_totals, strict=True))
    return Quote(ctx.shop.currency, subtotal, tuple(applied), total, earn, denials, tuple(problems),
                 tuple(codes), points_used, lines, min(cart.stored_value_to_use, total) if cart.member_id else 0)
