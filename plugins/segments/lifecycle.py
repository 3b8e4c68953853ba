"""Lifecycle stages (RULES.md section 7): NEW until a first paid order, then ACTIVE, DORMANT and CHURNED by
the shop's calendar days since the last paid order (net of orders refunded in full).

An order or a refund moves a member inside that event's transaction (an order by a member who stays
ACTIVE costs one UPDATE); time moves them by the ``segments.lifecycle`` job, in SQL batches. Every change
is kept as history, told to other plugins through the core ``lifecycle_changed`` hook and emitted as
``lifecycle.changed``. Only time starts a dormant spell (reason TIME): a refund that moves a member back
is no new spell, so a win-back gift keyed on it is given once per spell.
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, case, func, insert, or_, select, update

from memberkit.plugin import (
    Context,
    Effect,
    ImportedMember,
    OrderRow,
    PaidOrder,
    Prepared,
    Refund,
    UTCDateTime,
    insert_rows,
    upsert,
)
from memberkit.plugins.segments import rules
from memberkit.plugins.segments.models import SegmentsLifecycle, SegmentsLifecycleChange
from memberkit.plugins.segments.settings import NAME, SegmentsSettings, settings_of

LIFECYCLE, HISTORY = SegmentsLifecycle.__table__, SegmentsLifecycleChange.__table__
ORDERS = OrderRow.__table__
JOB_BATCH = 1000


class Stage(enum.StrEnum):
    NEW = "NEW"
    ACTIVE = "ACTIVE"
    DORMANT = "DORMANT"
    CHURNED = "CHURNED"


class Reason(enum.StrEnum):
    ORDER = "ORDER"
    REFUND = "REFUND"
    TIME = "TIME"


def stage_of(ctx: Context, settings: SegmentsSettings, last_order_at: datetime | None,
             today: date | None = None) -> Stage:
    if last_order_at is None:
        return Stage.NEW
    days = ((today or ctx.shop.local(ctx.now).date()) - ctx.shop.local(last_order_at).date()).days
    if days <= settings.active_days:
        return Stage.ACTIVE
    return Stage.DORMANT if days <= settings.churned_after_days else Stage.CHURNED


# The one statement an order adds: the member's last order moves on (never back: a late-reported order
# paid earlier changes nothing); the row as it now stands is returned.
_TOUCH = Prepared(
    update(LIFECYCLE).where(LIFECYCLE.c.member_id == bindparam("p_member"))
    .values(last_order_at=case((or_(LIFECYCLE.c.last_order_at.is_(None),
                                    LIFECYCLE.c.last_order_at < bindparam("p_paid", type_=UTCDateTime)),
                                bindparam("p_paid", type_=UTCDateTime)), else_=LIFECYCLE.c.last_order_at))
    .returning(LIFECYCLE.c.stage, LIFECYCLE.c.last_order_at))


def joined(ctx: Context, member_id: str) -> None:
    ctx.conn.execute(upsert(LIFECYCLE).on(ctx.conn), {"member_id": member_id, "shop": ctx.shop.slug,
                                                      "stage": Stage.NEW, "since": ctx.now, "last_order_at": None})


def imported(ctx: Context, members: list[ImportedMember]) -> None:
    """Imported members' stages from the last order the CRM knew of (NEW only without orders), and their
    tiers as the tier plugin now tells them, in one INSERT a batch; no history, hook or event, as for a
    sign-up, so no win-back gift for a member imported as DORMANT (the job moves them on from here)."""
    settings, today = settings_of(ctx), ctx.shop.local(ctx.now).date()
    tiers = ctx.member_tiers([m.id for m in members]) or {}
    insert_rows(ctx.conn, LIFECYCLE, [
        {"member_id": m.id, "shop": ctx.shop.slug, "stage": stage_of(ctx, settings, m.last_order_at, today),
         "since": ctx.now, "last_order_at": m.last_order_at, "tier_code": tiers[m.id].code if tiers.get(m.id) else None,
         "tier_rank": tiers[m.id].rank if tiers.get(m.id) else None} for m in members])


def order_paid(ctx: Context, order: PaidOrder) -> list[Effect]:
    row = _TOUCH.first(ctx.conn, {"p_member": order.member_id, "p_paid": order.paid_at})
    if row is None:  # a member who joined before the shop enabled segments
        joined(ctx, order.member_id)
        row = _TOUCH.first(ctx.conn, {"p_member": order.member_id, "p_paid": order.paid_at})
    after = stage_of(ctx, settings_of(ctx), row.last_order_at)
    if after == row.stage:
        return []
    return [change(ctx, order.member_id, Stage(row.stage), after, Reason.ORDER, order.order_id, row.last_order_at)]


def order_refunded(ctx: Context, refund: Refund) -> list[Effect]:
    """A refund in full may take away the member's last order: the one before it counts instead."""
    if not refund.is_full:
        return []
    member_id = refund.order.member_id
    row = ctx.conn.execute(select(LIFECYCLE.c.stage, LIFECYCLE.c.last_order_at)
                           .where(LIFECYCLE.c.member_id == member_id)).first()
    if row is None:
        return []
    last = ctx.conn.execute(select(func.max(ORDERS.c.paid_at)).where(
        ORDERS.c.shop == ctx.shop.slug, ORDERS.c.member_id == member_id, ORDERS.c.refunded < ORDERS.c.total)).scalar()
    if last == row.last_order_at:
        return []
    ctx.conn.execute(update(LIFECYCLE).where(LIFECYCLE.c.member_id == member_id).values(last_order_at=last))
    after = stage_of(ctx, settings_of(ctx), last)
    if after == row.stage:
        return []
    return [change(ctx, member_id, Stage(row.stage), after, Reason.REFUND, refund.refund_id, last)]


def change(ctx: Context, member_id: str, before: Stage | None, after: Stage, reason: Reason,
           reference: str | None, last_order_at: datetime | None) -> Effect:
    """Move one member to `after`: the row, its history, the hook and the outbound event."""
    ctx.conn.execute(update(LIFECYCLE).where(LIFECYCLE.c.member_id == member_id).values(stage=after, since=ctx.now))
    _told(ctx, [(member_id, before, last_order_at)], after, reason, reference)
    rules.mark(ctx, member_id, "lifecycle")
    return Effect(NAME, "LIFECYCLE_CHANGED", f"lifecycle {before or 'none'} → {after}",
                  rule=f"lifecycle.{after.lower()}")


def _told(ctx: Context, moved: list[tuple[str, Stage | None, datetime | None]], after: Stage, reason: Reason,
          reference: str | None) -> None:
    """History rows (one statement), the core hook and the outbound event for members moved to `after`."""
    ctx.conn.execute(insert(HISTORY), [
        {"shop": ctx.shop.slug, "member_id": member_id, "from_stage": before, "to_stage": after,
         "reason": reason, "reference": reference, "created_at": ctx.now} for member_id, before, _ in moved])
    for member_id, before, last_order_at in moved:
        ctx.hook.lifecycle_changed(ctx=ctx, member_id=member_id, before=before and str(before), after=str(after),
                                   reason=str(reason), since=ctx.now)
        ctx.emit("lifecycle.changed", member_id, **{"from": before and str(before), "to": str(after),
                                                    "reason": str(reason), "reference": reference,
                                                    "since": ctx.now, "lastOrderAt": last_order_at,
                                                    "rule": f"lifecycle.{after.lower()}"})


def move_by_time(ctx: Context) -> str | None:
    """The job: members whose last order is now too long ago move on (ACTIVE → DORMANT or CHURNED, DORMANT
    → CHURNED), a batch at a time. Idempotent: a member already moved matches no more."""
    settings = settings_of(ctx)
    # DORMANT from day active_days + 1: the last order's local date is before today - active_days
    dormant_before = rules.local_midnight(ctx, settings.active_days)
    churned_before = rules.local_midnight(ctx, settings.churned_after_days)
    moved = {Stage.DORMANT: 0, Stage.CHURNED: 0}
    for after, stages, before_cut, not_before in (
            (Stage.CHURNED, (Stage.ACTIVE, Stage.DORMANT), churned_before, None),
            (Stage.DORMANT, (Stage.ACTIVE,), dormant_before, churned_before)):
        last = ""  # walking on by id: the batches already moved are not read again
        while True:
            query = (select(LIFECYCLE.c.member_id, LIFECYCLE.c.stage, LIFECYCLE.c.last_order_at)
                     .where(LIFECYCLE.c.shop == ctx.shop.slug, LIFECYCLE.c.stage.in_([str(s) for s in stages]),
                            LIFECYCLE.c.last_order_at < before_cut, LIFECYCLE.c.member_id > last)
                     .order_by(LIFECYCLE.c.member_id).limit(JOB_BATCH))
            if not_before is not None:
                query = query.where(LIFECYCLE.c.last_order_at >= not_before)
            rows = ctx.conn.execute(query).all()
            if not rows:
                break
            last = rows[-1].member_id
            ctx.conn.execute(update(LIFECYCLE).where(LIFECYCLE.c.member_id.in_([r.member_id for r in rows]))
                             .values(stage=after, since=ctx.now))
            _told(ctx, [(r.member_id, Stage(r.stage), r.last_order_at) for r in rows], after, Reason.TIME, None)
            ctx.flush_outbound()  # each batch's events written now: memory stays flat however many move
            moved[after] += len(rows)
    if any(moved.values()):  # the segments on stages follow set-wise, not member by member
        rules.refresh(ctx, [rule.code for rule in settings.segments if rule.uses("lifecycle")])
    done = [f"{count} member(s) {stage.lower()}" for stage, count in moved.items() if count]
    return ", ".join(done) or None


def lifecycle_of(ctx: Context, member_id: str) -> Any:
    return ctx.conn.execute(select(LIFECYCLE).where(LIFECYCLE.c.member_id == member_id,
                                                    LIFECYCLE.c.shop == ctx.shop.slug)).first()


def history_of(ctx: Context, member_id: str, count: int) -> list[Any]:
    return ctx.conn.execute(select(HISTORY).where(HISTORY.c.shop == ctx.shop.slug, HISTORY.c.member_id == member_id)
                            .order_by(HISTORY.c.id.desc()).limit(count)).all()


