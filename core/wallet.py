"""The coupon wallet: any plugin issues into it through one service; an order uses a coupon exactly once."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, insert, or_, select, update

from memberkit.core.models import Coupon
from memberkit.core.types import Effect, EffectKind, Refused

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: codes are read aloud and typed
COUPONS = Coupon.__table__


def new_code(length: int = 10) -> str:  # one random byte a character, 32 letters: 256 % 32 == 0, no bias
    return "".join(CODE_ALPHABET[byte % len(CODE_ALPHABET)] for byte in secrets.token_bytes(length))


@dataclass(frozen=True)
class IssuedCoupon:
    id: str
    code: str
    template: str
    title: str
    valid_until: datetime | None


def available_clause(now: datetime):
    return and_(Coupon.status == "AVAILABLE", or_(Coupon.valid_until.is_(None), Coupon.valid_until > now))


class Wallet:
    """Coupons of one shop, inside the caller's transaction (``ctx.wallet``)."""

    def __init__(self, ctx):
        self.ctx = ctx

    def issue(self, member_id: str, template: str, *, source: str) -> IssuedCoupon:
        """Put a coupon of the shop's `template` into the member's wallet; `source` is "plugin:rule"."""
        shop, now = self.ctx.shop, self.ctx.now
        spec = shop.coupons.get(template)
        if spec is None:
            raise KeyError(f"shop {shop.slug!r} has no coupon template {template!r} in plugins.toml")
        valid_until = spec.valid_until or (now + timedelta(days=spec.valid_days) if spec.valid_days else None)
        coupon = IssuedCoupon("cpn_" + secrets.token_hex(10), new_code(), template, spec.title, valid_until)
        self.ctx.conn.execute(insert(Coupon).values(
            id=coupon.id, shop=shop.slug, member_id=member_id, code=coupon.code, template=template,
            title=spec.title, kind=spec.kind, value=spec.value, min_spend=spec.min_spend, source=source,
            status="AVAILABLE", issued_at=now, valid_until=valid_until,
        ))
        self.ctx.emit("coupon.issued", member_id, couponId=coupon.id, code=coupon.code, template=template,
                      title=spec.title, kind=spec.kind, value=spec.value, minSpend=spec.min_spend,
                      validUntil=valid_until, rule=source)
        self.ctx.count("couponsIssued")
        return coupon

    def issued_effect(self, plugin: str, coupon: IssuedCoupon, rule: str | None = None) -> Effect:
        return Effect(plugin, EffectKind.COUPON_ISSUED, f"coupon {coupon.title} ({coupon.code}) issued",
                      rule=rule or coupon.template)

    def lookup(self, codes: tuple[str, ...] | list[str]) -> dict[str, Any]:
        """The shop's coupons with these codes (reads only), by code: what a price or a hold checks."""
        if not codes:
            return {}
        rows = self.ctx.conn.execute(select(COUPONS).where(COUPONS.c.shop == self.ctx.shop.slug,
                                                           COUPONS.c.code.in_(list(codes))))
        return {row.code: row for row in rows}

    def coupon(self, coupon_id: str) -> Any:
        """One coupon of the shop by its id (reads only), e.g. to show the one just issued."""
        return self.ctx.conn.execute(select(COUPONS).where(COUPONS.c.shop == self.ctx.shop.slug,
                                                           COUPONS.c.id == coupon_id)).one()

    def problem(self, coupon: Any | None, member_id: str, spend: int | None = None,
                checkout_id: str | None = None) -> tuple[str, str] | None:
        """Why `coupon` (a row of :meth:`lookup`) cannot be used by the member now, as (code, reason), or
        None; a hold of `checkout_id` is the member's own, and `spend` is checked against a minimum."""
        now = self.ctx.now
        if coupon is None:
            return "COUPON_UNKNOWN", "no such coupon"
        if coupon.member_id != member_id:
            return "COUPON_NOT_OWNED", "it belongs to another member"
        if coupon.status == "USED":
            return "COUPON_ALREADY_USED", "already used"
        if coupon.status != "AVAILABLE":
            return "COUPON_WITHDRAWN", "withdrawn"
        if coupon.valid_until is not None and coupon.valid_until <= now:
            return "COUPON_EXPIRED", "expired"
        if coupon.held_by not in (None, checkout_id) and coupon.held_until is not None and coupon.held_until > now:
            return "COUPON_HELD", "held by another checkout until it is paid, released or expires"
        if spend is not None and coupon.min_spend > spend:
            return "COUPON_MIN_SPEND_NOT_MET", f"needs a spend of {coupon.min_spend}, got {spend}"
        return None

    def _why_unusable(self, member_id: str, code: str, spend: int | None, checkout_id: str | None) -> tuple[str, str]:
        found = self.problem(self.lookup([code]).get(code), member_id, spend, checkout_id)
        return found or ("COUPON_HELD", "held by another checkout")

    def use(self, member_id: str, codes: tuple[str, ...], order_id: str, spend: int,
            checkout_id: str | None = None) -> list[Effect]:
        """Mark each coupon used by `order_id`: one conditional UPDATE each, so a coupon is used once.

        `spend` is what a minimum spend is checked against (the order's lines at list price). A coupon that
        cannot be used does not stop the order: it comes back as a CONFLICT effect and stays unused.
        """
        effects = []
        shop, now, conn = self.ctx.shop.slug, self.ctx.now, self.ctx.conn
        for code in codes:
            used = conn.execute(
                update(Coupon)
                .where(Coupon.shop == shop, Coupon.code == code, Coupon.member_id == member_id,
                       available_clause(now), Coupon.min_spend <= spend,
                       or_(Coupon.held_by.is_(None), Coupon.held_until <= now,
                           Coupon.held_by == checkout_id if checkout_id else False))
                .values(status="USED", used_at=now, used_order_id=order_id, held_by=None, held_until=None)
            ).rowcount
            if used:
                effects.append(Effect("core", EffectKind.COUPON_USED, f"coupon {code} used", rule="wallet"))
                self.ctx.emit("coupon.used", member_id, code=code, orderId=order_id)
                self.ctx.count("couponsUsed")
            else:
                reason, text = self._why_unusable(member_id, code, spend, checkout_id)
                effects.append(Effect("core", EffectKind.CONFLICT, f"coupon {code} not applied: {text}",
                                      code=reason, rule="wallet"))
        return effects

    def hold(self, member_id: str, codes: tuple[str, ...], checkout_id: str, until: datetime) -> None:
        """Hold each coupon for `checkout_id` until `until`: one conditional UPDATE each (not held, or its
        hold lapsed), so of two checkouts racing for one coupon exactly one holds it. A coupon that cannot
        be held raises ``Refused`` with the reason's code, which rolls the whole checkout back."""
        shop, now, conn = self.ctx.shop.slug, self.ctx.now, self.ctx.conn
        for code in codes:
            held = conn.execute(
                update(Coupon)
                .where(Coupon.shop == shop, Coupon.code == code, Coupon.member_id == member_id,
                       available_clause(now), or_(Coupon.held_by.is_(None), Coupon.held_until <= now))
                .values(held_by=checkout_id, held_until=until)
            ).rowcount
            if not held:
                reason, text = self._why_unusable(member_id, code, None, None)
                raise Refused(reason, f"coupon {code} cannot be held: {text}", "couponCodes")

    def release(self, checkout_id: str) -> int:
        """Give back every coupon `checkout_id` still holds; returns how many."""
        return self.ctx.conn.execute(
            update(Coupon).where(Coupon.shop == self.ctx.shop.slug, Coupon.held_by == checkout_id,
                                 Coupon.status == "AVAILABLE")
            .values(held_by=None, held_until=None)).rowcount

    def withdraw(self, coupon_id: str, reason: str) -> bool:
        """Take back a coupon that is still unused (e.g. a referral reward whose order was refunded):
        one conditional UPDATE; False if it was used meanwhile (then it stays with the member)."""
        row = self.ctx.conn.execute(
            update(Coupon).where(Coupon.id == coupon_id, Coupon.shop == self.ctx.shop.slug,
                                 Coupon.status == "AVAILABLE", Coupon.held_by.is_(None))
            .values(status="WITHDRAWN", used_at=self.ctx.now, used_order_id=f"withdrawn: {reason}"[:200])
            .returning(Coupon.member_id, Coupon.code)).first()
        if row is not None:
            self.ctx.emit("coupon.withdrawn", row.member_id, couponId=coupon_id, code=row.code, reason=reason)
        return row is not None
