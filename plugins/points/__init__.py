"""Points: a lot-based ledger that earns on purchases and actions, expires, refunds and redeems exactly."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from core import hookimpl
from core.types import Effect, Job, RedemptionResult
from plugins.points import ledger
from plugins.points.settings import PointsSettings


@hookimpl
def settings_model():
    return PointsSettings


@hookimpl
def migrations_location():
    return str(Path(__file__).parent / "migrations")


@hookimpl
def graphql_schema(builder):
    from plugins.points import graphql

    graphql.contribute(builder)


@hookimpl
def jobs():
    return [Job("settle_lots", timedelta(hours=1), lambda ctx: f"{ledger.settle_due(ctx)} member(s) settled")]


@hookimpl
def order_paid(ctx, order):
    return ledger.earn_for_order(ctx, order)


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
        effects.append(Effect(ledger.PLUGIN, "POINTS_SPENT", f"points -{spent} ({redemption.reason})",
                              rule=redemption.reason))
    if spent < redemption.amount:
        effects.append(Effect(ledger.PLUGIN, "CONFLICT", f"{redemption.amount - spent} of {redemption.amount} "
                              "points were no longer there", code="INSUFFICIENT_POINTS", rule=redemption.reason))
    return RedemptionResult(spent, tuple(effects))


@hookimpl
def points_to_earn(ctx, cart, total):
    tier = ctx.member_tier(cart.member_id) if cart.member_id else None
    return sum(g.points for g in ledger.purchase_grants(ledger.settings_of(ctx), total, cart.lines, ctx.now, tier))
