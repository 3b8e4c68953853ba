"""segments: knowing members apart (RULES.md section 7): lifecycle stages, RFM scores, named segments and
the integrator's tags.

- lifecycle.py: NEW, ACTIVE, DORMANT and CHURNED by the shop's calendar days since the last paid order;
  orders and refunds move a member inside their own transaction, an hourly job moves members as time
  passes, and every change is history, the core ``lifecycle_changed`` hook (the perks plugin's win-back
  coupon) and an outbound ``lifecycle.changed`` event.
- rfm.py: recency, frequency and monetary scores by quintile cut-offs, and the shop's named bands, by a
  daily job in SQL.
- rules.py: segments as settings, rules over tier, tags, stage, RFM band, purchases of a category, join
  date and birthday month, kept up to date by the events that change those facts and an hourly job.
- tags.py: ``tagMembers``, the integrator's tags on many members at once.
- campaigns.py: ``issueCouponsToSegment``, a coupon for every member of a segment by a one-off job.
"""

from __future__ import annotations

from datetime import timedelta

from memberkit.plugin import (
    Context,
    Effect,
    ImportedMember,
    Job,
    MemberChanges,
    MemberInfo,
    PaidOrder,
    Plugin,
    Refund,
    SignUp,
    TierInfo,
    export_tables,
    hookimpl,
)
from memberkit.plugins.segments import campaigns, graphql, lifecycle, models, rfm, rules
from memberkit.plugins.segments.settings import NAME, SegmentsSettings, settings_of

plugin = Plugin(NAME, settings=SegmentsSettings, graphql=graphql.contribute, event_types=("lifecycle.changed",),
                tables=(models.SegmentsLifecycle, models.SegmentsLifecycleChange, models.SegmentsRfm,
                        models.SegmentsRfmRun, models.SegmentsPurchase, models.SegmentsMember),
                jobs=(Job("lifecycle", timedelta(hours=1), lifecycle.move_by_time),
                      Job("rfm", timedelta(hours=24), rfm.compute),
                      Job("refresh", timedelta(hours=1), rules.refresh_job),
                      Job("issue_coupons", None, campaigns.issue_batch)),
                defines={"RFM band": lambda settings: [band.code for band in settings.rfm_bands],
                         "segment": lambda settings: [segment.code for segment in settings.segments]})


@hookimpl
def member_signup(ctx: Context, member: MemberInfo, signup: SignUp) -> list[Effect]:
    lifecycle.joined(ctx, member.id)
    rules.joined(ctx, member.id)
    return []


@hookimpl(trylast=True)  # after the plugin that keeps tiers has stored the imported members' tiers
def members_imported(ctx: Context, members: list[ImportedMember]) -> None:
    lifecycle.imported(ctx, members)
    for member in members:
        rules.mark(ctx, member.id)


@hookimpl
def member_updated(ctx: Context, member: MemberInfo, changes: MemberChanges) -> None:
    """The change is written after this hook: the member is judged again just before commit."""
    if changes.tags is not None:
        rules.mark(ctx, member.id, "tags_all", "tags_any")
    if changes.birthday is not None:
        rules.mark(ctx, member.id, "birthday_months")


@hookimpl
def tier_changed(ctx: Context, member_id: str, before: TierInfo | None, after: TierInfo, reason: str) -> None:
    rules.tier_changed(ctx, member_id, after)


@hookimpl
def segment_codes(ctx: Context) -> list[str]:
    return [segment.code for segment in settings_of(ctx).segments]


@hookimpl
def member_segments(ctx: Context, member_id: str) -> list[str]:
    return rules.segments_of(ctx, member_id)


@hookimpl
def order_paid(ctx: Context, order: PaidOrder) -> list[Effect]:
    rules.order_paid(ctx, order)
    return lifecycle.order_paid(ctx, order)


@hookimpl
def order_refunded(ctx: Context, refund: Refund) -> list[Effect]:
    rules.order_refunded(ctx, refund)
    return lifecycle.order_refunded(ctx, refund)


@hookimpl
def member_erased(ctx: Context, member_id: str) -> None:
    """The member leaves every segment and loses their stage, its history, RFM scores and counted purchases;
    the segment rules and the member search pass erased members over from then on."""
    for model in reversed(plugin.tables):
        table = model.__table__
        if "member_id" in table.c:
            ctx.conn.execute(table.delete().where(table.c.member_id == member_id))


@hookimpl
def member_data(ctx: Context, member_id: str) -> dict:
    """Stage, its history, RFM scores, counted purchases and segments, table by table (memberDataExport)."""
    return export_tables(ctx, plugin.tables, member_id)
