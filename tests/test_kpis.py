"""The kpis plugin (RULES.md 8, operations.graphql): figures counted by the transactions that change them,
folded by a job, read exact before and after the fold; the liability's roll-forward; members' share of
sales; limits and access."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from memberkit.core.models import Coupon, Member, Order
from memberkit.plugins.kpis import figures as kpi_figures
from memberkit.plugins.kpis.models import KpisDelta, KpisHour
from memberkit.plugins.points.models import PointsAccount, PointsEntry
from memberkit.plugins.tiering.models import TierChange, TierMember
from memberkit.testing import TEST_DATABASE_URL, reset_postgres

BERLIN = ZoneInfo("Europe/Berlin")
SHOP = """
[shops.demo]
name = "Demo"
currency = "EUR"
timezone = "Europe/Berlin"
plugins = ["points", "tiering"]

[shops.demo.coupons.TEN_OFF]
title = "10 off"
kind = "FIXED"
value = 1000
valid_days = 30

[shops.demo.settings.points]
pending_days = 2
expiry_months = 1

[shops.demo.settings.points.actions.check_in]
points = 5
daily_cap = 1

[[shops.demo.settings.points.rewards]]
id = "ten-off"
title = "10 off"
cost_points = 50
coupon_template = "TEN_OFF"

[[shops.demo.settings.tiering.tiers]]
code = "REGULAR"
name = "Regular"
rank = 1

[[shops.demo.settings.tiering.tiers]]
code = "SILVER"
name = "Silver"
rank = 2
min_spend = 30000

[[shops.demo.settings.tiering.tiers]]
code = "GOLD"
name = "Gold"
rank = 3
min_spend = 80000
"""

KPIS = """query($from: DateTime!, $to: DateTime!) { programmeKpis(from: $from, to: $to) {
  from to members newMembers newMembersPrevious activeMembers memberOrders memberSales storeSales couponsIssued
  couponsUsed points { opening issued returned adjusted spent expired reversed closing pending }
  storedValue { principal { closing } } tierDistribution { tier members } tierUpgrades tierDowngrades } }"""
SERIES = """query($metric: String!, $from: DateTime!, $to: DateTime!, $granularity: KpiGranularity) {
  kpiSeries(metric: $metric, from: $from, to: $to, granularity: $granularity) { start value } }"""
STORE_SALES = """mutation($input: StoreSalesInput!) { recordStoreSales(input: $input) {
  duplicate errors { code field message } } }"""
CHECK_IN = "mutation { checkIn { errors { code } } }"
REDEEM = """mutation($input: RedeemRewardInput!) { redeemReward(input: $input) { coupon { code } errors { code } } }"""
ADJUST = """mutation($input: AdjustPointsInput!) { adjustPoints(input: $input) { errors { code } } }"""


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN)


def iso(moment: datetime) -> str:
    return moment.isoformat()


def kpis(shop, start: datetime, end: datetime) -> dict:
    return shop.integrator("demo")(KPIS, {"from": iso(start), "to": iso(end)})["programmeKpis"]


def test_an_order_counts_its_sales_orders_and_activity_at_once_and_after_the_fold(memberkit):
    shop = memberkit(SHOP)
    shop.clock.set(local("2026-03-10T09:30:00"))
    member = shop.sign_up("demo", "crm-1")
    shop.pay("demo", member, "o-1", 12000)
    day = (local("2026-03-10T00:00:00"), local("2026-03-11T00:00:00"))
    before_fold = kpis(shop, *day)
    assert before_fold["members"] == before_fold["newMembers"] == 1
    assert (before_fold["memberOrders"], before_fold["memberSales"], before_fold["activeMembers"]) == (1, 12000, 1)
    assert before_fold["points"]["issued"] == 120 and before_fold["points"]["pending"] == 120
    assert before_fold["tierDistribution"] == [{"tier": "REGULAR", "members": 1}, {"tier": "SILVER", "members": 0},
                                               {"tier": "GOLD", "members": 0}]
    fold = shop.run_jobs("demo", force=True)["kpis.fold"]
    assert fold.status == "done" and re.fullmatch(r"\d+ figure\(s\) folded", fold.result)
    with shop.runtime.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(KpisDelta)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(KpisHour)).scalar() > 0
    assert kpis(shop, *day) == before_fold
    only = """query($from: DateTime!, $to: DateTime!) { programmeKpis(from: $from, to: $to) { memberOrders ...A } }
      fragment A on ProgrammeKpis { activeMembers }"""
    asked = shop.integrator("demo")(only, {"from": iso(day[0]), "to": iso(day[1])})["programmeKpis"]
    assert asked == {"memberOrders": 1, "activeMembers": 1}  # selected through a fragment: counted


def test_the_rollups_the_fold_keeps_are_what_the_migration_builds_from_the_hours(memberkit):
    """kpis_0002 rolls up hours folded before it exactly as the fold does since; levels read the same."""
    from alembic import command

    from memberkit import migrate
    from memberkit.plugins.kpis.models import KpisRollup

    shop = memberkit(SHOP)
    members = []
    for n, moment in enumerate(("2026-01-31T23:30:00", "2026-02-01T00:30:00", "2026-03-29T03:10:00",
                                "2026-03-30T12:00:00")):  # across a month's end and summer time in Berlin
        shop.clock.set(local(moment))
        members.append(shop.sign_up("demo", f"crm-{n}"))
        shop.pay("demo", members[-1], f"o-{n}", 1000 * (n + 1))
        shop.run_jobs("demo", force=True)
    period = (local("2026-02-01T00:00:00"), local("2026-03-30T13:00:00"))
    read = kpis(shop, *period)

    def rollups():
        with shop.runtime.db.read() as conn:
            return sorted(conn.execute(select(KpisRollup.span, KpisRollup.start, KpisRollup.metric,
                                              KpisRollup.value)).all())
    kept = rollups()
    assert ("M", datetime(2026, 1, 1, tzinfo=UTC), "memberSales", 3000) in kept  # both in UTC January
    assert ("D", datetime(2026, 3, 29, tzinfo=UTC), "memberSales", 3000) in kept
    command.downgrade(migrate.alembic_config(shop.runtime), "kpis_0001")
    migrate.upgrade(shop.runtime)
    assert rollups() == kept
    assert kpis(shop, *period) == read and (read["members"], read["memberSales"]) == (4, 9000)


def test_figures_not_folded_yet_survive_packing_them_one_row_per_transaction(memberkit):
    """kpis_0003 packs a transaction's figures into one row; rows written one per figure before it (and
    back, on a downgrade) read the same, before and after the fold."""
    from alembic import command

    from memberkit import migrate

    shop = memberkit(SHOP)
    shop.clock.set(local("2026-03-29T01:30:00"))  # the last hour before summer time in Berlin
    member = shop.sign_up("demo", "crm-1")
    shop.pay("demo", member, "o-1", 12000)
    period = (local("2026-03-29T00:00:00"), local("2026-03-30T00:00:00"))
    read = kpis(shop, *period)
    assert (read["memberOrders"], read["memberSales"], read["activeMembers"]) == (1, 12000, 1)
    command.downgrade(migrate.alembic_config(shop.runtime), "kpis_0002")
    with shop.runtime.db.read() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM kpis_delta WHERE metric = 'active'")).scalar() == 1
    migrate.upgrade(shop.runtime)
    with shop.runtime.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(KpisDelta)).scalar() > 1  # one per old row
    assert kpis(shop, *period) == read
    shop.run_jobs("demo", force=True)
    assert kpis(shop, *period) == read


# ---------------------------------------------------------------- every figure against a brute force


RANKS = {"REGULAR": 1, "SILVER": 2, "GOLD": 3}
START = local("2026-03-27T22:20:00")  # two days before summer time begins in Berlin (29 March, 02:00 -> 03:00)
STEP = st.one_of(
    st.tuples(st.just("sign_up"), st.integers(0, 60)),  # joinedAt, hours ago
    st.tuples(st.just("pay"), st.integers(0, 5), st.integers(1, 500), st.integers(0, 40), st.booleans()),
    st.tuples(st.just("refund"), st.integers(0, 20), st.integers(1, 100)),
    st.tuples(st.just("check_in"), st.integers(0, 5)),
    st.tuples(st.just("redeem"), st.integers(0, 5)),
    st.tuples(st.just("adjust"), st.integers(0, 5), st.integers(-60, 60).filter(bool)),
    st.tuples(st.just("jobs")),
    st.tuples(st.just("snapshot")),
)
HISTORY = st.lists(st.tuples(st.sampled_from([0, 600, 2400, 3 * 3600, 11 * 3600, 30 * 3600, 9 * 86400]), STEP),
                   min_size=1, max_size=22)
METRICS = ["newMembers", "activeMembers", "memberOrders", "memberSales", "couponsIssued", "couponsUsed",
           "pointsIssued", "pointsSpent", "pointsExpired", "pointsAdjusted", "pointsReversed", "tierUpgrades",
           "tierDowngrades", "tierMembers:SILVER", "pointsPending"]


class Brute:
    """Every figure computed from the raw facts: core's members, orders and coupons, the points ledger, tier
    history, and the refunds the history made (core keeps only an order's refunded total)."""

    def __init__(self, shop, refunds):
        with shop.runtime.db.read() as conn:
            self.joined = conn.execute(select(Member.id, Member.joined_at)).all()
            self.orders = conn.execute(select(Order.member_id, Order.paid_at, Order.total)).all()
            self.coupons = conn.execute(select(Coupon.issued_at, Coupon.used_at, Coupon.status)).all()
            self.entries = conn.execute(select(PointsEntry.member_id, PointsEntry.created_at, PointsEntry.delta,
                                               PointsEntry.reason, PointsEntry.rule)).all()
            self.changes = conn.execute(select(TierChange.from_code, TierChange.to_code, TierChange.created_at)).all()
        self.refunds = refunds

    def active(self, a, b) -> set[str]:
        return ({o.member_id for o in self.orders if a <= o.paid_at < b}
                | {e.member_id for e in self.entries if e.rule == "action:check_in" and a <= e.created_at < b})

    def value(self, metric: str, a: datetime, b: datetime) -> int:
        moved = [c for c in self.changes if c.from_code and c.from_code != c.to_code and a <= c.created_at < b]
        parts = {"pointsIssued": ("EARN", 1), "pointsSpent": ("SPEND", -1), "pointsExpired": ("EXPIRE", -1),
                 "pointsReversed": ("REFUND", -1), "pointsAdjusted": ("ADJUST", 1)}
        if metric in parts:
            reason, sign = parts[metric]
            return sum(sign * e.delta for e in self.entries if e.reason == reason and a <= e.created_at < b)
        return {
            "newMembers": lambda: sum(a <= m.joined_at < b for m in self.joined),
            "activeMembers": lambda: len(self.active(a, b)),
            "memberOrders": lambda: sum(a <= o.paid_at < b for o in self.orders),
            "memberSales": lambda: (sum(o.total for o in self.orders if a <= o.paid_at < b)
                                    - sum(amount for at, amount in self.refunds if a <= at < b)),
            "couponsIssued": lambda: sum(a <= c.issued_at < b for c in self.coupons),
            "couponsUsed": lambda: sum(c.status == "USED" and a <= c.used_at < b for c in self.coupons),
            "tierUpgrades": lambda: sum(RANKS[c.to_code] > RANKS[c.from_code] for c in moved),
            "tierDowngrades": lambda: sum(RANKS[c.to_code] < RANKS[c.from_code] for c in moved),
        }[metric]()

    def programme(self, a: datetime, b: datetime) -> dict:
        opening = sum(e.delta for e in self.entries if e.created_at < a)
        parts = {p: self.value(f"points{p.title()}", a, b) for p in ("issued", "adjusted", "spent", "expired",
                                                                      "reversed")}
        closing = opening + parts["issued"] + parts["adjusted"] - parts["spent"] - parts["expired"] - parts["reversed"]
        assert closing == sum(e.delta for e in self.entries if e.created_at < b)
        names = ["newMembers", "activeMembers", "memberOrders", "memberSales", "couponsIssued", "couponsUsed",
                 "tierUpgrades", "tierDowngrades"]
        return {"from": iso(a.astimezone(UTC)), "to": iso(b.astimezone(UTC)),
                "members": sum(m.joined_at < b for m in self.joined),
                "newMembersPrevious": self.value("newMembers", a - (b - a), a), "storeSales": None,
                "storedValue": None, **{n: self.value(n, a, b) for n in names},
                "points": {"opening": opening, **parts, "returned": 0, "closing": closing}}


def bucket_starts(a: datetime, b: datetime, granularity: str) -> list[datetime]:
    """Shop-local period starts by walking the calendar (independently of the plugin's arithmetic)."""
    if granularity == "HOUR":
        return [a + timedelta(hours=n) for n in range(int((b - a) / timedelta(hours=1)))]
    day = a.astimezone(BERLIN).date()
    day = day - timedelta(days=day.weekday()) if granularity == "WEEK" else day
    day = day.replace(day=1) if granularity == "MONTH" else day
    starts = []
    while (start := datetime(day.year, day.month, day.day, tzinfo=BERLIN).astimezone(UTC)) < b:
        starts.append(start)
        day = (day + timedelta(days={"DAY": 1, "WEEK": 7}[granularity]) if granularity != "MONTH"
               else date(day.year + day.month // 12, day.month % 12 + 1, 1))
    return starts


def play(shop, history) -> tuple[list, list]:
    """Run a history; returns the refunds made and snapshots (an hour's start, the balances and tiers then)."""
    integrator, members, orders, refunds, snapshots = shop.integrator("demo"), [], [], [], []
    for n, (wait, step) in enumerate(history):
        shop.clock.advance(seconds=wait)
        now = shop.clock.now()
        kind, *args = step
        if kind == "sign_up":
            members.append(shop.sign_up("demo", f"crm-{n}", joinedAt=iso(now - timedelta(hours=args[0]))))
        elif not members:
            continue
        elif kind == "pay":
            member = members[args[0] % len(members)]
            with shop.runtime.db.read() as conn:
                codes = conn.execute(select(Coupon.code).where(Coupon.member_id == member,
                                                               Coupon.status == "AVAILABLE")).scalars().all()
            paid = shop.pay("demo", member, f"o-{n}", args[1] * 100, paidAt=iso(now - timedelta(hours=args[2])),
                            couponCodes=codes[:1] if args[3] else [])
            assert paid["errors"] == []
            orders.append([f"o-{n}", args[1] * 100])
        elif kind == "refund" and orders:
            order = orders[args[0] % len(orders)]
            amount = order[1] * args[1] // 100
            if amount:
                assert shop.refund("demo", order[0], f"r-{n}", amount)["errors"] == []
                order[1] -= amount
                refunds.append((now, amount))
        elif kind == "check_in":
            shop.member("demo", members[args[0] % len(members)])(CHECK_IN)
        elif kind == "redeem":
            shop.member("demo", members[args[0] % len(members)])(REDEEM, {"input": {"rewardId": "ten-off",
                                                                                    "idempotencyKey": f"r-{n}"}})
        elif kind == "adjust":
            integrator(ADJUST, {"input": {"memberId": members[args[0] % len(members)], "delta": args[1],
                                          "reason": "goodwill", "idempotencyKey": f"a-{n}"}})
        elif kind == "jobs":
            shop.run_jobs("demo", force=True)
        elif kind == "snapshot":  # the next local hour's start: what the ledger and tiers hold then
            shop.clock.set(kpi_figures.hour_start(now, BERLIN) + timedelta(hours=1))
            with shop.runtime.db.read() as conn:
                held = conn.execute(select(func.coalesce(func.sum(PointsAccount.balance + PointsAccount.held
                                                                  + PointsAccount.pending), 0),
                                           func.coalesce(func.sum(PointsAccount.pending), 0))).one()
                tiers = dict(conn.execute(select(TierMember.tier_code, func.count()).group_by(TierMember.tier_code))
                             .all())
            snapshots.append((shop.clock.now(), held[0], held[1], [tiers.get(code, 0) for code in RANKS]))
    return refunds, snapshots


@settings(max_examples=int(__import__("os").environ.get("KPIS_EXAMPLES", "20")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(history=HISTORY, data=st.data())
def test_every_figure_matches_a_brute_force_over_random_histories(make_runtime, make_api, history, data):
    from memberkit.testing import MemberkitClock, Programme

    runtime = make_runtime(SHOP)
    if TEST_DATABASE_URL:
        reset_postgres(runtime.db)
    shop = Programme(runtime, make_api(runtime), MemberkitClock())
    shop.clock.set(START)
    refunds, snapshots = play(shop, history)
    end = kpi_figures.hour_start(shop.clock.now(), BERLIN) + timedelta(hours=2)
    first = kpi_figures.hour_start(START, BERLIN) - timedelta(hours=72)
    hours = int((end - first) / timedelta(hours=1))
    checks = [sorted(data.draw(st.lists(st.integers(0, hours), min_size=2, max_size=2, unique=True)))
              for _ in range(2)]
    series = [(data.draw(st.sampled_from(METRICS)), data.draw(st.sampled_from(["HOUR", "DAY", "WEEK", "MONTH"])))
              for _ in range(2)]
    for folded in (False, True):
        if folded:
            shop.run_jobs("demo", force=True)
        brute = Brute(shop, refunds)
        for low, high in checks:
            a, b = first + timedelta(hours=low), first + timedelta(hours=high)
            got = kpis(shop, a, b)
            tiers, got["tierDistribution"] = got.pop("tierDistribution"), None
            pending = got["points"].pop("pending")
            assert got == {**brute.programme(a, b), "tierDistribution": None}
            assert pending >= 0
        for metric, granularity in series:
            a, b = first + timedelta(hours=checks[0][0]), first + timedelta(hours=checks[0][1])
            if granularity == "HOUR" and b - a > timedelta(hours=999):
                continue
            starts = bucket_starts(a, b, granularity)
            got = shop.integrator("demo")(SERIES, {"metric": metric, "from": iso(a), "to": iso(b),
                                                   "granularity": granularity})["kpiSeries"]
            assert [datetime.fromisoformat(p["start"]) for p in got] == starts
            if metric in ("tierMembers:SILVER", "pointsPending"):
                continue  # levels: checked against the snapshots below
            ends = [*starts[1:], b]
            assert [int(p["value"]) for p in got] == [brute.value(metric, max(s, a), min(e, b))
                                                      for s, e in zip(starts, ends, strict=True)], (metric, granularity)
        for moment, closing, pending, tiers in snapshots:  # a closed period's liability never changes
            got = kpis(shop, moment - timedelta(hours=1), moment)
            assert (got["points"]["closing"], got["points"]["pending"]) == (closing, pending)
            assert [t["members"] for t in got["tierDistribution"]] == tiers
    with shop.runtime.db.read() as conn:  # and now: closing is the sum of the balances
        now_closing = conn.execute(select(func.coalesce(func.sum(PointsAccount.balance + PointsAccount.held
                                                                 + PointsAccount.pending), 0))).scalar()
    assert kpis(shop, end - timedelta(hours=1), end)["points"]["closing"] == now_closing


# ---------------------------------------------------------------- store sales, limits, access, cost


SET_TIER = """mutation($input: SetMemberTierInput!) { setMemberTier(input: $input) { errors { code } } }"""


def test_a_hand_set_tier_that_lapsed_before_an_order_moves_the_tier_counts_once(memberkit):
    """The tier counted last is the one recorded last: an order after a DIAMOND-like override lapsed (not yet
    recorded by the evaluation) moves the member from GOLD, and the evaluation then moves nothing twice."""
    shop = memberkit(SHOP)
    start = local("2026-03-10T09:00:00")
    shop.clock.set(start)
    member = shop.sign_up("demo", "m-1")
    until = start + timedelta(hours=2)
    assert shop.integrator("demo")(SET_TIER, {"input": {"memberId": member, "tierCode": "GOLD", "reason": "vip",
                                                        "expiresAt": iso(until)}})["setMemberTier"]["errors"] == []
    shop.clock.set(until + timedelta(minutes=10))
    assert shop.pay("demo", member, "o-1", 40000)["errors"] == []  # earns SILVER; the GOLD it had has lapsed
    shop.run_jobs("demo", force=True)
    figures = kpis(shop, start, start + timedelta(hours=4))
    assert {row["tier"]: row["members"] for row in figures["tierDistribution"]} == {"REGULAR": 0, "SILVER": 1,
                                                                                  "GOLD": 0}
    assert (figures["tierUpgrades"], figures["tierDowngrades"]) == (1, 1)  # up to GOLD by hand, down to SILVER


def test_store_sales_one_figure_per_day_the_last_report_counts_and_a_retry_changes_nothing(memberkit):
    shop = memberkit(SHOP)
    shop.clock.set(local("2026-10-26T12:00:00"))
    integrator = shop.integrator("demo")

    def report(day: str, amount: int, key: str, orders: int = 10) -> dict:
        return integrator(STORE_SALES, {"input": {"date": day, "amount": amount, "orders": orders,
                                                  "idempotencyKey": key}})["recordStoreSales"]

    week = (local("2026-10-19T00:00:00"), local("2026-10-26T00:00:00"))
    assert kpis(shop, *week)["storeSales"] is None
    assert report("2026-10-24", 50000, "k-1") == {"duplicate": False, "errors": []}
    assert report("2026-10-25", 70000, "k-2")["errors"] == []  # the day of 25 hours (summer time ends)
    assert report("2026-10-24", 50000, "k-1") == {"duplicate": True, "errors": []}
    assert report("2026-10-24", 60000, "k-3")["errors"] == []  # a later report replaces the earlier
    assert kpis(shop, *week)["storeSales"] == 130000
    assert kpis(shop, local("2026-10-25T00:00:00"), local("2026-10-25T23:00:00"))["storeSales"] is None  # part
    assert report("2026-10-24", 1, "k-1")["errors"][0]["code"] == "IDEMPOTENCY_CONFLICT"
    for day, amount, orders, code, field in (("2026-10-27", 1, 1, "DATE_IN_FUTURE", "date"),
                                             ("2026-10-20", -1, 1, "NEGATIVE_AMOUNT", "amount"),
                                             ("2026-10-20", 1, -1, "NEGATIVE_AMOUNT", "orders")):
        [error] = report(day, amount, f"bad-{field}-{code}", orders)["errors"]
        assert (error["code"], error["field"]) == (code, field), error
    assert kpis(shop, *week)["storeSales"] == 130000


def test_ranges_metrics_and_points_are_checked_and_named(memberkit):
    shop = memberkit(SHOP)
    shop.clock.set(local("2026-10-26T12:00:00"))
    integrator = shop.integrator("demo")

    def refusal(query: str, **variables) -> str:
        [error] = integrator.errors(query, variables)
        return error["message"]

    day = {"from": "2026-10-25T00:00:00+02:00", "to": "2026-10-26T00:00:00+01:00"}
    assert "from: must carry a UTC offset" in refusal(KPIS, **{**day, "from": "2026-10-25T00:00:00"})
    assert "to: 2026-10-26T00:30:00+01:00 is not the start of an hour" in refusal(
        KPIS, **{**day, "to": "2026-10-26T00:30:00+01:00"})
    assert "to: " in refusal(KPIS, **{**day, "to": day["from"]}) and "is not after from" in refusal(
        KPIS, **{**day, "to": day["from"]})
    assert "at most 400 days" in refusal(KPIS, **{**day, "from": "2024-10-25T00:00:00+02:00"})
    message = refusal(SERIES, metric="revenue", **day)
    assert "metric: no metric 'revenue'; metrics: couponsIssued, couponsUsed" in message
    assert "pointsIssued" in message and "tierMembers:GOLD" in message
    assert "at most 1000 points" in refusal(SERIES, metric="newMembers", granularity="HOUR",
                                            **{**day, "from": "2026-08-25T00:00:00+02:00"})
    assert len(integrator(SERIES, {"metric": "newMembers", "granularity": "HOUR", **day})["kpiSeries"]) == 25


def test_kpis_need_the_secret_key(memberkit):
    shop = memberkit(SHOP)
    member = shop.sign_up("demo", "crm-1")
    day = {"from": "2026-10-25T00:00:00+02:00", "to": "2026-10-26T00:00:00+01:00"}
    for client in (shop.storefront("demo"), shop.member("demo", member)):
        for query, variables in ((KPIS, day), (SERIES, {"metric": "newMembers", **day}),
                                 (STORE_SALES, {"input": {"date": "2026-10-25", "amount": 1, "orders": 1,
                                                          "idempotencyKey": "k"}})):
            [error] = client.errors(query, variables)
            assert error["extensions"]["code"] == "FORBIDDEN"


def test_the_hour_repeated_when_summer_time_ends_is_two_buckets_and_one_day(memberkit):
    shop = memberkit(SHOP)
    first, second = datetime(2026, 10, 25, 0, 30, tzinfo=UTC), datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    assert [m.astimezone(BERLIN).strftime("%H:%M") for m in (first, second)] == ["02:30", "02:30"]
    for n, moment in enumerate((first, second)):
        shop.clock.set(moment)
        shop.sign_up("demo", f"crm-{n}")
    integrator = shop.integrator("demo")
    day = {"from": "2026-10-25T00:00:00+02:00", "to": "2026-10-26T00:00:00+01:00", "metric": "newMembers"}
    hours = integrator(SERIES, {**day, "granularity": "HOUR"})["kpiSeries"]
    assert [p["start"] for p in hours if p["value"]] == ["2026-10-25T00:00:00+00:00", "2026-10-25T01:00:00+00:00"]
    assert integrator(SERIES, day)["kpiSeries"] == [{"start": "2026-10-24T22:00:00+00:00", "value": 2}]


@pytest.mark.skipif(bool(TEST_DATABASE_URL), reason="counts SQLite's statements (the same plan on both)")
def test_the_kpis_plugin_adds_one_insert_to_an_order(memberkit, monkeypatch):
    shop = memberkit(SHOP)
    shop.clock.set(local("2026-03-10T09:30:00"))
    member = shop.sign_up("demo", "crm-1")
    shop.pay("demo", member, "o-1", 12000)

    def statements_of_an_order(order_id: str) -> list[str]:
        seen: list[str] = []
        with shop.runtime.db.write() as conn:  # the process's one writer: traced from now on
            conn.connection.driver_connection.set_trace_callback(seen.append)
        seen.clear()
        shop.pay("demo", member, order_id, 1000)
        return seen

    counted = statements_of_an_order("o-2")
    monkeypatch.setattr(kpi_figures, "record", lambda ctx, figures: None)
    assert len(counted) - len(statements_of_an_order("o-3")) == 1
    assert [sql.split("(")[0].strip() for sql in counted if "kpis_" in sql] == ["INSERT INTO kpis_delta"]


def test_a_plugins_figures_reach_figures_recorded_once_per_transaction_and_never_from_a_refusal(memberkit):
    from memberkit.plugin import Plugin, Refused, hookimpl

    seen: list[list] = []

    class Mirror:
        plugin = Plugin("mirror", figures=("mirrored",))

        @staticmethod
        @hookimpl
        def order_paid(ctx, order):
            ctx.count("mirrored", order.total, at=order.paid_at)
            if order.total == 666:
                raise Refused("NO", "no")

        @staticmethod
        @hookimpl
        def figures_recorded(ctx, figures):
            seen.append(sorted((f.metric, f.value) for f in figures))

    shop = memberkit(SHOP.replace('plugins = ["points", "tiering"]', 'plugins = ["points", "tiering", "mirror"]'),
                     plugins=[Mirror])
    shop.clock.set(local("2026-03-10T09:30:00"))
    member = shop.sign_up("demo", "crm-1")
    shop.pay("demo", member, "o-1", 12000)
    assert shop.pay("demo", member, "o-2", 666)["errors"][0]["code"] == "NO"
    assert seen[-1] == [("active", 1), ("memberOrders", 1), ("memberSales", 12000), ("mirrored", 12000),
                        ("pointsIssued", 120), ("pointsPending", 120)] and len(seen) == 2
    day = {"from": "2026-03-10T00:00:00+01:00", "to": "2026-03-11T00:00:00+01:00", "metric": "mirrored"}
    assert shop.integrator("demo")(SERIES, day)["kpiSeries"] == [{"start": "2026-03-09T23:00:00+00:00",
                                                                    "value": 12000}]


def test_the_kpis_command_prints_the_change_against_the_period_before_and_writes_csv(memberkit, tmp_path):
    import csv

    from typer.testing import CliRunner

    from memberkit.cli import app

    shop = memberkit(SHOP)
    integrator = shop.integrator("demo")
    shop.clock.set(local("2026-03-05T10:00:00"))
    first = shop.sign_up("demo", "crm-1")
    shop.clock.set(local("2026-03-12T10:00:00"))
    shop.sign_up("demo", "crm-2")
    shop.sign_up("demo", "crm-3")
    shop.pay("demo", first, "o-1", 20000)
    shop.clock.set(local("2026-03-16T08:00:00"))  # default: 9 March 09:00 to 16 March 09:00 (the hour now ends)
    for day in range(9, 16):
        integrator(STORE_SALES, {"input": {"date": f"2026-03-{day:02}", "amount": 10000, "orders": 3,
                                           "idempotencyKey": f"s-{day}"}})
    out = tmp_path / "kpis.csv"
    result = CliRunner().invoke(app, ["kpis", "--shop", "demo", "--csv", str(out), "--config",
                                      str(tmp_path / "plugins-0.toml")],
                                env={"MEMBERKIT_DATABASE_URL": shop.runtime.db.url})
    assert result.exit_code == 0, result.output
    assert "newMembers" in result.output and "+100.0%" in result.output
    rows = {row["figure"]: row for row in csv.DictReader(out.open())}
    assert (rows["newMembers"]["period"], rows["newMembers"]["previous"], rows["newMembers"]["change"]) == (
        "2", "1", "100.0")
    assert rows["members' share of sales %"]["period"] == "33.3"  # 20,000 of the 60,000 of 10-15 March, whole days
    assert rows["active share %"]["period"] == "33.3" and rows["storeSales"]["previous"] == ""
    bad = CliRunner().invoke(app, ["kpis", "--shop", "demo", "--from", "2026-03-09T00:30:00+01:00", "--config",
                                   str(tmp_path / "plugins-0.toml")],
                             env={"MEMBERKIT_DATABASE_URL": shop.runtime.db.url})
    assert bad.exit_code == 1 and "from: 2026-03-09T00:30:00+01:00 is not the start of an hour" in bad.output
