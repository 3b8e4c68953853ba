"""The kpis plugin (RULES.md 8, operations.graphql): figures counted by the transactions that change them,
folded by a job, read exact before and after the fold; the liability's roll-forward; members' share of
sales; limits and access."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from memberkit.plugins.kpis import figures as kpi_figures
from memberkit.plugins.kpis.models import KpisDelta, KpisHour
from memberkit.plugins.points.models import PointsAccount, PointsEntry
from memberkit.plugins.tiering.models import TierChange, TierMember
from memberkit.testing import TEST_DATABASE_URL, reset_postgres
from memberkit.core.models import Coupon

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
