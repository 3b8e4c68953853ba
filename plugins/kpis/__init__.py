"""kpis: the programme's figures (RULES.md 8), current and exact, for every shop.

Transactions count what they change with ``ctx.count`` (core: coupons; points: the liability; tiering: tier
levels and moves; this plugin: sign-ups, members' orders and sales, activity); at commit the figures come
here once (``figures_recorded``) and are appended in one INSERT, so an order adds one statement and no row
that every order updates. A job folds them every minute into per-hour sums and per-member, per-hour
activity marks; reads add folded and unfolded rows, so they are exact before the fold runs too.

Times: sign-ups count at joinedAt, orders at paidAt, refunds (members' sales less the refund) at
refundedAt, the refund being a fact of its own: a period already reported keeps its sales until a refund
within it. Liabilities and tier levels count when memberkit recorded the change, so a closed period never
changes.
"""

from __future__ import annotations

from datetime import timedelta

from memberkit.plugin import Job, Plugin, export_tables, hookimpl
from memberkit.plugins.kpis import figures as kpis
from memberkit.plugins.kpis import graphql, models

NAME = "kpis"

plugin = Plugin(NAME, tables=(models.KpisDelta, models.KpisHour, models.KpisRollup, models.KpisActive,
                             models.KpisStoreSales),
                graphql=graphql.contribute, jobs=(Job("fold", timedelta(minutes=1), kpis.fold),),
                figures=graphql.OWN_FIGURES)


@hookimpl
def figures_recorded(ctx, figures):
    kpis.record(ctx, figures)


@hookimpl
def member_signup(ctx, member, signup):
    ctx.count("newMembers", at=member.joined_at)


@hookimpl
def members_imported(ctx, members):
    for member in members:  # counted when they joined, as a sign-up is
        ctx.count("newMembers", at=member.joined_at)


@hookimpl
def order_paid(ctx, order):
    ctx.count("memberOrders", at=order.paid_at)
    ctx.count("memberSales", order.total, at=order.paid_at)
    ctx.count(kpis.ACTIVITY, at=order.paid_at, member_id=order.member_id)


@hookimpl
def order_refunded(ctx, refund):
    ctx.count("memberSales", -refund.amount, at=refund.refunded_at)


@hookimpl
def member_data(ctx, member_id):
    """The member's activity marks (when they ordered or checked in, by the hour): the figures hold no more."""
    return {**export_tables(ctx, (models.KpisActive,), member_id), "kpis_delta": kpis.unfolded_marks(ctx, member_id)}
