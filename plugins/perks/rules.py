"""The rules of the perks plugin (RULES.md section 6), each one a function of the context and settings.

Reads (price adjustments, the storefront's view) only SELECT; writes (gifts) claim a row whose primary key
allows one gift per member and order, year or month, and issue the coupon only when the claim succeeded.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Table, and_, extract, func, select, update

from memberkit.plugin import (
    Adjustment,
    CalendarEntry,
    Cart,
    Context,
    Effect,
    EffectKind,
    MemberInfo,
    MemberPersonalRow,
    MemberRow,
    PaidOrder,
    Refused,
    TierInfo,
    percent_off,
    upsert,
)
from memberkit.plugins.perks.models import PerksBirthdayCoupon, PerksFirstOrder, PerksFirstOrderHold, PerksMonthlyCoupon
from memberkit.plugins.perks.settings import NAME, PerksSettings, settings_of

PERCENT_GROUP = "percent"
MEMBERS, PERSONAL = MemberRow.__table__, MemberPersonalRow.__table__
FIRST_ORDERS: Table = PerksFirstOrder.__table__
FIRST_ORDER_HOLDS: Table = PerksFirstOrderHold.__table__
BIRTHDAYS: Table = PerksBirthdayCoupon.__table__
MONTHLY: Table = PerksMonthlyCoupon.__table__


def today(ctx: Context) -> date:
    return ctx.shop.local(ctx.now).date()


def claim(conn: Connection, table: Table, values: dict[str, Any]) -> bool:
    """INSERT the row unless its key exists: True if this call made it. The constraint decides, so two
    transactions racing for one gift cannot both win (the loser waits for the winner, then finds its row)."""
    statement = upsert(table, returning=(table.c.member_id,)).on(conn)
    return conn.execute(statement, values).first() is not None


def winback_coupon(ctx: Context, member_id: str) -> None:
    """RULES.md section 7: the shop's win-back coupon for a member whose dormant spell just began."""
    template = settings_of(ctx).winback_coupon
    if template:
        _issue(ctx, member_id, template, "winback_coupon")


def _issue(ctx: Context, member_id: str, template: str, rule: str) -> tuple[str | None, Effect]:
    """Issue a coupon of `template`; a template missing from the shop is said, never an exception."""
    if template not in ctx.shop.coupons:
        return None, Effect(NAME, EffectKind.CONFLICT, f"no coupon issued: the shop has no coupon template "
                            f"{template!r} in plugins.toml", code="COUPON_TEMPLATE_MISSING", rule=rule)
    coupon = ctx.wallet.issue(member_id, template, source=f"{NAME}:{rule}")
    return coupon.id, ctx.wallet.issued_effect(NAME, coupon, rule=rule)


# ---------------------------------------------------------------- calendar


def birthday_in(birthday: date, year: int) -> date:
    """The day the birthday falls on in `year`: 29 February is kept on 28 February in other years."""
    if birthday.month == 2 and birthday.day == 29 and not calendar.isleap(year):
        return date(year, 2, 28)
    return birthday.replace(year=year)


def member_day_in(day_of_month: int, year: int, month: int) -> date:
    """The member day of a month: the set day, or the month's last day where the month is shorter."""
    return date(year, month, min(day_of_month, calendar.monthrange(year, month)[1]))


def is_member_day(s: PerksSettings, on: date) -> bool:
    return s.member_day is not None and on == member_day_in(s.member_day, on.year, on.month)


def next_member_day(s: PerksSettings, on: date) -> date | None:
    """Today if it is the member day, else the next one."""
    if s.member_day is None:
        return None
    this_month = member_day_in(s.member_day, on.year, on.month)
    if this_month >= on:
        return this_month
    year, month = (on.year + 1, 1) if on.month == 12 else (on.year, on.month + 1)
    return member_day_in(s.member_day, year, month)


def months_touched(first: date, last: date) -> Iterable[tuple[int, int]]:
    """(year, month) of every month the days from `first` to `last` touch, in order."""
    year, month = first.year, first.month
    while (year, month) <= (last.year, last.month):
        yield year, month
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


# What the calendar calls the perks' days, in every locale memberkit ships messages for (settings.LOCALES).
TITLES = {"zh-CN": {"MEMBER_DAY": "会员日", "BIRTHDAY_MONTH": "生日月", "separator": "："},
          "en": {"MEMBER_DAY": "Member day", "BIRTHDAY_MONTH": "Birthday month", "separator": ": "}}


def zhe(paid: int) -> str:
    """The share of the price paid, in percent, as 折 (tenths): 95 is 95折, 90 is 9折, 5 is 0.5折, 0 is 免单."""
    if paid == 0:
        return "免单"
    if paid < 10:
        return f"0.{paid}折"
    return f"{paid // 10}折" if paid % 10 == 0 else f"{paid}折"


def title(locale: str, kind: str, percent: int) -> str:
    """"Member day: 5% off" / "会员日：95折" (a percentage off as 折, tenths of the price paid)."""
    words = TITLES.get(locale, TITLES["en"])
    if not percent:
        return words[kind]
    off = f"{percent}% off" if percent < 100 else "free"
    if locale == "zh-CN":
        off = zhe(100 - percent)
    return f"{words[kind]}{words['separator']}{off}"


def calendar_entries(ctx: Context, member_id: str | None, first: date, last: date) -> list[CalendarEntry]:
    """The member day of each month in the range (where it takes something off), and, for a member with a
    recorded birthday, their birthday month: one entry on its first day, or on `first` where the month
    began before the range, titled with the member's own birthday percent."""
    s, locale = settings_of(ctx), ctx.shop.locale
    entries = []
    who = shopper(ctx, member_id) if member_id else None
    birthday = who.birthday if who else None
    for year, month in months_touched(first, last):
        if birthday is not None and birthday.month == month:
            percent = birthday_percent(ctx, s, member_id)[0]
            entries.append(CalendarEntry(max(date(year, month, 1), first), "BIRTHDAY_MONTH",
                                         title(locale, "BIRTHDAY_MONTH", percent)))
        if s.member_day is not None and s.member_day_percent:
            day = member_day_in(s.member_day, year, month)
            if first <= day <= last:
                entries.append(CalendarEntry(day, "MEMBER_DAY", title(locale, "MEMBER_DAY", s.member_day_percent)))
    return entries


# ---------------------------------------------------------------- tiers


def tier_rank(ctx: Context, code: str) -> int | None:
    """The rank of tier `code` in the shop's catalog; None without tiering or for an unknown code."""
    catalog: list[TierInfo] | None = ctx.hook.tier_catalog(ctx=ctx)
    return next((t.rank for t in catalog or () if t.code == code), None)


def birthday_percent(ctx: Context, s: PerksSettings, member_id: str) -> tuple[int, str]:
    """The member's birthday-month percent and the rule that gives it: the everyone percent, raised by
    the highest `birthday_tier_percents` entry whose tier the member has reached."""
    best, rule = s.birthday_percent, "birthday_month"
    if not s.birthday_tier_percents:
        return best, rule
    tier: TierInfo | None = ctx.member_tier(member_id)
    catalog: list[TierInfo] | None = ctx.hook.tier_catalog(ctx=ctx)
    if tier is None or not catalog:
        return best, rule
    ranks = {t.code: t.rank for t in catalog}
    for code, percent in s.birthday_tier_percents.items():
        if code in ranks and tier.rank >= ranks[code] and percent > best:
            best, rule = percent, f"birthday_month:{code}"
    return best, rule


# ---------------------------------------------------------------- price adjustments (reads only)


@dataclass(frozen=True)
class Shopper:
    member_id: str
    birthday: date | None
    paid_orders: int


def shopper(ctx: Context, member_id: str) -> Shopper | None:
    """The member of this shop the cart belongs to, with what the rules need; None if not a member here."""
    row = ctx.conn.execute(
        select(MEMBERS.c.id, PERSONAL.c.birthday, MEMBERS.c.paid_orders.label("orders"))
        .select_from(MEMBERS.outerjoin(PERSONAL, PERSONAL.c.member_id == MEMBERS.c.id))
        .where(MEMBERS.c.id == member_id, MEMBERS.c.shop == ctx.shop.slug)).first()
    return Shopper(row.id, row.birthday, row.orders) if row else None


def percent_adjustments(ctx: Context, cart: Cart, subtotal: int) -> list[Adjustment]:
    """First order, birthday month and member day: each its own adjustment in the exclusive group
    "percent", where core keeps the largest (with the tier discount and any other percent)."""
    s = settings_of(ctx)
    who = shopper(ctx, cart.member_id) if cart.member_id else None
    if who is None or not cart.lines:
        return []
    on = today(ctx)
    found: list[Adjustment] = []

    def add(code: str, label: str, percent: int, excluded: Iterable[str] = ()) -> None:
        off = percent_off(cart.lines, subtotal, percent, excluded) if percent else 0
        if off:
            found.append(Adjustment(NAME, code, label, -off, exclusive_group=PERCENT_GROUP))

    if s.first_order_discount == "percent" and who.paid_orders == 0:
        add("FIRST_ORDER", f"first order {s.first_order_percent}% off", s.first_order_percent)
    if who.birthday is not None and who.birthday.month == on.month:
        percent, _ = birthday_percent(ctx, s, who.member_id)
        add("BIRTHDAY_MONTH", f"birthday month {percent}% off", percent, s.birthday_excluded_categories)
    if is_member_day(s, on):
        add("MEMBER_DAY", f"member day {s.member_day_percent}% off", s.member_day_percent)
    return found


def coupon_adjustments(ctx: Context, cart: Cart, subtotal: int) -> list[Adjustment]:
    """The threshold variant of the first-order discount: a fixed amount off once the price so far
    reaches the threshold (满100减30)."""
    s = settings_of(ctx)
    if s.first_order_discount != "threshold" or not cart.member_id or subtotal < max(s.first_order_threshold, 1):
        return []
    who = shopper(ctx, cart.member_id)
    if who is None or who.paid_orders:
        return []
    off = min(s.first_order_threshold_off, subtotal)
    return [Adjustment(NAME, "FIRST_ORDER", f"first order {off} off orders of {s.first_order_threshold}", -off)]


def hold_first_order(ctx: Context, checkout_id: str, cart: Cart, held_until: datetime) -> list[Effect]:
    """A checkout whose cart gets the first-order discount holds it, so a second open checkout of the same
    new member cannot be priced as a first order too (the last one to be paid would not be)."""
    subtotal = sum(line.amount for line in cart.lines)
    offered = percent_adjustments(ctx, cart, subtotal) + coupon_adjustments(ctx, cart, subtotal)
    if not cart.member_id or not any(a.code == "FIRST_ORDER" for a in offered):
        return []
    values = {"member_id": cart.member_id, "shop": ctx.shop.slug, "checkout_id": checkout_id,
              "held_until": held_until}
    if not claim(ctx.conn, FIRST_ORDER_HOLDS, values) and not ctx.conn.execute(
            update(FIRST_ORDER_HOLDS).where(
                FIRST_ORDER_HOLDS.c.member_id == cart.member_id,
                (FIRST_ORDER_HOLDS.c.held_until <= ctx.now) | (FIRST_ORDER_HOLDS.c.checkout_id == checkout_id))
            .values(checkout_id=checkout_id, held_until=held_until)).rowcount:
        raise Refused("FIRST_ORDER_HELD", "the first-order discount is held by another open checkout of yours: "
                                          "pay or release that one first", "lines")
    return [Effect(NAME, "FIRST_ORDER_HELD", f"first-order discount held for checkout {checkout_id}",
                   rule="first_order")]


def release_first_order(ctx: Context, checkout_id: str) -> None:
    ctx.conn.execute(FIRST_ORDER_HOLDS.delete().where(FIRST_ORDER_HOLDS.c.shop == ctx.shop.slug,
                                                      FIRST_ORDER_HOLDS.c.checkout_id == checkout_id))


# ---------------------------------------------------------------- events


def welcome(ctx: Context, member: MemberInfo, seen_before: bool = False) -> list[Effect]:
    template = settings_of(ctx).welcome_coupon
    if template is None:
        return []
    if seen_before:
        return [Effect(NAME, EffectKind.NO_REWARD, "no sign-up gift: this phone or email is that of an erased "
                       "member (signing up again after erasure earns no second gift)", code="SEEN_BEFORE",
                       rule="welcome")]
    return [_issue(ctx, member.id, template, "welcome")[1]]


def first_order(ctx: Context, order: PaidOrder) -> list[Effect]:
    """The first paid order (core numbers each member's orders) earns the first-order coupon if it reaches
    the minimum; the claimed row makes it once."""
    s = settings_of(ctx)
    if s.first_order_coupon is None or order.number != 1:
        return []
    if not claim(ctx.conn, FIRST_ORDERS, dict(
            member_id=order.member_id, shop=ctx.shop.slug, order_id=order.order_id, total=order.total,
            created_at=ctx.now)):
        return []
    if order.total < s.first_order_coupon_min_total:
        return [Effect(NAME, EffectKind.NO_REWARD, f"first order of {order.total} is below "
                       f"{s.first_order_coupon_min_total}: no first-order coupon", rule="first_order")]
    coupon_id, effect = _issue(ctx, order.member_id, s.first_order_coupon, "first_order")
    if coupon_id:
        ctx.conn.execute(update(FIRST_ORDERS).where(FIRST_ORDERS.c.member_id == order.member_id)
                         .values(coupon_id=coupon_id))
    return [effect]


def birthday_change_veto(ctx: Context, member_id: str, previous: date | None) -> str | None:
    """Why a birthday change is refused, or None. Setting a birthday where none was is not a change;
    changing one is refused while the last change is younger than the limit."""
    limit = settings_of(ctx).birthday_change_limit_days
    if previous is None or not limit:
        return None
    changed_at: datetime | None = ctx.conn.execute(
        select(PERSONAL.c.birthday_changed_at).where(PERSONAL.c.member_id == member_id,
                                                     PERSONAL.c.shop == ctx.shop.slug)).scalar()
    if changed_at is None or ctx.now - changed_at >= timedelta(days=limit):
        return None
    again = ctx.shop.local(changed_at + timedelta(days=limit)).date()
    return (f"a birthday may be changed once in {limit} days; it was last changed on "
            f"{ctx.shop.local(changed_at).date().isoformat()}, so it can change again from {again.isoformat()}")


# ---------------------------------------------------------------- jobs


def birthday_coupons(ctx: Context) -> str:
    """Give the birthday coupon to members whose birthday (the shop's calendar; 29 February on 28 February
    in other years) is today or earlier this month and who have none for this year. Safe to run twice,
    late, or after a gap: a birthday missed by the job is paid while its month lasts, never twice."""
    s = settings_of(ctx)
    if s.birthday_coupon is None:
        return None  # the birthday coupon is off
    on = today(ctx)
    given = select(BIRTHDAYS.c.member_id).where(BIRTHDAYS.c.member_id == MEMBERS.c.id, BIRTHDAYS.c.year == on.year)
    rows = ctx.conn.execute(
        select(MEMBERS.c.id, MEMBERS.c.joined_at, PERSONAL.c.birthday, PERSONAL.c.birthday_changed_at)
        .select_from(MEMBERS.join(PERSONAL, PERSONAL.c.member_id == MEMBERS.c.id))
        .where(MEMBERS.c.shop == ctx.shop.slug, PERSONAL.c.birthday.is_not(None),
               extract("month", PERSONAL.c.birthday) == on.month, ~given.exists())
        .order_by(MEMBERS.c.id)).all()
    issued = late = problems = 0
    for row in rows:
        day = birthday_in(row.birthday, on.year)
        if day > on:
            continue
        recorded = max(row.joined_at, row.birthday_changed_at or row.joined_at)
        if s.birthday_coupon_needs_record and ctx.shop.local(recorded).date() > day:
            late += 1
            continue
        if s.birthday_coupon not in ctx.shop.coupons:
            problems += 1
            continue
        # The claim comes first; the coupon is issued only by the run that made the row.
        if not claim(ctx.conn, BIRTHDAYS, dict(member_id=row.id, year=on.year, shop=ctx.shop.slug,
                                               issued_at=ctx.now)):
            continue
        coupon_id, _ = _issue(ctx, row.id, s.birthday_coupon, "birthday")
        ctx.conn.execute(update(BIRTHDAYS).where(BIRTHDAYS.c.member_id == row.id, BIRTHDAYS.c.year == on.year)
                         .values(coupon_id=coupon_id))
        issued += 1
    result = f"{issued} birthday coupon(s) issued for {on.year}"
    if late:
        result += f"; {late} birthday(s) recorded after the day: none"
    if problems:
        result += f"; coupon template {s.birthday_coupon!r} missing from the shop: {problems} not issued"
    return result if issued or late or problems else None


def monthly_coupons(ctx: Context) -> str:
    """Give the monthly coupon to every member at or above the minimum tier who has none for this month
    (the shop's calendar). Without tiering, or with a minimum tier the shop does not have, it issues nothing
    and says so."""
    s = settings_of(ctx)
    if s.monthly_coupon is None:
        return None  # the monthly coupon is off
    min_rank = None
    if s.monthly_coupon_min_tier is not None:
        if ctx.hook.tier_catalog(ctx=ctx) is None:
            return "no tiering in this shop: monthly tier coupons are neutral, none issued"
        min_rank = tier_rank(ctx, s.monthly_coupon_min_tier)
        if min_rank is None:
            return f"the shop has no tier {s.monthly_coupon_min_tier!r}: no monthly coupon issued"
    if s.monthly_coupon not in ctx.shop.coupons:
        return f"coupon template {s.monthly_coupon!r} missing from the shop: no monthly coupon issued"
    month = today(ctx).strftime("%Y-%m")
    given = select(MONTHLY.c.member_id).where(MONTHLY.c.member_id == MEMBERS.c.id, MONTHLY.c.month == month)
    members = ctx.conn.execute(select(MEMBERS.c.id).where(MEMBERS.c.shop == ctx.shop.slug, ~given.exists(),
                                                          MEMBERS.c.erased_at.is_(None))
                               .order_by(MEMBERS.c.id)).scalars().all()
    issued = 0
    tiers: dict[str, TierInfo] = (ctx.member_tiers(list(members)) or {}) if min_rank is not None else {}
    for member_id in members:
        tier = tiers.get(member_id)
        if min_rank is not None and (tier is None or tier.rank < min_rank):
            continue
        if not claim(ctx.conn, MONTHLY, dict(member_id=member_id, month=month, shop=ctx.shop.slug,
                                             tier_code=tier.code if tier else None, issued_at=ctx.now)):
            continue
        coupon_id, _ = _issue(ctx, member_id, s.monthly_coupon, "monthly")
        ctx.conn.execute(update(MONTHLY).where(MONTHLY.c.member_id == member_id, MONTHLY.c.month == month)
                         .values(coupon_id=coupon_id))
        issued += 1
    return f"{issued} monthly coupon(s) issued for {month}" if issued else None


# ---------------------------------------------------------------- the member's view


@dataclass(frozen=True)
class PerksView:
    first_order_discount: bool
    birthday_month: bool
    birthday_percent: int
    birthday_coupon_year: int | None
    member_day: bool
    next_member_day: date | None
    monthly_coupon_month: str | None


def view(ctx: Context, member_id: str) -> PerksView | None:
    s = settings_of(ctx)
    who = shopper(ctx, member_id)
    if who is None:
        return None
    on = today(ctx)
    birthday_year = ctx.conn.execute(select(func.max(BIRTHDAYS.c.year)).where(
        BIRTHDAYS.c.member_id == member_id, BIRTHDAYS.c.shop == ctx.shop.slug)).scalar()
    monthly = ctx.conn.execute(select(func.max(MONTHLY.c.month)).where(
        and_(MONTHLY.c.member_id == member_id, MONTHLY.c.shop == ctx.shop.slug))).scalar()
    in_month = who.birthday is not None and who.birthday.month == on.month
    return PerksView(
        first_order_discount=s.first_order_discount != "none" and who.paid_orders == 0,
        birthday_month=in_month,
        birthday_percent=birthday_percent(ctx, s, member_id)[0] if in_month else 0,
        birthday_coupon_year=birthday_year,
        member_day=is_member_day(s, on) and s.member_day_percent > 0,
        next_member_day=next_member_day(s, on) if s.member_day_percent else None,
        monthly_coupon_month=monthly)
