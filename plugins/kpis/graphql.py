"""The kpis plugin's part of the schema (operations.graphql): programmeKpis, kpiSeries and recordStoreSales,
for the integrator (the shop's secret key)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Optional

import strawberry
from strawberry.types.nodes import SelectedField

from memberkit.plugin import (
    BigInt,
    Context,
    EventResult,
    Refused,
    RequestContext,
    UserError,
    VisibleError,
    declared_figures,
    upsert,
)
from memberkit.plugins.kpis import figures as fg

MAX_RANGE = timedelta(days=400)  # programmeKpis: a year and a bit, e.g. this year against the last
MAX_POINTS = 1000  # kpiSeries: e.g. 41 days of hours, 2.7 years of days
TIER_MEMBERS = "tierMembers:"  # a level per tier: `tierMembers:GOLD` +1 as a member enters, -1 as one leaves
OWN_FIGURES = ("newMembers", "memberOrders", "memberSales", "activeMembers")


class InvalidRange(VisibleError):
    code = "INVALID_RANGE"

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.extensions["field"] = field


def check_range(ctx: Context, start: datetime, end: datetime, max_range: timedelta | None = None) -> None:
    """`from` and `to` carry an offset, fall on the shop's local hours and are in order (RULES.md 8)."""
    for field, moment in (("from", start), ("to", end)):
        if moment.tzinfo is None:
            raise InvalidRange(field, "must carry a UTC offset, e.g. 2026-11-23T20:00:00+08:00")
        if fg.hour_start(moment, ctx.shop.timezone) != moment:
            raise InvalidRange(field, f"{moment.isoformat()} is not the start of an hour in the shop's timezone "
                               f"({ctx.shop.timezone.key}): expected e.g. "
                               f"{fg.hour_start(moment, ctx.shop.timezone).astimezone(ctx.shop.timezone).isoformat()}")
    if start >= end:
        raise InvalidRange("to", f"{end.isoformat()} is not after from ({start.isoformat()})")
    if max_range is not None and end - start > max_range:
        days = (end - start) / timedelta(days=1)
        raise InvalidRange("to", f"the range is {days:g} days: at most {max_range.days} days")


# ---------------------------------------------------------------- programmeKpis


@strawberry.type(description="A ledger's roll-forward over the period, by when memberkit recorded each change: "
                             "closing = opening + issued + returned + adjusted - spent - expired - reversed.")
class Liability:
    opening: BigInt
    issued: BigInt
    returned: BigInt = strawberry.field(description="Given back to balances by order refunds.")
    adjusted: BigInt = strawberry.field(description="Signed: adjustments by hand and imports.")
    spent: BigInt
    expired: BigInt
    reversed: BigInt = strawberry.field(description="Taken back: refund clawbacks, refunded top-ups.")
    closing: BigInt
    pending: BigInt = strawberry.field(description="Not yet spendable (pending points), included in closing.")


@strawberry.type(description="Stored value's liability, principal and bonus apart, in minor units.")
class StoredValueLiability:
    principal: Liability
    bonus: Liability


@strawberry.type(description="How many members a tier has at the end of the period.")
class TierCount:
    tier: str
    members: int


@strawberry.type(description="The programme's figures over [from, to) (RULES.md 8).")
class ProgrammeKpis:
    from_: datetime = strawberry.field(name="from")
    to: datetime
    members: int
    new_members: int
    new_members_previous: int = strawberry.field(description="The same length of time just before `from`.")
    active_members: int = strawberry.field(description="Members who ordered or checked in within the period.")
    member_orders: int
    member_sales: BigInt
    store_sales: Optional[BigInt] = strawberry.field(
        description="From recordStoreSales: the shop's local days lying wholly within the period; null where "
                    "none was reported.")
    coupons_issued: int
    coupons_used: int
    points: Optional[Liability]
    stored_value: Optional[StoredValueLiability] = strawberry.field(
        description="In minor units; null where the shop has no stored value.")
    tier_distribution: list[TierCount]
    tier_upgrades: int
    tier_downgrades: int


def liability(sums: fg.Sums, ledger: str) -> Liability:
    parts = {part: sums.period(ledger + part) for part in fg.LEDGER_PARTS}
    opening = sum(sign * (sums.total(ledger + part) - parts[part]) for part, sign in fg.LEDGER_PARTS.items())
    closing = opening + sum(sign * parts[part] for part, sign in fg.LEDGER_PARTS.items())
    return Liability(opening=opening, **{part.lower(): value for part, value in parts.items()}, closing=closing,
                     pending=sums.total(ledger + fg.PENDING))


def tier_distribution(ctx: Context, sums: fg.Sums) -> list[TierCount]:
    """The shop's tiers in rank order (the tier plugin's catalogue), then any tier no longer in it."""
    codes = [tier.code for tier in ctx.hook.tier_catalog(ctx=ctx) or ()]
    codes += sorted(m[len(TIER_MEMBERS):] for m in sums if m.startswith(TIER_MEMBERS)
                    and m[len(TIER_MEMBERS):] not in codes and sums.total(m))
    return [TierCount(tier=code, members=sums.total(TIER_MEMBERS + code)) for code in codes]


def asks_for(info: strawberry.Info, name: str) -> bool:
    """Whether the query selects the field `name` of this field's object (directly or in a fragment)."""
    def within(selections) -> bool:
        return any(s.name == name if isinstance(s, SelectedField) else within(s.selections) for s in selections)
    return any(within(field.selections) for field in info.selected_fields)


def programme(ctx: Context, start: datetime, end: datetime, active: bool = True) -> ProgrammeKpis:
    """The figures; `active` False leaves out activeMembers (a distinct count over the period's marks, the
    one figure whose cost grows with the members: skipped when the query does not select it)."""
    declared = declared_figures(ctx.shop)
    sums = fg.sums(ctx, start, end)
    stored_value = None
    if "storedValuePrincipalIssued" in declared:
        stored_value = StoredValueLiability(principal=liability(sums, "storedValuePrincipal"),
                                            bonus=liability(sums, "storedValueBonus"))
    return ProgrammeKpis(
        from_=start, to=end, members=sums.total("newMembers"), new_members=sums.period("newMembers"),
        new_members_previous=sums.previous("newMembers"),
        active_members=fg.active_members(ctx, start, end) if active else None,
        member_orders=sums.period("memberOrders"), member_sales=sums.period("memberSales"),
        store_sales=fg.store_sales(ctx, start, end), coupons_issued=sums.period("couponsIssued"),
        coupons_used=sums.period("couponsUsed"),
        points=liability(sums, "points") if "pointsIssued" in declared else None, stored_value=stored_value,
        tier_distribution=tier_distribution(ctx, sums), tier_upgrades=sums.period("tierUpgrades"),
        tier_downgrades=sums.period("tierDowngrades"))


def programme_kpis(Member):
    async def resolve(info: strawberry.Info, from_: Annotated[datetime, strawberry.argument(name="from")],
                      to: datetime) -> ProgrammeKpis:
        """The programme's figures over [from, to): both on the shop's local hours, at most 400 days apart."""
        context: RequestContext = info.context
        context.require_integrator(allow="read")

        def read(ctx: Context) -> ProgrammeKpis:
            check_range(ctx, from_, to, MAX_RANGE)
            return programme(ctx, from_, to, active=asks_for(info, "activeMembers"))

        return await context.read(read)
    return resolve


# ---------------------------------------------------------------- kpiSeries

KpiGranularity = strawberry.enum(fg.Granularity, name="KpiGranularity",
                                 description="Buckets in the shop's timezone; weeks start on Monday.")


@strawberry.type(description="One bucket of a series: its start (a shop-local hour, day, Monday or month) and "
                             "the metric's value within it and within [from, to).")
class KpiPoint:
    start: datetime
    value: BigInt


def series_metrics(ctx: Context) -> list[str]:
    """The metrics kpiSeries serves: core's, this plugin's, the enabled plugins' and a level per tier."""
    tiers = [TIER_MEMBERS + tier.code for tier in ctx.hook.tier_catalog(ctx=ctx) or ()]
    return list(dict.fromkeys([*declared_figures(ctx.shop), *OWN_FIGURES, *tiers]))


def kpi_series(Member):
    async def resolve(info: strawberry.Info, metric: str, from_: Annotated[datetime, strawberry.argument(name="from")],
                      to: datetime, granularity: Optional[KpiGranularity] = fg.Granularity.DAY) -> list[KpiPoint]:
        """A metric per bucket over [from, to): a sum, a change of a level (points pending, tier members), or
        for activeMembers the distinct members active in the bucket; at most 1,000 buckets."""
        context: RequestContext = info.context
        context.require_integrator(allow="read")
        step = granularity or fg.Granularity.DAY

        def read(ctx: Context) -> list[KpiPoint]:
            known = series_metrics(ctx)
            if metric not in known:
                raise InvalidRange("metric", f"no metric {metric!r}; metrics: {', '.join(known)}")
            check_range(ctx, from_, to)
            starts = fg.periods(from_, to, ctx.shop.timezone, step, MAX_POINTS)
            if len(starts) > MAX_POINTS:
                raise InvalidRange("to", f"more than {MAX_POINTS} {step.value.lower()} buckets between from and "
                                   f"to: at most {MAX_POINTS} points")
            values = fg.series(ctx, metric, starts, from_, to)
            return [KpiPoint(start=start, value=value) for start, value in zip(starts, values, strict=True)]

        return await context.read(read)
    return resolve


# ---------------------------------------------------------------- recordStoreSales


@strawberry.input(description="The shop's whole sales of one local day, members' and guests'.")
class StoreSalesInput:
    date: date = strawberry.field(description="The shop's calendar day, in its timezone; a later report for the "
                                              "same day (with a new key) replaces the earlier one.")
    amount: BigInt
    orders: int
    idempotency_key: str


@strawberry.type
class StoreSalesPayload:
    duplicate: bool
    errors: list[UserError]


def store_sales_handler(input: StoreSalesInput):
    def handle(ctx: Context) -> EventResult:
        if input.amount < 0:
            raise Refused("NEGATIVE_AMOUNT", f"amount is {input.amount}: expected 0 or more", "amount")
        if input.orders < 0:
            raise Refused("NEGATIVE_AMOUNT", f"orders is {input.orders}: expected 0 or more", "orders")
        today = ctx.shop.local(ctx.now).date()
        if input.date > today:
            raise Refused("DATE_IN_FUTURE", f"date is {input.date.isoformat()}, after today in the shop's "
                          f"timezone ({today.isoformat()}): report a day once it has begun", "date")
        row = {"shop": ctx.shop.slug, "day": input.date, "amount": input.amount, "orders": input.orders,
               "reported_at": ctx.now, "event_id": ctx.event_id}
        ctx.conn.execute(upsert(fg.STORE_SALES, update=lambda new: {
            "amount": new.amount, "orders": new.orders, "reported_at": new.reported_at, "event_id": new.event_id},
        ).on(ctx.conn), row)
        return EventResult()
    return handle


def record_store_sales(Member):
    async def resolve(info: strawberry.Info, input: StoreSalesInput) -> StoreSalesPayload:
        """The shop's whole sales of a local day, from the platform: one figure per day, the last one counts."""
        context: RequestContext = info.context
        context.require_integrator()
        result = await context.event("kpis.store_sales", None, {"date": input.date.isoformat(), "amount": input.amount,
                                                                "orders": input.orders},
                                     store_sales_handler(input), idempotency_key=input.idempotency_key)
        return StoreSalesPayload(duplicate=result.duplicate, errors=[UserError.of(e) for e in result.errors])
    return resolve


def contribute(builder) -> None:
    builder.query_field("programme_kpis", programme_kpis)
    builder.query_field("kpi_series", kpi_series)
    builder.mutation_field("record_store_sales", record_store_sales)
