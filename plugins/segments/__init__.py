"""segments: knowing members apart (RULES.md section 7). So far: lifecycle stages, RFM scores and tags.

- lifecycle.py: NEW, ACTIVE, DORMANT and CHURNED by the shop's calendar days since the last paid order;
  orders and refunds move a member inside their own transaction, an hourly job moves members as time
  passes, and every change is history, the core ``lifecycle_changed`` hook (the perks plugin's win-back
  coupon) and an outbound ``lifecycle.changed`` event.
- rfm.py: recency, frequency and monetary scores by quintile cut-offs, and the shop's named bands, by a
  daily job in SQL.
- tags.py: ``tagMembers``, the integrator's tags on many members at once.
"""

from __future__ import annotations

from datetime import timedelta

from memberkit.plugin import Context, Effect, Job, MemberInfo, PaidOrder, Plugin, Refund, SignUp, hookimpl
from memberkit.plugins.segments import graphql, lifecycle, models, rfm
from memberkit.plugins.segments.settings import NAME, SegmentsSettings

plugin = Plugin(NAME, settings=SegmentsSettings, graphql=graphql.contribute, event_types=("lifecycle.changed",),
                tables=(models.SegmentsLifecycle, models.SegmentsLifecycleChange, models.SegmentsRfm,
                        models.SegmentsRfmRun),
                jobs=(Job("lifecycle", timedelta(hours=1), lifecycle.move_by_time),
                      Job("rfm", timedelta(hours=24), rfm.compute)))


@hookimpl
def member_signup(ctx: Context, member: MemberInfo, signup: SignUp) -> list[Effect]:
    lifecycle.joined(ctx, member.id)
    return []


@hookimpl
def order_paid(ctx: Context, order: PaidOrder) -> list[Effect]:
    return lifecycle.order_paid(ctx, order)


@hookimpl
def order_refunded(ctx: Context, refund: Refund) -> list[Effect]:
    return lifecycle.order_refunded(ctx, refund)
