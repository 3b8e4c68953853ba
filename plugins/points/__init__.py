"""Points: a lot-based ledger that earns on purchases and actions, expires, refunds and redeems exactly.

At checkout, points are cash (``price_adjustments`` at the POINTS stage: what the member asked for, at most
the balance, at most ``cash_max_percent`` of the price so far); ``checkout_hold`` moves them from the balance
to ``held``; ``order_paid`` with the checkout spends the held points; release or expiry gives them back.
"""

from __future__ import annotations

from datetime import timedelta

from memberkit.plugin import (
    Adjustment,
    Context,
    Effect,
    Job,
    Plugin,
    PriceStage,
    RedemptionResult,
    export_tables,
    hookimpl,
    money,
)
from memberkit.plugins.points import graphql, ledger, models
from memberkit.plugins.points.settings import NAME, PointsSettings, settings_of

plugin = Plugin(
    NAME, settings=PointsSettings, graphql=graphql.contribute,
    tables=(models.PointsAccount, models.PointsEntry, models.PointsLot, models.PointsMilestone,
            models.PointsActionDay, models.PointsHold, models.PointsExpiryNotice),
    jobs=(Job("settle_lots", timedelta(hours=1), ledger.settle_lots),
          Job("notify_expiring", timedelta(hours=1), ledger.notify_expiring)),
    event_types=(*ledger.EVENT_TYPES.values(), "points.expiring"),
    figures=(*(metric for metric, _ in ledger.FIGURES.values()), "pointsReturned", ledger.PENDING_FIGURE),
)


@hookimpl
def members_imported(ctx, members):
    ledger.import_balances(ctx, members)


@hookimpl
def order_paid(ctx, order):
    effects = capture_for_order(ctx, order) if order.checkout_id else []
    return effects + ledger.earn_for_order(ctx, order)


def capture_for_order(ctx, order) -> list[Effect]:
    """The checkout's held points become the order's spend; what was no longer there is a CONFLICT."""
    held, spent = ledger.capture_hold(ctx, order.checkout_id, order.order_id)
    effects = []
    if spent:
        effects.append(Effect(NAME, "POINTS_SPENT", f"points -{spent} (order, held by checkout)",
                              rule="order"))
    if spent < held:
        effects.append(Effect(NAME, "CONFLICT", f"{held - spent} of {held} held points were no longer "
                              "there", code="INSUFFICIENT_POINTS", rule="order"))
    return effects


@hookimpl
def price_adjustments(ctx, cart, stage, subtotal):
    """Points as cash (RULES.md 2): min(asked, balance) points, worth `cash_points_per_unit` a unit of money,
    at most `cash_max_percent` of the price so far; rounded down to the fen. Anonymous carts: nothing."""
    if stage is not PriceStage.POINTS or not cart.member_id or cart.points_to_redeem <= 0 or subtotal <= 0:
        return None
    s = settings_of(ctx)
    balance = ledger.account_view(ctx, cart.member_id).balance
    cap = subtotal * s.cash_max_percent // 100
    points = min(cart.points_to_redeem, max(balance, 0), cap * s.cash_points_per_unit // s.unit)
    off = points * s.unit // s.cash_points_per_unit
    if off <= 0:
        return None
    points = -(-off * s.cash_points_per_unit // s.unit)  # the fewest points worth `off`
    return [Adjustment(NAME, "POINTS_AS_CASH", f"{points} points as cash ({money(off)})", -off,
                       uses=points)]


@hookimpl
def checkout_hold(ctx, checkout_id, cart):
    if not cart.member_id or cart.points_to_redeem <= 0:
        return None
    ledger.hold(ctx, cart.member_id, checkout_id, cart.points_to_redeem)
    return [Effect(NAME, "POINTS_HELD", f"{cart.points_to_redeem} points held", rule="points_as_cash")]


@hookimpl
def checkout_release(ctx, checkout_id, reason):
    ledger.release_hold(ctx, checkout_id)


@hookimpl
def order_refunded(ctx, refund):
    return ledger.reverse_for_refund(ctx, refund)


@hookimpl
def redemption(ctx, member_id, redemption):
    """Points spent for an order (what is missing becomes a CONFLICT), a reward or a paid tier upgrade."""
    if redemption.currency != "points":
        return None
    partial = redemption.reason == "order"  # a paid order is a fact: take what is there, report the rest
    spent = ledger.spend(ctx, member_id, redemption.amount, "SPEND", redemption.reason,
                         order_id=redemption.reference if partial else None, partial=partial,
                         note=None if partial else redemption.reference)
    effects = []
    if spent:
        effects.append(Effect(NAME, "POINTS_SPENT", f"points -{spent} ({redemption.reason})",
                              rule=redemption.reason))
    if spent < redemption.amount:
        effects.append(Effect(NAME, "CONFLICT", f"{redemption.amount - spent} of {redemption.amount} "
                              "points were no longer there", code="INSUFFICIENT_POINTS", rule=redemption.reason))
    return RedemptionResult(spent, tuple(effects))


@hookimpl
def points_to_earn(ctx, cart, total):
    tier = ctx.member_tier(cart.member_id) if cart.member_id else None
    return sum(g.points for g in ledger.purchase_grants(settings_of(ctx), total, cart.lines, ctx.now, tier))


@hookimpl
def member_data(ctx: Context, member_id: str) -> dict:
    """What the plugin holds about the member, table by table (memberDataExport)."""
    return export_tables(ctx, plugin.tables, member_id)
