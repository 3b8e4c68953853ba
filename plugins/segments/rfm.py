"""RFM scores (RULES.md section 7): recency, frequency and monetary, each 1 to 5 by the shop's quintile
cut-offs over a window of paid orders (demo 365 days; orders refunded in full left out), and the first
named band of the settings that matches.

Computed by the ``segments.rfm`` job in SQL. A score is the quintile of the member's cumulative
distribution, ceil(5 × cume_dist), in integer arithmetic: ``count(*) over (order by value)`` counts the
members valued at most the member's value (peers included), so equal values always get equal scores and
both databases give the same answer (``ntile`` would split members who share a value). Recency counts in
the shop's calendar days. A member with no order in the window gets no score.

The counts go into a temporary table first, one row per member; the job then writes only what differs
from the last run (rows of members no longer scored deleted, changed rows updated, new ones inserted), so
a daily run rewrites the members whose orders or scores moved rather than every row, and the run's
cut-offs (each score's range of values) come from one grouping of that table.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    case,
    cast,
    delete,
    exists,
    extract,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    true,
    update,
)

from memberkit.plugin import Context, Int64, OrderRow, UTCDateTime, upsert
from memberkit.plugins.segments import rules
from memberkit.plugins.segments.models import SegmentsRfm, SegmentsRfmRun
from memberkit.plugins.segments.settings import settings_of

RFM, RUNS, ORDERS = SegmentsRfm.__table__, SegmentsRfmRun.__table__, OrderRow.__table__
MEMBERS = rules.MEMBERS
DIMENSIONS = ("recency", "frequency", "monetary")
VALUES = ("last_order_at", "orders", "spend")

# One run's members: their values, per dimension how many members are valued at most theirs, and whether
# they already have a row.
COUNTED = Table("segments_rfm_counted", MetaData(), Column("member_id", String(32), nullable=False),
                Column("has_row", Boolean, nullable=False),
                Column("last_order_at", UTCDateTime, nullable=False), Column("orders", Integer, nullable=False),
                Column("spend", Int64, nullable=False),
                *(Column(f"{name}_at_most", Integer, nullable=False) for name in DIMENSIONS),
                prefixes=["TEMPORARY"], postgresql_on_commit="DROP")


def _day(conn, column, offset_seconds: int):
    """The shop's calendar day of an instant, as a number (differs by database; only its order counts)."""
    if conn.dialect.name == "postgresql":
        return cast(func.floor((extract("epoch", column) + offset_seconds) / 86400), Integer)
    return cast(func.julianday(column) + 0.5 + offset_seconds / 86400.0, Integer)


def _quintile(at_most, members: int):
    """ceil(5 × cume_dist) in integers: the members valued at most the member's value, in fifths (1 to 5)."""
    n = literal(members, BigInteger)
    return (5 * at_most + n - 1) // n


def _band(settings, scores) -> Any:
    whens = []
    for band in settings.rfm_bands:
        tests = [scores[name].in_(allowed) for name in DIMENSIONS if (allowed := getattr(band, name))]
        whens.append((and_(*tests) if tests else true(), literal(band.code)))
    return case(*whens, else_=None) if whens else literal(None, RFM.c.band.type)


def compute(ctx: Context) -> str | None:
    """The job: every member with an order in the window scored again, the rest unscored."""
    settings, conn, slug = settings_of(ctx), ctx.conn, ctx.shop.slug
    offset = int(ctx.shop.local(ctx.now).utcoffset().total_seconds())
    base = (select(ORDERS.c.member_id, func.max(ORDERS.c.paid_at).label("last_order_at"),
                   func.count().label("orders"), func.sum(ORDERS.c.total - ORDERS.c.refunded).label("spend"))
            .where(ORDERS.c.shop == slug, ORDERS.c.paid_at > ctx.now - timedelta(days=settings.rfm_window_days),
                   ORDERS.c.paid_at <= ctx.now, ORDERS.c.refunded < ORDERS.c.total,
                   ORDERS.c.member_id.not_in(select(MEMBERS.c.id).where(  # erased members are scored no more
                       MEMBERS.c.shop == slug, MEMBERS.c.erased_at.is_not(None))))
            .group_by(ORDERS.c.member_id).subquery("rfm_base"))
    valued = {"recency": _day(conn, base.c.last_order_at, offset), "frequency": base.c.orders,
              "monetary": base.c.spend}
    COUNTED.drop(conn, checkfirst=True)
    COUNTED.create(conn)
    members = conn.execute(insert(COUNTED).from_select(
        ["member_id", "has_row", *VALUES, *(f"{name}_at_most" for name in DIMENSIONS)],
        select(base.c.member_id, RFM.c.member_id.is_not(None), *(base.c[value] for value in VALUES),
               *(func.count().over(order_by=valued[name]) for name in DIMENSIONS))
        .select_from(base.outerjoin(RFM, RFM.c.member_id == base.c.member_id)))
        .execution_options(preserve_rowcount=True)).rowcount
    if conn.dialect.name == "postgresql":  # without statistics it merge-joins by index, three times slower
        conn.execute(text(f"ANALYZE {COUNTED.name}"))
    scores = select(COUNTED.c.member_id, COUNTED.c.has_row, *(COUNTED.c[value] for value in VALUES),
                    *(_quintile(COUNTED.c[f"{name}_at_most"], max(members, 1)).label(name) for name in DIMENSIONS)
                    ).subquery("rfm_scores")
    scored = select(scores, _band(settings, {name: scores.c[name] for name in DIMENSIONS}).label("band")
                    ).subquery("rfm_scored")
    written = _write(ctx, scored)
    cutoffs = _cutoffs(ctx, scores)
    COUNTED.drop(conn)
    conn.execute(upsert(RUNS, update=lambda excluded: {
        "computed_at": excluded.computed_at, "window_days": excluded.window_days, "members": excluded.members,
        "cutoffs": excluded.cutoffs}).on(conn), {"shop": slug, "computed_at": ctx.now,
                                                  "window_days": settings.rfm_window_days, "members": members,
                                                  "cutoffs": cutoffs})
    if written:  # the segments on bands follow the new scores now, not at the next hourly refresh
        rules.refresh(ctx, [rule.code for rule in settings.segments if rule.uses("rfm_bands")])
    return f"{members} member(s) scored, {written} row(s) written" if members or written else None


def _write(ctx: Context, scored) -> int:
    """Only what differs from the last run: rows of members no longer scored go, changed rows are updated
    and new ones inserted. A row's computed_at is the run that last changed it. The INSERT does not read
    segments_rfm: an anti-join against the table it fills, planned as if the table were still empty, would
    scan every row inserted so far for each new one."""
    conn, slug, columns = ctx.conn, ctx.shop.slug, (*DIMENSIONS, "band", *VALUES)
    now = literal(ctx.now, RFM.c.computed_at.type)
    gone = conn.execute(delete(RFM).where(RFM.c.shop == slug, ~exists(select(1).where(
        COUNTED.c.member_id == RFM.c.member_id)))).rowcount
    changed = conn.execute(update(RFM).where(RFM.c.member_id == scored.c.member_id, scored.c.has_row, or_(
        *(RFM.c[name].is_distinct_from(scored.c[name]) for name in columns)))
        .values({**{name: scored.c[name] for name in columns}, "computed_at": now})).rowcount
    added = conn.execute(insert(RFM).from_select(
        ["member_id", "shop", *columns, "computed_at"],
        select(scored.c.member_id, literal(slug), *(scored.c[name] for name in columns), now)
        .where(scored.c.has_row.is_(False)))
        .execution_options(preserve_rowcount=True)).rowcount
    return gone + changed + added


def _cutoffs(ctx: Context, scores) -> dict[str, list[dict[str, int]]]:
    """Each score's lowest and highest value (recency in days since the last order), so a score explains:
    one grouping by the three scores (at most 125 groups), folded per dimension here."""
    conn, today = ctx.conn, ctx.shop.local(ctx.now).date()
    rows = conn.execute(select(*(scores.c[name] for name in DIMENSIONS), func.count(),
                               *(f(scores.c[value]) for value in VALUES for f in (func.min, func.max)))
                        .group_by(*(scores.c[name] for name in DIMENSIONS))).all()
    found: dict[str, list[dict[str, int]]] = {}
    for index, name in enumerate(DIMENSIONS):
        ranges: dict[int, list] = {}
        for row in rows:
            low, high = row[4 + 2 * index], row[5 + 2 * index]
            score = ranges.setdefault(row[index], [low, high, 0])
            score[0], score[1], score[2] = min(score[0], low), max(score[1], high), score[2] + row[3]
        if name == "recency":  # the latest order is the fewest days: max and min swap
            found[name] = [{"score": score, "min": (today - ctx.shop.local(latest).date()).days,
                            "max": (today - ctx.shop.local(earliest).date()).days, "members": count}
                           for score, (earliest, latest, count) in sorted(ranges.items())]
        else:
            found[name] = [{"score": score, "min": low, "max": high, "members": count}
                           for score, (low, high, count) in sorted(ranges.items())]
    return found


def score_of(ctx: Context, member_id: str) -> Any:
    """The member's scores as of the last run (its computed_at; a row keeps the run that last changed it)."""
    kept = [column for column in RFM.c if column.name != "computed_at"]
    return ctx.conn.execute(select(*kept, RUNS.c.computed_at).join_from(RFM, RUNS, RUNS.c.shop == RFM.c.shop)
                            .where(RFM.c.member_id == member_id, RFM.c.shop == ctx.shop.slug)).first()


def last_run(ctx: Context) -> Any:
    return ctx.conn.execute(select(RUNS).where(RUNS.c.shop == ctx.shop.slug)).first()
