"""``issueCouponsToSegment``: a coupon of a template for every member of a segment, by a one-off job.

The call queues the job in its own event (a retry with the same idempotencyKey returns the same job); the
job goes through the segment's members in id order, a batch per transaction that also moves the job's
cursor on, so a crash resumes after the last committed batch and two processes never issue a batch twice:
each member gets at most one coupon per key. Members who join the segment while it runs get one if the
cursor has not passed them yet.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from memberkit.plugin import Context, EventResult, Refused, queue_job, require_segment
from memberkit.plugins.segments.models import SegmentsMember
from memberkit.plugins.segments.settings import NAME

IN_SEGMENT = SegmentsMember.__table__
KIND = f"{NAME}.issue_coupons"
BATCH = 500


def queue(ctx: Context, segment: str, template: str, key: str) -> EventResult:
    """The mutation's handler: checks the segment and the template, then queues the job."""
    require_segment(ctx, segment)
    if template not in ctx.shop.coupons:
        raise Refused("UNKNOWN_TEMPLATE", f"template {template!r} is not one of this shop's [coupons]: expected "
                      f"one of {', '.join(sorted(ctx.shop.coupons)) or 'none defined'}", "template")
    members = ctx.conn.execute(select(func.count()).where(IN_SEGMENT.c.shop == ctx.shop.slug,
                                                          IN_SEGMENT.c.segment == segment)).scalar_one()
    job_id, _ = queue_job(ctx, KIND, f"{KIND}:{key}", {"segment": segment, "template": template}, members)
    return EventResult(None, data={"job_id": job_id})


def issue_batch(ctx: Context, params: dict[str, Any], cursor: str | None) -> tuple[int, str | None]:
    """The job's batch: the next members of the segment after `cursor`, a coupon each."""
    query = (select(IN_SEGMENT.c.member_id).where(IN_SEGMENT.c.shop == ctx.shop.slug,
                                                  IN_SEGMENT.c.segment == params["segment"])
             .order_by(IN_SEGMENT.c.member_id).limit(BATCH))
    if cursor is not None:
        query = query.where(IN_SEGMENT.c.member_id > cursor)
    members = ctx.conn.execute(query).scalars().all()
    for member_id in members:
        ctx.wallet.issue(member_id, params["template"], source=f"{NAME}:{params['segment']}"[:120])
    return len(members), (members[-1] if len(members) == BATCH else None)
