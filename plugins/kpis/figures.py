"""Figures in, figures out. Each transaction appends what it counted (``figures_recorded``) as rows of
kpis_delta in one INSERT; the fold job moves them into kpis_hour (sums per shop-local hour) and kpis_active
(a member active within an hour); reads add the folded and the not yet folded rows in one statement, so a
figure is exact and current the moment its transaction commits, and no read scans members or orders."""

from __future__ import annotations

import enum
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, bindparam, case, func, literal_column, or_, select, union_all

from memberkit.plugin import Context, Prepared, insert_rows, upsert
from memberkit.plugins.kpis.models import KpisActive, KpisDelta, KpisHour, KpisRollup, KpisStoreSales

DELTA, HOUR, ROLLUP, ACTIVE, STORE_SALES = (KpisDelta.__table__, KpisHour.__table__, KpisRollup.__table__,
                                            KpisActive.__table__, KpisStoreSales.__table__)
ACTIVITY = "active"  # the metric of an activity mark: ctx.count("active", at=..., member_id=...)
FOLD_BATCH = 5000
# The parts of a ledger's liability (RULES.md 8): `{ledger}{part}`, each counted by its sign below.
LEDGER_PARTS = {"Issued": 1, "Returned": 1, "Adjusted": 1, "Spent": -1, "Expired": -1, "Reversed": -1}
PENDING = "Pending"


class Granularity(enum.Enum):
    HOUR = "HOUR"
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"


# ---------------------------------------------------------------- shop-local time


def hour_start(moment: datetime, tz: ZoneInfo) -> datetime:
    """The UTC instant at which the shop-local hour holding `moment` starts (exact for half-hour offsets
    and in the repeated hour at the end of summer time)."""
    return moment.astimezone(tz).replace(minute=0, second=0, microsecond=0).astimezone(UTC)


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def period_start(moment: datetime, tz: ZoneInfo, granularity: Granularity) -> datetime:
    """The UTC start of the shop-local hour, day, Monday-week or month holding `moment`."""
    if granularity is Granularity.HOUR:
        return hour_start(moment, tz)
    day = moment.astimezone(tz).date()
    if granularity is Granularity.WEEK:
        day -= timedelta(days=day.weekday())
    elif granularity is Granularity.MONTH:
        day = day.replace(day=1)
    return _midnight(day, tz)


def next_period(start: datetime, tz: ZoneInfo, granularity: Granularity) -> datetime:
    if granularity is Granularity.HOUR:
        return start + timedelta(hours=1)  # a local hour is an hour long, across DST changes too
    day = start.astimezone(tz).date()
    if granularity is Granularity.DAY:
        return _midnight(day + timedelta(days=1), tz)
    if granularity is Granularity.WEEK:
        return _midnight(day + timedelta(days=7), tz)
    return _midnight(date(day.year + day.month // 12, day.month % 12 + 1, 1), tz)


def periods(start: datetime, end: datetime, tz: ZoneInfo, granularity: Granularity, limit: int) -> list[datetime]:
    """The starts of the periods that overlap [start, end), at most `limit` + 1 of them (the caller refuses
    more than `limit`)."""
    found, moment = [], period_start(start, tz, granularity)
    while moment < end and len(found) <= limit:
        found.append(moment)
        moment = next_period(moment, tz, granularity)
    return found


# ---------------------------------------------------------------- rollups: UTC days and months of hour sums


DAY, MONTH = "D", "M"
NEVER = datetime(1970, 1, 1, tzinfo=UTC)  # an empty interval's bounds: no figure is that old


def rollup_start(bucket: datetime, span: str) -> datetime:
    """The UTC day or month holding an hour bucket."""
    day = bucket.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day.replace(day=1) if span == MONTH else day


def rollup_end(start: datetime, span: str) -> datetime:
    if span == DAY:
        return start + timedelta(days=1)
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


def split_by(span: str, moment: datetime) -> tuple[datetime, datetime]:
    """The day or month `moment` falls strictly inside, as (start, end); (NEVER, NEVER) when it is a start."""
    start = rollup_start(moment, span)
    return (NEVER, NEVER) if start == moment else (start, rollup_end(start, span))




_INSERTS: dict[int, Prepared] = {}
_COLUMNS = ("shop", "metric", "bucket", "value", "member_id")
COMPILED_ROWS = 16  # up to this many rows (an order's, a sign-up's) one compiled INSERT; more (jobs, imports) in bulk


def _insert(rows: int) -> Prepared:
    """One INSERT of `rows` rows, compiled once per row count and dialect (an order counts a handful). Each
    bind is typed: SQLAlchemy types only the first row's by the column (UTC datetimes on SQLite)."""
    if rows not in _INSERTS:
        _INSERTS[rows] = Prepared(DELTA.insert().values(
            [{c: bindparam(f"{c}_{i}", type_=DELTA.c[c].type) for c in _COLUMNS} for i in range(rows)]))
    return _INSERTS[rows]


def record(ctx: Context, figures) -> None:
    """Append a transaction's figures: equal (metric, hour) summed, activity marks once per member and hour."""
    tz = ctx.shop.timezone
    sums: dict[tuple[str, datetime], int] = defaultdict(int)
    marks: set[tuple[datetime, str]] = set()
    for figure in figures:
        bucket = hour_start(figure.at, tz)
        if figure.metric == ACTIVITY:
            if figure.member_id is not None:
                marks.add((bucket, figure.member_id))
        elif figure.value:
            sums[figure.metric, bucket] += figure.value
    rows = [(metric, bucket, value, None) for (metric, bucket), value in sums.items() if value]
    rows += [(ACTIVITY, bucket, 1, member_id) for bucket, member_id in marks]
    if not rows:
        return
    if len(rows) > COMPILED_ROWS:  # bounded statements and cache: COPY or one executemany, in one statement
        insert_rows(ctx.conn, DELTA, [dict(zip(_COLUMNS, (ctx.shop.slug, *row), strict=True)) for row in rows])
        return
    params = {}
    for i, (metric, bucket, value, member_id) in enumerate(rows):
        params.update({f"shop_{i}": ctx.shop.slug, f"metric_{i}": metric, f"bucket_{i}": bucket,
                       f"value_{i}": value, f"member_id_{i}": member_id})
    _insert(len(rows)).cursor(ctx.conn, params)


def fold(ctx: Context, batches: int = 20) -> str | None:
    """The job: move appended figures into the hour sums and activity marks, a batch per step.

    Rows are picked by id (locked, skipping rows another fold holds) and exactly those ids are deleted in
    the same transaction: a row that a slow transaction commits later, with a smaller id, is folded by a
    later run, never deleted unfolded."""
    moved = 0
    for _ in range(batches):
        rows = ctx.conn.execute(
            select(DELTA.c.id, DELTA.c.metric, DELTA.c.bucket, DELTA.c.value, DELTA.c.member_id)
            .where(DELTA.c.shop == ctx.shop.slug).order_by(DELTA.c.id).limit(FOLD_BATCH)
            .with_for_update(skip_locked=True)).all()
        if not rows:
            break
        sums: dict[tuple[str, datetime], int] = defaultdict(int)
        marks: set[tuple[datetime, str]] = set()
        for row in rows:
            if row.metric == ACTIVITY:
                marks.add((row.bucket, row.member_id))
            else:
                sums[row.metric, row.bucket] += row.value
        if sums:  # sorted: two writers always lock hour rows in the same order
            ctx.conn.execute(upsert(HOUR, update=lambda new: {"value": HOUR.c.value + new.value}).on(ctx.conn),
                             [{"shop": ctx.shop.slug, "metric": m, "bucket": b, "value": v}
                              for (m, b), v in sorted(sums.items())])
            rollups: dict[tuple[str, datetime, str], int] = defaultdict(int)
            for (metric, bucket), value in sums.items():
                for span in (DAY, MONTH):
                    rollups[span, rollup_start(bucket, span), metric] += value
            ctx.conn.execute(upsert(ROLLUP, update=lambda new: {"value": ROLLUP.c.value + new.value}).on(ctx.conn),
                             [{"shop": ctx.shop.slug, "span": span, "start": start, "metric": metric, "value": v}
                              for (span, start, metric), v in sorted(rollups.items())])
        if marks:
            ctx.conn.execute(upsert(ACTIVE).on(ctx.conn), [{"shop": ctx.shop.slug, "bucket": b, "member_id": m}
                                                            for b, m in sorted(marks)])
        ids = [row.id for row in rows]
        for start in range(0, len(ids), 1000):
            ctx.conn.execute(DELTA.delete().where(DELTA.c.id.in_(ids[start:start + 1000])))
        moved += len(rows)
        if len(rows) < FOLD_BATCH:
            break
    return f"{moved} figure(s) folded" if moved else None


# ---------------------------------------------------------------- reading


def _sums_source(shop_param: str = "shop"):
    """Every figure but activity marks, folded or not: (metric, bucket, value)."""
    shop = bindparam(shop_param)
    return union_all(
        select(HOUR.c.metric, HOUR.c.bucket, HOUR.c.value).where(HOUR.c.shop == shop),
        select(DELTA.c.metric, DELTA.c.bucket, DELTA.c.value).where(DELTA.c.shop == shop, DELTA.c.metric != ACTIVITY),
    ).subquery("figures")


def _marks_source(start, end):
    """Activity marks in [start, end), folded or not: (bucket, member_id)."""
    shop = bindparam("shop")
    return union_all(
        select(ACTIVE.c.bucket, ACTIVE.c.member_id).where(ACTIVE.c.shop == shop, ACTIVE.c.bucket >= start,
                                                          ACTIVE.c.bucket < end),
        select(DELTA.c.bucket, DELTA.c.member_id).where(DELTA.c.shop == shop, DELTA.c.metric == ACTIVITY,
                                                        DELTA.c.bucket >= start, DELTA.c.bucket < end),
    ).subquery("marks")


BOUNDS = ("previous", "start", "end")


def _levels_source():
    """Every figure but activity marks before `end`, each hour counted once, from the coarsest rows that do
    not straddle a boundary (previous, start, end): UTC months, then the days of the months a boundary splits,
    then the hours of the days it splits, and the unfolded rows. At most three months and three days are
    split, so a level costs the shop's months plus a few hundred rows, not every hour since it began."""
    shop, end = bindparam("shop"), bindparam("end")
    months = [bindparam(f"month_{b}") for b in BOUNDS]
    days = [bindparam(f"day_{b}") for b in BOUNDS]

    def within(column, kind):
        return or_(*[and_(column >= bindparam(f"{kind}_{b}"), column < bindparam(f"{kind}_{b}_end")) for b in BOUNDS])
    return union_all(
        select(ROLLUP.c.metric, ROLLUP.c.start.label("bucket"), ROLLUP.c.value).where(
            ROLLUP.c.shop == shop, ROLLUP.c.span == MONTH, ROLLUP.c.start < end, ROLLUP.c.start.not_in(months)),
        select(ROLLUP.c.metric, ROLLUP.c.start, ROLLUP.c.value).where(
            ROLLUP.c.shop == shop, ROLLUP.c.span == DAY, ROLLUP.c.start < end, within(ROLLUP.c.start, "month"),
            ROLLUP.c.start.not_in(days)),
        select(HOUR.c.metric, HOUR.c.bucket, HOUR.c.value).where(HOUR.c.shop == shop, HOUR.c.bucket < end,
                                                                 within(HOUR.c.bucket, "day")),
        select(DELTA.c.metric, DELTA.c.bucket, DELTA.c.value).where(DELTA.c.shop == shop, DELTA.c.metric != ACTIVITY,
                                                                    DELTA.c.bucket < end),
    ).subquery("figures")


_FIGURES = _levels_source()
_IN_PERIOD = _FIGURES.c.bucket >= bindparam("start")
_SUMS = Prepared(
    select(_FIGURES.c.metric,
           func.sum(case((_IN_PERIOD, _FIGURES.c.value), else_=0)).label("period"),
           func.sum(case((_FIGURES.c.bucket >= bindparam("previous"), case((_IN_PERIOD, 0), else_=_FIGURES.c.value)),
                         else_=0)).label("previous"),
           func.sum(_FIGURES.c.value).label("total"))
    .group_by(_FIGURES.c.metric))
_MARKS = _marks_source(bindparam("start"), bindparam("end"))
_ACTIVE_MEMBERS = Prepared(select(func.count(func.distinct(_MARKS.c.member_id))))
_STORE_SALES = Prepared(select(func.sum(STORE_SALES.c.amount), func.count()).where(
    STORE_SALES.c.shop == bindparam("shop"), STORE_SALES.c.day >= bindparam("first"),
    STORE_SALES.c.day <= bindparam("last")))


class Sums(dict):
    """A metric's sums: (in the period, in the period of the same length before it, everything before its end)."""

    def period(self, metric: str) -> int:
        return self.get(metric, (0, 0, 0))[0]

    def previous(self, metric: str) -> int:
        return self.get(metric, (0, 0, 0))[1]

    def total(self, metric: str) -> int:
        return self.get(metric, (0, 0, 0))[2]


def sums(ctx: Context, start: datetime, end: datetime) -> Sums:
    params = {"shop": ctx.shop.slug, "start": start, "previous": start - (end - start), "end": end}
    for bound in BOUNDS:
        for kind, span in (("month", MONTH), ("day", DAY)):
            params[f"{kind}_{bound}"], params[f"{kind}_{bound}_end"] = split_by(span, params[bound])
    rows = _SUMS.all(ctx.conn, params)
    return Sums({row.metric: (int(row.period or 0), int(row.previous or 0), int(row.total or 0)) for row in rows})


def active_members(ctx: Context, start: datetime, end: datetime) -> int:
    """Members who ordered or checked in within [start, end): distinct over the hours' marks."""
    return int(_ACTIVE_MEMBERS.scalar(ctx.conn, {"shop": ctx.shop.slug, "start": start, "end": end}) or 0)


def whole_days(start: datetime, end: datetime, tz: ZoneInfo) -> tuple[date, date] | None:
    """The first and last shop-local day lying wholly within [start, end), or None."""
    first = start.astimezone(tz).date()
    if _midnight(first, tz) < start:
        first += timedelta(days=1)
    last = end.astimezone(tz).date() - timedelta(days=1)
    return (first, last) if first <= last else None


def store_sales(ctx: Context, start: datetime, end: datetime) -> int | None:
    """The reported sales of the local days lying wholly within [start, end); None where none was reported."""
    days = whole_days(start, end, ctx.shop.timezone)
    if days is None:
        return None
    amount, reported = _STORE_SALES.first(ctx.conn, {"shop": ctx.shop.slug, "first": days[0], "last": days[1]})
    return int(amount) if reported else None


def series(ctx: Context, metric: str, starts: list[datetime], start: datetime, end: datetime) -> list[int]:
    """A value per period (`starts`, the last ending at the next period's start or `end`): the metric's sum,
    or for activeMembers the distinct members active in it. One statement either way."""
    ends = [*starts[1:], end]
    params = {"shop": ctx.shop.slug, "start": start, "end": end, "metric": metric}
    params.update({f"end_{i}": moment for i, moment in enumerate(ends)})
    if metric == "activeMembers":
        source = _marks_source(bindparam("start"), bindparam("end"))
        value = func.count(func.distinct(source.c.member_id))
        where = []
    else:
        source = _sums_source()
        value = func.sum(source.c.value)
        where = [source.c.metric == bindparam("metric"), source.c.bucket >= bindparam("start"),
                 source.c.bucket < bindparam("end")]
    index = case(*[(source.c.bucket < bindparam(f"end_{i}"), i) for i in range(len(ends))],
                 else_=literal_column("-1")).label("period")
    query = select(index, value.label("value")).where(*where).group_by(index)
    values = [0] * len(starts)
    for row in ctx.conn.execute(query, params):
        if 0 <= row.period < len(values):
            values[row.period] = int(row.value or 0)
    return values

