"""What changes a member's tier: paid orders, refunds, the evaluation job, and the integrator's two writes
(a tier set by hand, a tier bought). Each runs inside one transaction and records every change."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from memberkit.plugin import (
    Context,
    Effect,
    EventResult,
    ImportedMember,
    PaidOrder,
    Redemption,
    Refund,
    Refused,
    Runtime,
    Shop,
    insert_rows,
    load_member,
    money,
    require_key,
    require_moment,
    run_event,
)
from memberkit.plugins.tiering import standing as st
from memberkit.plugins.tiering.settings import NAME, TieringSettings, TierSettings, settings_of

MAX_REASON = 300


# ---------------------------------------------------------------- orders and refunds


def order_paid(ctx: Context, order: PaidOrder) -> list[Effect]:
    """Count the order, then raise the tier at once to what the spend earns, past several tiers if need be."""
    s = settings_of(ctx)
    counted = order.total - order.stored_value_bonus  # the bonus of a prepaid balance is no spend (RULES.md 10)
    st.ADD_ORDER.cursor(ctx.conn, {
        "shop": ctx.shop.slug, "member_id": order.member_id, "order_id": order.order_id, "total": counted,
        "refunded": 0, "paid_at": order.paid_at})
    row = st.lock_row(ctx, order.member_id, spend=counted, orders=1)
    spend, orders = st.qualifying(ctx, s, order.member_id, row)
    target = st.earned(s, spend, orders)
    old = st.State.of(row)
    new = st.raise_standing(s, old, target, ctx.now)
    st.save(ctx, order.member_id, old, new)
    before, after = st.effective(s, old, ctx.now, row), st.effective(s, new, ctx.now, row)
    if after.code == before.code:
        return []
    return [st.record(ctx, order.member_id, before, after, st.TierChangeReason.ORDER, order.order_id,
                      f"order {order.order_id}, qualifying spend {money(spend, ctx.shop.currency)}, {orders} orders",
                      st.threshold_rule(s, after))]


def order_refunded(ctx: Context, refund: Refund) -> list[Effect]:
    """Refunded spend never counted: lower the tier at once to what the net spend earns (or at the next
    evaluation, as the shop says), however many steps that is; no grace period applies."""
    s = settings_of(ctx)
    mine = (st.ORDERS.c.shop == ctx.shop.slug, st.ORDERS.c.order_id == refund.order.order_id)
    counted = ctx.conn.execute(select(st.ORDERS.c.member_id, st.ORDERS.c.total, st.ORDERS.c.refunded,
                                      st.ORDERS.c.paid_at).where(*mine)).first()
    if counted is None:
        return []  # paid before the shop enabled tiering: it never counted
    # The counted spend (the total less any prepaid bonus) goes back in proportion to what is refunded,
    # cumulatively, so the parts of partial refunds add up to it; core's order row lock runs refunds in turn.
    paid, refunded = refund.order.total, min(refund.refunded_total, refund.order.total)
    target = counted.total * refunded // paid if paid else counted.total
    amount = target - counted.refunded
    ctx.conn.execute(update(st.ORDERS).where(*mine).values(refunded=target))
    now_full = refunded >= paid and refund.refunded_total - refund.amount < paid
    row = st.lock_row(ctx, counted.member_id, spend=-amount, orders=-1 if now_full else 0)
    spend, orders = st.qualifying(ctx, s, counted.member_id, row)
    start = st.window_start(ctx, s)
    in_window = start is None or counted.paid_at >= start
    earned_before = st.earned(s, spend + (amount if in_window else 0),
                              orders + (1 if now_full and in_window else 0))
    earned_after = st.earned(s, spend, orders)
    if earned_after.rank >= earned_before.rank:
        return []  # the refund does not change what the spend earns
    old = st.State.of(row)
    if s.refunds == "next_evaluation":
        st.save(ctx, counted.member_id, old, replace(old, refund_pending=True))
        return [Effect(NAME, "TIER_REVIEW_PENDING",
                       f"net spend now earns {earned_after.code}; the tier is corrected at the next evaluation",
                       rule="refunds: next_evaluation")]
    new = correct(s, old, earned_after)
    st.save(ctx, counted.member_id, old, new)
    before, after = st.effective(s, old, ctx.now, row), st.effective(s, new, ctx.now, row)
    if after.code == before.code:
        return []
    return [st.record(ctx, counted.member_id, before, after, st.TierChangeReason.REFUND, refund.refund_id,
                      f"refund {refund.refund_id} of order {refund.order.order_id}, net qualifying spend "
                      f"{money(spend, ctx.shop.currency)}", "refunds: immediately")]


def correct(s: TieringSettings, state: st.State, earned: TierSettings) -> st.State:
    """A refund's correction: the standing tier falls to what the net spend earns, if that is lower."""
    standing = st.by_code(s, state.tier_code)
    if standing is None or earned.rank < standing.rank:
        state = replace(state, tier_code=earned.code, grace_since=None)
    return replace(state, refund_pending=False)


def imported(ctx: Context, members: list[ImportedMember]) -> None:
    """Imported members' standing (``members_imported``): the CRM's tier, or what their history earns where
    that is higher or no tier was given (as the next evaluation would raise it), recorded with the reason
    IMPORTED; the lifetime spend and orders kept as the counters later refunds are netted against, and,
    where tiers count a rolling window, as one order of that spend at the last order's date (so a refund of
    a new order corrects the tier to what the history plus the rest earns, not what zero spend earns)."""
    s, slug, key = settings_of(ctx), ctx.shop.slug, ctx.cause.get("key")
    standings, history, orders = [], [], []
    for m in members:
        earned, given = st.earned(s, m.lifetime_spend, m.order_count), st.by_code(s, m.tier)
        tier = given if given is not None and given.rank >= earned.rank else earned
        standings.append({"member_id": m.id, "shop": slug, "tier_code": tier.code, "spend": m.lifetime_spend,
                          "orders": m.order_count, "refund_pending": False, "updated_at": ctx.now})
        history.append({"shop": slug, "member_id": m.id, "from_code": None, "to_code": tier.code,
                        "reason": st.TierChangeReason.IMPORTED.value, "reference": key, "created_at": ctx.now,
                        "note": (f"imported as {m.tier}; " if m.tier else "imported; ") + f"lifetime spend "
                                f"{money(m.lifetime_spend, ctx.shop.currency)}, {m.order_count} orders"})
        ctx.count(st.TIER_MEMBERS + tier.code)
        if s.window_months and (m.lifetime_spend or m.order_count):
            orders.append({"shop": slug, "member_id": m.id, "order_id": f"import:{m.id}", "total": m.lifetime_spend,
                           "refunded": 0, "paid_at": m.last_order_at or m.joined_at})
    insert_rows(ctx.conn, st.MEMBERS, standings)
    insert_rows(ctx.conn, st.HISTORY, history)
    insert_rows(ctx.conn, st.ORDERS, orders)


# ---------------------------------------------------------------- evaluation


def evaluate(ctx: Context) -> str:
    """Re-evaluate every member of the shop: ended overrides, deferred refund corrections, changed thresholds,
    rolling windows and grace periods. Idempotent: a second run at the same moment changes nothing."""
    s = settings_of(ctx)
    totals = st.window_totals(ctx, s)
    rows = ctx.conn.execute(select(*st._COLUMNS).where(st.MEMBERS.c.shop == ctx.shop.slug)
                            .order_by(st.MEMBERS.c.member_id)).all()
    changes = 0
    for row in rows:
        spend, orders = totals.get(row.member_id, (0, 0)) if totals is not None else (row.spend, row.orders)
        changes += evaluate_member(ctx, s, row, spend, orders)
    return f"{len(rows)} members evaluated, {changes} tier changes" if changes else None


def evaluate_member(ctx: Context, s: TieringSettings, row: Any, spend: int, orders: int) -> int:
    now = ctx.now
    old = st.State.of(row)
    state, reason, notes, rule = old, st.TierChangeReason.EVALUATION, [], "evaluation"
    if state.override_code and st.override_stands(s, state, now) is None:
        state = replace(state, override_code=None, override_until=None, override_reason=None)
        notes.append("the tier set by hand or bought has ended")
    target = st.earned(s, spend, orders)
    if st.by_code(s, state.tier_code) is None:
        notes.append(f"tier {state.tier_code} is no longer offered")
        state = replace(state, tier_code=target.code, grace_since=None)
    if state.refund_pending:
        corrected = correct(s, state, target)
        if corrected.tier_code != state.tier_code:
            reason, rule = st.TierChangeReason.REFUND, "refunds: next_evaluation"
            notes.append("refunded spend never counted")
        state = corrected
    standing = st.by_code(s, state.tier_code)
    if target.rank >= standing.rank:
        state = st.raise_standing(s, state, target, now)
        if target.rank > standing.rank:
            notes.append("the shop's thresholds now give a higher tier")
            rule = st.threshold_rule(s, target)
    elif s.grace_days:
        if state.grace_since is None:
            state = replace(state, grace_since=now)
        elif st.grace_ends(s, state) <= now:
            lower = st.lower_tier(s, standing)
            state = replace(state, tier_code=lower.code, grace_since=now if target.rank < lower.rank else None)
            notes.append(f"qualifies for {target.code} only, after a grace period of {s.grace_days} days")
            rule = f"grace_days {s.grace_days}, one step down"
    if state == old or not st.save(ctx, row.member_id, old, state, expected_updated_at=row.updated_at):
        return 0  # nothing to do, or an event changed the member meanwhile: the next run sees it
    # Before: the tier last recorded, an override that has just ended included (reads stopped showing it at
    # its expiry; the history records the change now).
    before = st.by_code(s, old.override_code) or st.effective(s, old, now, row)
    after = st.effective(s, state, now, row)
    if before.code == after.code:
        return 0
    st.record(ctx, row.member_id, before, after, reason, None,
              "; ".join(notes) + f"; qualifying spend {money(spend, ctx.shop.currency)}, {orders} orders", rule)
    return 1


# ---------------------------------------------------------------- the integrator's writes


def _tier_input(s: TieringSettings, code: str) -> TierSettings:
    tier = st.by_code(s, code.strip().upper())
    if tier is None:
        raise Refused("UNKNOWN_TIER", f"no tier {code!r} in this shop; tiers: {', '.join(t.code for t in s.tiers)}",
                      "tierCode")
    return tier


def set_member_tier(runtime: Runtime, shop: Shop, api_key_id: str | None, *, member_id: str, tier_code: str,
                    reason: str, expires_at: datetime | None = None,
                    idempotency_key: str | None = None) -> EventResult:
    """Set a member's tier by hand: it stands until their spend earns a higher one or `expires_at` passes."""
    payload = {"member_id": member_id, "tier_code": tier_code, "reason": reason, "expires_at": expires_at}
    checked: dict[str, Any] = {}

    def validate(ctx: Context) -> None:
        s = settings_of(ctx)
        if idempotency_key is not None:
            require_key(idempotency_key, "idempotencyKey")
        checked["tier"] = _tier_input(s, tier_code)
        checked["reason"] = reason.strip()
        if not checked["reason"] or len(checked["reason"]) > MAX_REASON:
            raise Refused("INVALID_REASON", f"reason is {len(checked['reason'])} characters: expected 1 to "
                          f"{MAX_REASON}", "reason")
        require_moment(expires_at, "expiresAt", ctx.now, fact=False)
        if expires_at is not None and expires_at <= ctx.now:
            raise Refused("EXPIRY_IN_PAST", f"expiresAt is {expires_at.isoformat()}, already past: expected a "
                          "future time", "expiresAt")

    def handle(ctx: Context) -> EventResult:
        s, tier = settings_of(ctx), checked["tier"]
        load_member(ctx.conn, shop.slug, member_id)
        row = st.lock_row(ctx, member_id)
        old = st.State.of(row)
        new = replace(old, override_code=tier.code, override_until=expires_at, override_reason=checked["reason"])
        st.save(ctx, member_id, old, new)
        before = st.effective(s, old, ctx.now, row)
        until = f" until {expires_at.isoformat()}" if expires_at else ""
        effect = st.record(ctx, member_id, before, tier, st.TierChangeReason.MANUAL, idempotency_key,
                           f"set by hand{until}: {checked['reason']}", "manual")
        return EventResult(member_id, [effect])

    key = idempotency_key.strip() if idempotency_key else None
    return run_event(runtime, shop, "tiering_set_tier", key, payload, handle, api_key_id, validate)


def record_tier_upgrade(runtime: Runtime, shop: Shop, api_key_id: str | None, *, member_id: str, tier_code: str,
                        amount_paid: int, points_used: int, idempotency_key: str) -> EventResult:
    """A tier bought: the platform charged `amount_paid`, points paid the rest through the redemption hook
    (the plugin that owns points performs it). Refused, with nothing written, if the numbers do not make the
    tier's price, the tier is not above the member's, or the points cannot be spent."""
    payload = {"member_id": member_id, "tier_code": tier_code, "amount_paid": amount_paid,
               "points_used": points_used}
    checked: dict[str, Any] = {}

    def validate(ctx: Context) -> None:
        s = settings_of(ctx)
        checked["key"] = require_key(idempotency_key, "idempotencyKey")
        tier = checked["tier"] = _tier_input(s, tier_code)
        if tier.upgrade_price is None:
            raise Refused("TIER_NOT_FOR_SALE", f"tier {tier.code} is not sold in this shop", "tierCode")
        if amount_paid < 0:
            raise Refused("NEGATIVE_AMOUNT", f"amountPaid is {amount_paid}: expected 0 or more", "amountPaid")
        if points_used < 0:
            raise Refused("NEGATIVE_AMOUNT", f"pointsUsed is {points_used}: expected 0 or more", "pointsUsed")
        if points_used > tier.upgrade_max_points:
            raise Refused("TOO_MANY_POINTS", f"at most {tier.upgrade_max_points} points go towards {tier.code}",
                          "pointsUsed")
        if (points_used * 100) % s.upgrade_points_per_yuan:
            raise Refused("INVALID_POINTS", f"points go in steps worth one fen ({s.upgrade_points_per_yuan} "
                          "points a yuan)", "pointsUsed")
        checked["points_value"] = points_used * 100 // s.upgrade_points_per_yuan
        if amount_paid + checked["points_value"] != tier.upgrade_price:
            raise Refused("PRICE_MISMATCH",
                          f"{tier.code} costs {tier.upgrade_price}; amountPaid {amount_paid} and {points_used} "
                          f"points (worth {checked['points_value']}) make {amount_paid + checked['points_value']}",
                          "amountPaid")

    def handle(ctx: Context) -> EventResult:
        s, tier, key = settings_of(ctx), checked["tier"], checked["key"]
        load_member(ctx.conn, shop.slug, member_id)
        row = st.lock_row(ctx, member_id)
        old = st.State.of(row)
        before = st.effective(s, old, ctx.now, row)
        if tier.rank <= before.rank:
            raise Refused("TIER_NOT_HIGHER", f"the member is {before.code} already; {tier.code} is not higher",
                          "tierCode")
        effects: list[Effect] = []
        if points_used:
            result = ctx.hook.redemption(ctx=ctx, member_id=member_id,
                                         redemption=Redemption("points", points_used, "tier_upgrade", key))
            if result is None:
                raise Refused("POINTS_NOT_ENABLED", "this shop has no points: pay the upgrade without points",
                              "pointsUsed")
            effects += list(result.effects)  # a RedemptionRefused goes up as the payload's error, rolling back
        until = st.upgrade_expiry(ctx, s)
        new = replace(old, override_code=tier.code, override_until=until, override_reason="paid upgrade")
        st.save(ctx, member_id, old, new)
        currency = ctx.shop.currency
        note = (f"bought for {money(tier.upgrade_price, currency)}: {money(amount_paid, currency)} paid"
                + (f" and {points_used} points" if points_used else "")
                + (f", until {until.isoformat()}" if until else ""))
        effects.insert(0, st.record(ctx, member_id, before, tier, st.TierChangeReason.PAID_UPGRADE, key, note,
                                    f"tiers.{tier.code}: upgrade_price {tier.upgrade_price}"))
        return EventResult(member_id, effects)

    return run_event(runtime, shop, "tiering_upgrade", idempotency_key.strip(), payload, handle, api_key_id,
                     validate)
