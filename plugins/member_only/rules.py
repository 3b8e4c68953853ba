"""Who may buy a product, from when, and at what member price (RULES.md section 4).

One function, :func:`evaluate`, decides for a list of skus and a member (or an anonymous shopper): the
storefront's ``productAccess``, the integrator's ``upsertProductRule`` payload and the cart hooks
(``purchase_denials``, ``price_adjustments``) all call it, so a product answers the same everywhere.

The checks, in this order (the first that fails is the reason):

1. ``MEMBERS_ONLY``: the rule is members-only and no member is signed in (a key, not a member token).
2. ``TIER_TOO_LOW``: the rule has a minimum tier and the member's tier ranks below it. Ranks come from
   core's ``tier_catalog`` and ``member_tier`` hooks; without tiering, or for a tier the shop no longer
   has, nobody reaches it (a limited edition fails closed).
3. ``NOT_IN_SEGMENT``: the rule names a segment the member is not in (core's ``member_segments`` hook;
   without a plugin keeping segments nobody is in one).
4. ``NOT_LAUNCHED``: now is before ``launch_at``, unless the member has early access (a tier at or above
   ``early_access_min_tier``) and now is at or after ``early_access_from`` (``launch_at`` minus
   ``early_access_days``). ``early_access_from`` is given only where the shop has that tier.

Times are stored in UTC and said in the shop's timezone. Reads only SELECT; the one write is
:func:`upsert_rule`, a single INSERT ... ON CONFLICT DO UPDATE per (shop, sku).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from sqlalchemy import Table, select

from memberkit.plugin import (
    Adjustment,
    Cart,
    Context,
    Effect,
    EventResult,
    PurchaseDenial,
    Refused,
    Runtime,
    Shop,
    TierInfo,
    money,
    require_moment,
    require_segment,
    run_event,
    upsert,
)
from memberkit.plugins.member_only.models import ProductRule
from memberkit.plugins.member_only.settings import NAME, MemberOnlySettings, settings_of

RULES: Table = ProductRule.__table__
MAX_SKU_LENGTH = 200

MEMBERS_ONLY = "MEMBERS_ONLY"
TIER_TOO_LOW = "TIER_TOO_LOW"
NOT_IN_SEGMENT = "NOT_IN_SEGMENT"
NOT_LAUNCHED = "NOT_LAUNCHED"
MEMBER_PRICE = "MEMBER_PRICE"


@dataclass(frozen=True)
class Rule:
    sku: str
    member_only: bool
    min_tier: str | None
    launch_at: datetime | None
    member_price: int | None
    segment: str | None = None


@dataclass(frozen=True)
class Access:
    """What one shopper may do with one sku now. `rule` is None for a product without a rule."""

    sku: str
    rule: Rule | None
    early_access_from: datetime | None
    can_purchase: bool
    reason_code: str | None = None
    reason: str | None = None


class Shopper:
    """The member asking (None: anonymous) and the shop's tiers, each read at most once per evaluation."""

    def __init__(self, ctx: Context, member_id: str | None):
        self.ctx, self.member_id = ctx, member_id

    @cached_property
    def catalog(self) -> dict[str, TierInfo] | None:
        tiers: list[TierInfo] | None = self.ctx.hook.tier_catalog(ctx=self.ctx)
        return None if tiers is None else {t.code: t for t in tiers}

    @cached_property
    def tier(self) -> TierInfo | None:
        return self.ctx.member_tier(self.member_id) if self.member_id else None

    @cached_property
    def segments(self) -> list[str]:
        found = self.ctx.hook.member_segments(ctx=self.ctx, member_id=self.member_id) if self.member_id else None
        return found or []

    def tier_name(self, code: str) -> str:
        found = (self.catalog or {}).get(code)
        return found.name if found else code

    def reaches(self, code: str) -> bool:
        """Whether the member's tier ranks at or above tier `code`; never for anonymous shoppers, without
        tiering, or for a code the shop does not have."""
        if self.member_id is None:
            return False
        wanted = (self.catalog or {}).get(code)
        return wanted is not None and self.tier is not None and self.tier.rank >= wanted.rank


def load_rules(ctx: Context, skus: set[str]) -> dict[str, Rule]:
    if not skus:
        return {}
    rows = ctx.conn.execute(
        select(RULES.c.sku, RULES.c.member_only, RULES.c.min_tier, RULES.c.launch_at, RULES.c.member_price,
               RULES.c.segment)
        .where(RULES.c.shop == ctx.shop.slug, RULES.c.sku.in_(sorted(skus)))).all()
    return {row.sku: Rule(*row) for row in rows}


def when(ctx: Context, moment: datetime) -> str:
    """A moment on the shop's wall clock, e.g. "2026-03-10 10:00 (Asia/Shanghai)"."""
    return f"{ctx.shop.local(moment):%Y-%m-%d %H:%M} ({ctx.shop.timezone.key})"


def early_access_from(s: MemberOnlySettings, rule: Rule, who: Shopper) -> datetime | None:
    """When early access opens for `rule`: launch minus the days, where the shop has the early tier."""
    if rule.launch_at is None or not s.early_access_days or s.early_access_min_tier is None:
        return None
    if s.early_access_min_tier not in (who.catalog or {}):
        return None
    return rule.launch_at - timedelta(days=s.early_access_days)


def decide(ctx: Context, s: MemberOnlySettings, sku: str, rule: Rule | None, who: Shopper) -> Access:
    if rule is None:
        return Access(sku, None, None, True)
    early = early_access_from(s, rule, who)

    def denied(code: str, reason: str) -> Access:
        return Access(sku, rule, early, False, code, reason)

    if (rule.member_only or rule.min_tier or rule.segment) and who.member_id is None:
        if rule.min_tier:
            return denied(MEMBERS_ONLY, f"For {who.tier_name(rule.min_tier)} members and above: sign in to buy")
        return denied(MEMBERS_ONLY, "For members only: sign in to buy")
    if rule.min_tier and not who.reaches(rule.min_tier):
        return denied(TIER_TOO_LOW, f"For {who.tier_name(rule.min_tier)} members and above")
    if rule.segment and rule.segment not in who.segments:
        return denied(NOT_IN_SEGMENT, f"For members of the segment {rule.segment!r} only")
    if rule.launch_at is not None and ctx.now < rule.launch_at:
        has_early = early is not None and who.reaches(s.early_access_min_tier)
        if has_early and ctx.now >= early:
            return Access(sku, rule, early, True)
        if has_early:
            return denied(NOT_LAUNCHED, f"Early access for you from {when(ctx, early)}; "
                                        f"on sale to everyone from {when(ctx, rule.launch_at)}")
        if early is not None:
            return denied(NOT_LAUNCHED, f"On sale from {when(ctx, rule.launch_at)}; "
                                        f"{who.tier_name(s.early_access_min_tier)} members and above "
                                        f"from {when(ctx, early)}")
        return denied(NOT_LAUNCHED, f"On sale from {when(ctx, rule.launch_at)}")
    return Access(sku, rule, early, True)


def evaluate(ctx: Context, skus: Sequence[str], member_id: str | None) -> list[Access]:
    """What `member_id` (None: anonymous) may do with each of `skus` now, in the order given. Reads only:
    one query for the rules, and the tier hooks at most once each."""
    wanted = [sku.strip() for sku in skus]
    rules = load_rules(ctx, set(wanted))
    s, who = settings_of(ctx), Shopper(ctx, member_id)
    return [decide(ctx, s, sku, rules.get(sku), who) for sku in wanted]


# ---------------------------------------------------------------- the cart hooks (reads only)


def denials(ctx: Context, cart: Cart) -> list[PurchaseDenial]:
    """A denial per cart line the shopper may not buy, with productAccess's code and message."""
    found = evaluate(ctx, [line.sku for line in cart.lines], cart.member_id)
    return [PurchaseDenial(access.sku, access.reason_code, access.reason)
            for access in found if not access.can_purchase and access.reason_code and access.reason]


def member_prices(ctx: Context, cart: Cart) -> list[Adjustment]:
    """For a member, per line whose product has a member price below the line's unit price: the
    difference times the quantity, negative. Member price and flash-sale price compete for a line
    (RULES.md section 6), hence the exclusive group per sku."""
    if cart.member_id is None or not cart.lines:
        return []
    found = evaluate(ctx, [line.sku for line in cart.lines], cart.member_id)
    adjustments = []
    for line, access in zip(cart.lines, found, strict=True):
        price = access.rule.member_price if access.rule else None
        if price is None or price >= line.unit_price:
            continue
        adjustments.append(Adjustment(NAME, MEMBER_PRICE, f"member price {money(price)}",
                                      (price - line.unit_price) * line.quantity, sku=access.sku,
                                      exclusive_group=f"unit_price:{access.sku}"))
    return adjustments


# ---------------------------------------------------------------- the integrator's write


def check_sku(sku: str) -> str:
    value = sku.strip()
    if not value or len(value) > MAX_SKU_LENGTH:
        raise Refused("INVALID_SKU", f"sku is {len(sku.strip())} characters: expected 1 to {MAX_SKU_LENGTH}", "sku")
    return value


def check_min_tier(ctx: Context, min_tier: str | None, member_only: bool) -> str | None:
    if min_tier is None:
        return None
    code = min_tier.strip()
    catalog: list[TierInfo] | None = ctx.hook.tier_catalog(ctx=ctx)
    if catalog is None:
        raise Refused("TIERING_NOT_ENABLED", "minTier needs tiers, and this shop has not enabled tiering",
                      "minTier")
    codes = [t.code for t in catalog]
    if code not in codes:
        raise Refused("UNKNOWN_TIER", f"no tier {code!r} in this shop; its tiers are {', '.join(codes)}",
                      "minTier")
    if not member_only:
        raise Refused("MIN_TIER_NEEDS_MEMBER_ONLY",
                      "a product for a tier and above is for members only: set memberOnly to true", "memberOnly")
    return code


def check_segment(ctx: Context, segment: str | None, member_only: bool) -> str | None:
    if segment is None or not segment.strip():
        return None
    code = require_segment(ctx, segment.strip())
    if not member_only:
        raise Refused("SEGMENT_NEEDS_MEMBER_ONLY",
                      "a product for a segment is for members only: set memberOnly to true", "memberOnly")
    return code


_UPSERT = upsert(RULES, update=lambda excluded: {name: excluded[name] for name in (
    "member_only", "min_tier", "launch_at", "member_price", "segment", "event_id", "updated_at")})


def upsert_rule(runtime: Runtime, shop: Shop, api_key_id: str | None, *, sku: str, member_only: bool,
                min_tier: str | None = None, launch_at: datetime | None = None,
                member_price: int | None = None, segment: str | None = None) -> tuple[EventResult, Access | None]:
    """Create or replace the rule of `sku`: every field is set as given (a field left out is cleared).

    Recorded as an event (who sent it, under which settings version) and written with one INSERT ... ON
    CONFLICT DO UPDATE, so two concurrent upserts of a sku leave one row. Refused, with nothing written,
    for bad input. Returns the result and the product's access as an anonymous shopper sees it now.
    """
    payload = {"sku": sku, "member_only": member_only, "min_tier": min_tier, "launch_at": launch_at,
               "member_price": member_price, "segment": segment}
    checked: dict[str, Any] = {}

    def validate(ctx: Context) -> None:
        checked["sku"] = check_sku(sku)
        checked["min_tier"] = check_min_tier(ctx, min_tier, member_only)
        checked["segment"] = check_segment(ctx, segment, member_only)
        require_moment(launch_at, "launchAt", ctx.now, fact=False)
        if member_price is not None and member_price < 0:
            raise Refused("NEGATIVE_AMOUNT", f"memberPrice is {member_price}: expected 0 or more", "memberPrice")

    def handle(ctx: Context) -> EventResult:
        code = checked["sku"]
        ctx.conn.execute(_UPSERT.on(ctx.conn), {
            "shop": ctx.shop.slug, "sku": code, "member_only": member_only, "min_tier": checked["min_tier"],
            "launch_at": launch_at.astimezone(UTC) if launch_at else None, "member_price": member_price,
            "segment": checked["segment"], "event_id": ctx.event_id, "created_at": ctx.now, "updated_at": ctx.now})
        checked["access"] = evaluate(ctx, [code], None)[0]
        return EventResult(effects=[Effect(NAME, "PRODUCT_RULE_SAVED", describe(ctx, checked["access"].rule),
                                           rule=f"product:{code}")], data={"sku": code})

    result = run_event(runtime, shop, "member_only.upsert_rule", None, payload, handle, api_key_id, validate)
    return result, checked.get("access")


def describe(ctx: Context, rule: Rule | None) -> str:
    if rule is None:
        return "no rule"
    parts = [f"{rule.sku}:", "members only" if rule.member_only else "everyone"]
    if rule.min_tier:
        parts.append(f"{rule.min_tier} and above")
    if rule.segment:
        parts.append(f"segment {rule.segment}")
    if rule.launch_at:
        parts.append(f"from {when(ctx, rule.launch_at)}")
    if rule.member_price is not None:
        parts.append(f"member price {money(rule.member_price)}")
    return " ".join(parts[:2]) + "".join(f", {p}" for p in parts[2:])
