"""Figures in, figures out. Each transaction appends what it counted (``figures_recorded``) as rows of
kpis_delta in one INSERT; the fold job moves them into kpis_hour (sums per shop-local hour) and kpis_active
(a member active within an hour); reads add the folded and the not yet folded rows in one statement, so a
figure is exact and current the moment its transaction commits, and no read scans members or orders."""

from __future__ import annotations

import enum
import json
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import (
    TIMESTAMP,
    String,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    or_,
    select,
    true,
    type_coerce,
    union_all,
)
from sqlalchemy.dialects.postgresql import JSONB

from memberkit.plugin import ByDialect, Context, Int64, Prepared, UTCDateTime, export_rows, insert_rows, upsert
from memberkit.plugins.kpis.models import KpisActive, KpisDelta, KpisHour, KpisRollup, KpisStoreSales

DELTA, HOUR, ROLLUP, ACTIVE, STORE_SALES = (KpisDelta.__table__, KpisHour.__table__, KpisRollup.__table__,
                                            KpisActive.__table__, KpisStoreSales.__table__)
ACTIVITY = "active"  # the metric of an activity mark: ctx.count("active", at=..., member_id=...)
FOLD_BATCH = 2000  # kpis_delta rows (transactions) per step: at most FOLD_BATCH x PACKED_FIGURES figures
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




_INSERT = Prepared(DELTA.insert())
PACKED_FIGURES = 200  # figures per kpis_delta row: an order's are a handful; a job's thousands take several rows
BUCKET_TEXT = "%Y-%m-%d %H:%M:%S.%f"  # an hour's start in a packed figure: UTC, as SQLite keeps timestamps


def bucket_text(bucket: datetime) -> str:
    return bucket.astimezone(UTC).strftime(BUCKET_TEXT)


def bucket_of(text: str) -> datetime:
    return datetime.strptime(text, BUCKET_TEXT).replace(tzinfo=UTC)


def record(ctx: Context, figures) -> None:
    """Append a transaction's figures as one row: equal (metric, hour) summed, activity marks once per
    member and hour."""
    tz = ctx.shop.timezone
    buckets: dict[datetime, str] = {}  # a transaction's figures mostly share one moment
    sums: dict[tuple[str, str], int] = {}
    marks: dict[tuple[str, str], None] = {}
    for figure in figures:
        bucket = buckets.get(figure.at)
        if bucket is None:
            bucket = buckets[figure.at] = bucket_text(hour_start(figure.at, tz))
        if figure.metric == ACTIVITY:
            if figure.member_id is not None:
                marks[bucket, figure.member_id] = None
        elif figure.value:
            key = (figure.metric, bucket)
            sums[key] = sums.get(key, 0) + figure.value
    packed = [[metric, bucket, value, None] for (metric, bucket), value in sums.items() if value]
    packed += [[ACTIVITY, bucket, 1, member_id] for bucket, member_id in marks]
    if len(packed) <= PACKED_FIGURES:
        if packed:
            _INSERT.cursor(ctx.conn, {"shop": ctx.shop.slug, "figures": json.dumps(packed, separators=(",", ":"))})
        return
    insert_rows(ctx.conn, DELTA, [{"shop": ctx.shop.slug, "figures": json.dumps(packed[i:i + PACKED_FIGURES])}
                                  for i in range(0, len(packed), PACKED_FIGURES)])


def fold(ctx: Context, batches: int = 20) -> str | None:
    """The job: move appended figures into the hour sums and activity marks, a batch per step.

    Rows (a transaction's figures each) are picked by id (locked, skipping rows another fold holds) and
    exactly those ids are deleted in
    the same transaction: a row that a slow transaction commits later, with a smaller id, is folded by a
    later run, never deleted unfolded."""
    moved = 0
    for _ in range(batches):
        rows = ctx.conn.execute(
            select(DELTA.c.id, DELTA.c.figures).where(DELTA.c.shop == ctx.shop.slug).order_by(DELTA.c.id)
            .limit(FOLD_BATCH).with_for_update(skip_locked=True)).all()
        if not rows:
            break
        sums: dict[tuple[str, datetime], int] = defaultdict(int)
        marks: set[tuple[datetime, str]] = set()
        for row in rows:
            figures = json.loads(row.figures)
            moved += len(figures)
            for metric, bucket, value, member_id in figures:
                if metric == ACTIVITY:
                    marks.add((bucket_of(bucket), member_id))
                else:
                    sums[metric, bucket_of(bucket)] += value
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
        if len(rows) < FOLD_BATCH:
            break
    return f"{moved} figure(s) folded" if moved else None


# ---------------------------------------------------------------- reading


def _unfolded(dialect: str):
    """The figures not folded yet, unpacked from their rows' JSON: (metric, bucket, value, member_id)."""
    if dialect == "postgresql":
        item = func.jsonb_array_elements(cast(DELTA.c.figures, JSONB)).table_valued("value").alias("figure")

        def part(i: int):
            return item.c.value.op("->>")(i)
        bucket = func.timezone("UTC", cast(part(1), TIMESTAMP))
    else:
        item = func.json_each(DELTA.c.figures).table_valued("value").alias("figure")

        def part(i: int):
            return func.json_extract(item.c.value, f"$[{i}]")
        bucket = part(1)  # the text SQLite keeps a timestamp as, so it compares with the bound ones
    return select(cast(part(0), String).label("metric"), type_coerce(bucket, UTCDateTime).label("bucket"),
                  cast(part(2), Int64).label("value"), cast(part(3), String).label("member_id")
                  ).select_from(DELTA.join(item, true())).where(DELTA.c.shop == bindparam("shop")).subquery("unfolded")


def unfolded_marks(ctx: Context, member_id: str) -> dict:
    """The member's activity marks not folded yet, for the data export (as ``export_rows`` lists rows)."""
    unfolded = _unfolded(ctx.conn.dialect.name)
    query = select(unfolded.c.bucket, unfolded.c.member_id).where(unfolded.c.metric == ACTIVITY,
                                                                  unfolded.c.member_id == member_id)
    return export_rows(ctx, query.params(shop=ctx.shop.slug), unfolded.c.bucket.desc())


def _sums_source(dialect: str):
    """Every figure but activity marks, folded or not: (metric, bucket, value)."""
    shop, unfolded = bindparam("shop"), _unfolded(dialect)
    return union_all(
        select(HOUR.c.metric, HOUR.c.bucket, HOUR.c.value).where(HOUR.c.shop == shop),
        select(unfolded.c.metric, unfolded.c.bucket, unfolded.c.value).where(unfolded.c.metric != ACTIVITY),
    ).subquery("figures")


def _marks_source(dialect: str):
    """Activity marks in [start, end), folded or not: (bucket, member_id)."""
    shop, start, end, unfolded = bindparam("shop"), bindparam("start"), bindparam("end"), _unfolded(dialect)
    return union_all(
        select(ACTIVE.c.bucket, ACTIVE.c.member_id).where(ACTIVE.c.shop == shop, ACTIVE.c.bucket >= start,
                                                          ACTIVE.c.bucket < end),
        select(unfolded.c.bucket, unfolded.c.member_id).where(unfolded.c.metric == ACTIVITY,
                                                              unfolded.c.bucket >= start, unfolded.c.bucket < end),
    ).subquery("marks")


BOUNDS = ("previous", "start", "end")


def _levels_source(dialect: str):
    """Every figure but activity marks before `end`, each hour counted once, from the coarsest rows that do
    not straddle a boundary (previous, start, end): UTC months, then the days of the months a boundary splits,
    then the hours of the days it splits, and the unfolded rows. At most three months and three days are
    split, so a level costs the shop's months plus a few hundred rows, not every hour since it began."""
    shop, end, unfolded = bindparam("shop"), bindparam("end"), _unfolded(dialect)
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
        select(unfolded.c.metric, unfolded.c.bucket, unfolded.c.value).where(unfolded.c.metric != ACTIVITY,
                                                                             unfolded.c.bucket < end),
    ).subquery("figures")


def _sums_statement(dialect: str):
    figures = _levels_source(dialect)
    in_period = figures.c.bucket >= bindparam("start")
    before = case((figures.c.bucket >= bindparam("previous"), case((in_period, 0), else_=figures.c.value)), else_=0)
    return (select(figures.c.metric, func.sum(case((in_period, figures.c.value), else_=0)).label("period"),
                   func.sum(before).label("previous"), func.sum(figures.c.value).label("total"))
            .group_by(figures.c.metric))


DIALECTS = ("postgresql", "sqlite")
_SUMS = Prepared(ByDialect({dialect: _sums_statement(dialect) for dialect in DIALECTS}))
_ACTIVE_MEMBERS = Prepared(ByDialect({dialect: select(func.count(func.distinct(_marks_source(dialect).c.member_id)))
                                      for dialect in DIALECTS}))
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
    dialect = ctx.conn.dialect.name
    if metric == "activeMembers":
        source = _marks_source(dialect)
        value = func.count(func.distinct(source.c.member_id))
        where = []
    else:
        source = _sums_source(dialect)
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

