"""Segments as settings (RULES.md section 7): named rules over a member's tier, tags, lifecycle stage, RFM
band, purchases of a category in a window, join date and birthday month, and who is in which segment.

A rule is compiled to one SQL condition over the member's rows (core's member and personal rows, segments'
lifecycle row, which also mirrors the tier, and RFM row), so a single member and a whole shop are judged by
the same SQL: the events that can change a fact mark the member, and at the end of the transaction one
SELECT re-judges every segment for the marked members (``ctx.last``); the hourly ``segments.refresh`` job
re-judges whole segments set-wise, for what only time changes (a window, "joined in the last N days") and
for RFM bands after a run. The member search (``members(filter)``) filters by the same conditions.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    Integer,
    and_,
    bindparam,
    cast,
    delete,
    except_,
    exists,
    extract,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from memberkit.plugin import Context, MemberPersonalRow, MemberRow, PaidOrder, Refund, TierInfo, among, upsert
from memberkit.plugins.segments.models import SegmentsLifecycle, SegmentsMember, SegmentsPurchase, SegmentsRfm
from memberkit.plugins.segments.settings import SegmentRule, settings_of

MEMBERS, PERSONAL = MemberRow.__table__, MemberPersonalRow.__table__
LIFECYCLE, RFM = SegmentsLifecycle.__table__, SegmentsRfm.__table__
PURCHASES, IN_SEGMENT = SegmentsPurchase.__table__, SegmentsMember.__table__
MARKED = "segments.marked"  # ctx.extra: the members whose segments are judged again before commit
BATCH = 2000  # members judged per SELECT (an import's batch, a job's tier changes)


def facts(after: str | None = None):
    """The rows a condition may name: the member, outer-joined to their lifecycle, RFM and personal rows.
    With `after` (a page's cursor) each joined row's id is bounded too, which changes nothing for members
    past the cursor but lets the planner start every index it walks there, not at the first member."""
    def on(table):
        joined = table.c.member_id == MEMBERS.c.id
        return joined if after is None else and_(joined, table.c.member_id > after)
    return MEMBERS.outerjoin(LIFECYCLE, on(LIFECYCLE)).outerjoin(RFM, on(RFM)).outerjoin(PERSONAL, on(PERSONAL))


def has_tag(conn, tag: str):
    if conn.dialect.name == "postgresql":
        return cast(MEMBERS.c.tags, JSONB).op("?")(tag)
    each = func.json_each(MEMBERS.c.tags).table_valued("value")
    return exists(select(1).select_from(each).where(each.c.value == tag))


def local_midnight(ctx: Context, days_ago: int) -> datetime:
    """Midnight (in UTC) that starts the shop's calendar day `days_ago` days before today."""
    day = ctx.shop.local(ctx.now).date() - timedelta(days=days_ago)
    return datetime.combine(day, time(0), tzinfo=ctx.shop.timezone).astimezone(UTC)


def _birthday_month(conn):
    if conn.dialect.name == "postgresql":
        return cast(extract("month", PERSONAL.c.birthday), Integer)
    return cast(func.strftime("%m", PERSONAL.c.birthday), Integer)


def _rank_of(ctx: Context, code: str) -> int | None:
    catalog = ctx.hook.tier_catalog(ctx=ctx) or []
    return next((tier.rank for tier in catalog if tier.code == code), None)


def condition(ctx: Context, *, tiers: Iterable[str] | None = None, min_tier: str | None = None,
              tags_all: Iterable[str] | None = None, tags_any: Iterable[str] | None = None,
              lifecycle: Iterable[str] | None = None, rfm_bands: Iterable[str] | None = None,
              bought: Any = None, joined_within_days: int | None = None, joined_from: datetime | None = None,
              joined_to: datetime | None = None, birthday_months: Iterable[int] | None = None,
              segment: str | None = None) -> Any:
    """Every condition given, in SQL over `facts()`: a segment rule's, or a member search's filter. A joined
    row's own shop is named too (always the member's), so the planner can walk segments' (shop, ..., member_id)
    indexes in the members' order."""
    slug = ctx.shop.slug
    conn, clauses = ctx.conn, [MEMBERS.c.shop == slug, MEMBERS.c.erased_at.is_(None)]  # the erased are in none
    if tiers is not None or min_tier is not None or lifecycle is not None:
        clauses.append(LIFECYCLE.c.shop == slug)
    if rfm_bands is not None:
        clauses.append(RFM.c.shop == slug)
    if tiers is not None:
        clauses.append(LIFECYCLE.c.tier_code.in_(list(tiers)))
    if min_tier is not None:
        rank = _rank_of(ctx, min_tier)
        clauses.append(LIFECYCLE.c.tier_rank >= rank if rank is not None else false())
    if tags_all is not None:
        clauses.extend(has_tag(conn, tag) for tag in tags_all)
    if tags_any is not None:
        clauses.append(or_(*(has_tag(conn, tag) for tag in tags_any)) if tags_any else false())
    if lifecycle is not None:
        clauses.append(LIFECYCLE.c.stage.in_([str(stage) for stage in lifecycle]))
    if rfm_bands is not None:
        clauses.append(RFM.c.band.in_(list(rfm_bands)))
    if bought is not None:
        orders = (select(func.count()).where(
            PURCHASES.c.member_id == MEMBERS.c.id, PURCHASES.c.category == bought.category,
            PURCHASES.c.paid_at >= local_midnight(ctx, bought.within_days - 1), PURCHASES.c.paid_at <= ctx.now)
            .scalar_subquery())
        clauses.append(orders >= bought.at_least)
    if joined_within_days is not None:
        clauses.append(MEMBERS.c.joined_at >= local_midnight(ctx, joined_within_days - 1))
    if joined_from is not None:
        clauses.append(MEMBERS.c.joined_at >= joined_from)
    if joined_to is not None:
        clauses.append(MEMBERS.c.joined_at < joined_to)
    if birthday_months is not None:
        clauses.append(_birthday_month(conn).in_(list(birthday_months)))
    if segment is not None:
        clauses.append(exists(select(1).where(IN_SEGMENT.c.member_id == MEMBERS.c.id, IN_SEGMENT.c.shop == slug,
                                              IN_SEGMENT.c.segment == segment)))
    return and_(*clauses)


def rule_condition(ctx: Context, rule: SegmentRule) -> Any:
    return condition(ctx, **{name: getattr(rule, name) for name in (
        "tiers", "min_tier", "tags_all", "tags_any", "lifecycle", "rfm_bands", "bought", "joined_within_days",
        "joined_from", "joined_to", "birthday_months")})


# ---------------------------------------------------------------- the events that change a member's facts


def mark(ctx: Context, member_id: str, *conditions: str) -> None:
    """Judge the member's segments again before this transaction commits, if any segment uses one of
    `conditions` (none given: any segment)."""
    segments = settings_of(ctx).segments
    if not segments or (conditions and not any(rule.uses(*conditions) for rule in segments)):
        return
    marked = ctx.extra.get(MARKED)
    if marked is None:
        marked = ctx.extra[MARKED] = set()
        ctx.last.append(lambda: judge_members(ctx, sorted(ctx.extra.pop(MARKED, ()))))
    marked.add(member_id)


def tier_changed(ctx: Context, member_id: str, after: TierInfo) -> None:
    ctx.conn.execute(LIFECYCLE.update().where(LIFECYCLE.c.member_id == member_id)
                     .values(tier_code=after.code, tier_rank=after.rank))
    mark(ctx, member_id, "tiers", "min_tier")


def joined(ctx: Context, member_id: str) -> None:
    tier = ctx.member_tier(member_id)
    if tier is not None:
        ctx.conn.execute(LIFECYCLE.update().where(LIFECYCLE.c.member_id == member_id)
                         .values(tier_code=tier.code, tier_rank=tier.rank))
    mark(ctx, member_id)


def order_paid(ctx: Context, order: PaidOrder) -> None:
    """Only an order with a line of a counted category costs statements here."""
    counted = settings_of(ctx).categories()
    categories = sorted({line.category for line in order.lines if line.category in counted}) if counted else ()
    if not categories:
        return
    ctx.conn.execute(upsert(PURCHASES).on(ctx.conn), [
        {"shop": ctx.shop.slug, "order_id": order.order_id, "category": category, "member_id": order.member_id,
         "paid_at": order.paid_at} for category in categories])
    mark(ctx, order.member_id, "bought")


def order_refunded(ctx: Context, refund: Refund) -> None:
    """An order refunded in full no longer counts as a purchase."""
    if not refund.is_full or not settings_of(ctx).categories():
        return
    gone = ctx.conn.execute(delete(PURCHASES).where(PURCHASES.c.shop == ctx.shop.slug,
                                                    PURCHASES.c.order_id == refund.order.order_id)).rowcount
    if gone:
        mark(ctx, refund.order.member_id, "bought")


# ---------------------------------------------------------------- judging


def judge_members(ctx: Context, member_ids: list[str]) -> None:
    """Each member's segments as the rules now say: one SELECT over every rule, then the rows that differ."""
    rules = settings_of(ctx).segments
    if not member_ids or not rules:
        return
    if len(member_ids) > BATCH:  # a job that moved many members' tiers: a batch at a time
        for start in range(0, len(member_ids), BATCH):
            judge_members(ctx, member_ids[start:start + BATCH])
        return
    columns = [rule_condition(ctx, rule).label(f"s{i}") for i, rule in enumerate(rules)]
    wanted = {row.id: {rule.code for rule, hit in zip(rules, row[1:], strict=True) if hit}
              for row in ctx.conn.execute(select(MEMBERS.c.id, *columns).select_from(facts())
                                          .where(among(ctx.conn, MEMBERS.c.id, member_ids)))}
    held: dict[str, set[str]] = {member_id: set() for member_id in wanted}
    for member_id, segment in ctx.conn.execute(select(IN_SEGMENT.c.member_id, IN_SEGMENT.c.segment)
                                               .where(among(ctx.conn, IN_SEGMENT.c.member_id, list(wanted)))):
        held[member_id].add(segment)
    joining = [{"member_id": m, "segment": s, "shop": ctx.shop.slug, "since": ctx.now}
               for m, codes in wanted.items() for s in sorted(codes - held[m])]
    leaving = [(m, s) for m, codes in held.items() for s in codes - wanted[m]]
    if joining:
        ctx.conn.execute(insert(IN_SEGMENT), joining)
    for member_id, segment in leaving:
        ctx.conn.execute(delete(IN_SEGMENT).where(IN_SEGMENT.c.member_id == member_id,
                                                  IN_SEGMENT.c.segment == segment))


def refresh(ctx: Context, only: Iterable[str] | None = None) -> dict[str, tuple[int, int]]:
    """Whole segments judged again set-wise (two statements each): members who now meet the rule join,
    those who no longer do leave; rows of segments no longer in the settings go. Returns code -> (joined,
    left). Who joins and who leaves are EXCEPTs, each side read whole before a row is written: an anti-join
    against the table being filled can be planned as a nested loop over it, which grows with the square of
    the segment's size."""
    rules = [rule for rule in settings_of(ctx).segments if only is None or rule.code in only]
    conn, slug, counts = ctx.conn, ctx.shop.slug, {}
    if conn.dialect.name == "postgresql" and rules:  # statistics as they are now, not before the last refresh
        conn.execute(text(f"ANALYZE {IN_SEGMENT.name}, {LIFECYCLE.name}"))
    if only is None:
        conn.execute(delete(IN_SEGMENT).where(IN_SEGMENT.c.shop == slug,
                                              IN_SEGMENT.c.segment.not_in([r.code for r in rules])))
    for rule in rules:
        meets = select(MEMBERS.c.id.label("member_id")).select_from(facts()).where(rule_condition(ctx, rule))
        held = select(IN_SEGMENT.c.member_id).where(IN_SEGMENT.c.shop == slug, IN_SEGMENT.c.segment == rule.code)
        leaving = except_(held, meets).subquery("leaving")
        left = conn.execute(delete(IN_SEGMENT).where(
            IN_SEGMENT.c.shop == slug, IN_SEGMENT.c.segment == rule.code,
            IN_SEGMENT.c.member_id.in_(select(leaving.c.member_id)))).rowcount
        joining = except_(meets, held).subquery("joining")
        joined_count = conn.execute(insert(IN_SEGMENT).from_select(
            ["member_id", "segment", "shop", "since"],
            select(joining.c.member_id, literal(rule.code), literal(slug), literal(ctx.now, IN_SEGMENT.c.since.type)))
            .execution_options(preserve_rowcount=True)).rowcount
        counts[rule.code] = (joined_count, left)
    return counts


def fill_tiers(ctx: Context) -> int:
    """Members whose tier segments were never told (they joined before the shop enabled segments, or
    before tiering): asked of the tier plugin a batch at a time."""
    filled, after = 0, ""
    while True:  # by id, so a member the tier plugin has no tier for is passed over, not asked again
        ids = ctx.conn.execute(select(LIFECYCLE.c.member_id).where(LIFECYCLE.c.shop == ctx.shop.slug,
                                                                   LIFECYCLE.c.tier_code.is_(None),
                                                                   LIFECYCLE.c.member_id > after)
                               .order_by(LIFECYCLE.c.member_id).limit(BATCH)).scalars().all()
        tiers = ctx.member_tiers(list(ids)) if ids else None
        if not tiers:
            return filled
        known = [{"p_member": m, "p_code": t.code, "p_rank": t.rank} for m, t in tiers.items() if t]
        if known:
            ctx.conn.execute(LIFECYCLE.update().where(LIFECYCLE.c.member_id == bindparam("p_member")).values(
                tier_code=bindparam("p_code"), tier_rank=bindparam("p_rank")), known)
        filled, after = filled + len(known), ids[-1]
        if len(ids) < BATCH:
            return filled


def refresh_job(ctx: Context) -> str | None:
    """The hourly job: tiers never told filled in, then every segment judged again."""
    fill_tiers(ctx)
    counts = refresh(ctx)
    moved = [f"{code} +{j}/-{left}" for code, (j, left) in counts.items() if j or left]
    return ", ".join(moved) or None


def segments_of(ctx: Context, member_id: str) -> list[str]:
    """The member's segments, in the settings' order."""
    held = set(ctx.conn.execute(select(IN_SEGMENT.c.segment).where(IN_SEGMENT.c.member_id == member_id,
                                                                    IN_SEGMENT.c.shop == ctx.shop.slug)).scalars())
    return [rule.code for rule in settings_of(ctx).segments if rule.code in held]


def counts(ctx: Context) -> dict[str, int]:
    return dict(ctx.conn.execute(select(IN_SEGMENT.c.segment, func.count())
                                 .where(IN_SEGMENT.c.shop == ctx.shop.slug).group_by(IN_SEGMENT.c.segment)).all())


# ---------------------------------------------------------------- the member search


def search(ctx: Context, where: Any, first: int, after: str | None) -> list[Any]:
    """A page of members meeting `where`, by id (a keyset: members added meanwhile never repeat or shift
    others); one row more than `first` tells whether there is a next page."""
    query = (select(MEMBERS.c.id, MEMBERS.c.external_id, MEMBERS.c.joined_at, MEMBERS.c.tags, PERSONAL.c.birthday)
             .select_from(facts(after)).where(where))
    if after is not None:
        query = query.where(MEMBERS.c.id > after)
    return ctx.conn.execute(query.order_by(MEMBERS.c.id).limit(first + 1)).all()


def count(ctx: Context, where: Any) -> int:
    return ctx.conn.execute(select(func.count()).select_from(facts()).where(where)).scalar_one()
