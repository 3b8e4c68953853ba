"""RFM scores (RULES.md section 7): recency, frequency and monetary, each 1 to 5 by the shop's quintile
cut-offs over a window of paid orders (demo 365 days; orders refunded in full left out), and the first
named band of the settings that matches.

Computed by the ``segments.rfm`` job in SQL, in one INSERT … SELECT: a score is the quintile of the
member's cumulative distribution, ceil(5 × cume_dist), from ``count(*) over ()`` and ``rank()`` in integer
arithmetic, so equal values always get equal scores and both databases give the same answer (``ntile``
would split members who share a value). Recency counts in the shop's calendar days. A member with no
order in the window gets no score. The run's cut-offs (each score's range of values) are kept.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Integer, and_, case, cast, delete, extract, func, insert, literal, select, true

from memberkit.plugin import Context, OrderRow, upsert
from memberkit.plugins.segments.models import SegmentsRfm, SegmentsRfmRun
from memberkit.plugins.segments.settings import settings_of

RFM, RUNS, ORDERS = SegmentsRfm.__table__, SegmentsRfmRun.__table__, OrderRow.__table__
DIMENSIONS = ("recency", "frequency", "monetary")


def _day(conn, column, offset_seconds: int):
    """The shop's calendar day of an instant, as a number (differs by database; only its order counts)."""
    if conn.dialect.name == "postgresql":
        return cast(func.floor((extract("epoch", column) + offset_seconds) / 86400), Integer)
    return cast(func.julianday(column) + 0.5 + offset_seconds / 86400.0, Integer)


def _quintile(value):
    """ceil(5 × cume_dist) in integers: the members valued at most `value`, in fifths of all (1 to 5)."""
    n = func.count().over()
    at_most = n - func.rank().over(order_by=value.desc()) + 1
    return (5 * at_most + n - 1) // n


def _band(settings, scores) -> Any:
    whens = []
    for band in settings.rfm_bands:
        tests = [scores[name].in_(allowed) for name in DIMENSIONS if (allowed := getattr(band, name))]
        whens.append((and_(*tests) if tests else true(), literal(band.code)))
    return case(*whens, else_=None) if whens else literal(None)


def compute(ctx: Context) -> str | None:
    """The job: every member with an order in the window scored again, the rest unscored."""
    settings, conn, slug = settings_of(ctx), ctx.conn, ctx.shop.slug
    offset = int(ctx.shop.local(ctx.now).utcoffset().total_seconds())
    base = (select(ORDERS.c.member_id, func.max(ORDERS.c.paid_at).label("last_order_at"),
                   func.count().label("orders"), func.sum(ORDERS.c.total - ORDERS.c.refunded).label("spend"))
            .where(ORDERS.c.shop == slug, ORDERS.c.paid_at > ctx.now - timedelta(days=settings.rfm_window_days),
                   ORDERS.c.paid_at <= ctx.now, ORDERS.c.refunded < ORDERS.c.total)
            .group_by(ORDERS.c.member_id).cte("rfm_base"))
    scored = select(base.c.member_id, _quintile(_day(conn, base.c.last_order_at, offset)).label("recency"),
                    _quintile(base.c.orders).label("frequency"), _quintile(base.c.spend).label("monetary"),
                    base.c.last_order_at, base.c.orders, base.c.spend).cte("rfm_scored")
    conn.execute(delete(RFM).where(RFM.c.shop == slug))
    conn.execute(insert(RFM).from_select(
        ["member_id", "shop", "recency", "frequency", "monetary", "band", "last_order_at", "orders", "spend",
         "computed_at"],
        select(scored.c.member_id, literal(slug), scored.c.recency, scored.c.frequency, scored.c.monetary,
               _band(settings, {name: scored.c[name] for name in DIMENSIONS}), scored.c.last_order_at,
               scored.c.orders, scored.c.spend, literal(ctx.now, RFM.c.computed_at.type))))
    cutoffs, members = _cutoffs(ctx, offset)
    conn.execute(upsert(RUNS, update=lambda excluded: {
        "computed_at": excluded.computed_at, "window_days": excluded.window_days, "members": excluded.members,
        "cutoffs": excluded.cutoffs}).on(conn), {"shop": slug, "computed_at": ctx.now,
                                                  "window_days": settings.rfm_window_days, "members": members,
                                                  "cutoffs": cutoffs})
    return f"{members} member(s) scored" if members else None


def _cutoffs(ctx: Context, offset: int) -> tuple[dict[str, list[dict[str, int]]], int]:
    """Each score's lowest and highest value (recency in days since the last order), so a score explains."""
    conn, today = ctx.conn, ctx.shop.local(ctx.now).date()
    found: dict[str, list[dict[str, int]]] = {}
    members = 0
    for name, value in (("recency", RFM.c.last_order_at), ("frequency", RFM.c.orders), ("monetary", RFM.c.spend)):
        rows = conn.execute(select(RFM.c[name], func.min(value), func.max(value), func.count())
                            .where(RFM.c.shop == ctx.shop.slug).group_by(RFM.c[name]).order_by(RFM.c[name])).all()
        if name == "recency":  # the latest order is the fewest days: max and min swap
            found[name] = [{"score": score, "min": (today - ctx.shop.local(latest).date()).days,
                            "max": (today - ctx.shop.local(earliest).date()).days, "members": count}
                           for score, earliest, latest, count in rows]
        else:
            found[name] = [{"score": score, "min": low, "max": high, "members": count}
                           for score, low, high, count in rows]
        members = sum(row[3] for row in rows)
    return found, members


def score_of(ctx: Context, member_id: str) -> Any:
    return ctx.conn.execute(select(RFM).where(RFM.c.member_id == member_id, RFM.c.shop == ctx.shop.slug)).first()


def last_run(ctx: Context) -> Any:
    return ctx.conn.execute(select(RUNS).where(RUNS.c.shop == ctx.shop.slug)).first()
