"""The points plugin with the demo shop's numbers: earning, bonuses, expiry, refunds, rewards, actions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from memberkit import jobs
from memberkit.core import clock
from memberkit.plugins.points.models import PointsAccount, PointsEntry, PointsLot
from tests.conftest import ORDER_PAID, ORDER_REFUNDED, ROOT, sign_up

DEMO = (ROOT / "plugins.toml").read_text()

POINTS = """
query($id: ID) { member(id: $id) { points {
  balance pending lifetimeEarned expiring { points expiresAt }
  history(first: 50) { edges { node { delta reason rule orderId } } pageInfo { hasNextPage endCursor } }
} } }"""


@pytest.fixture
def demo(make_runtime, make_api):
    runtime = make_runtime(DEMO)
    api = make_api(runtime)
    return runtime, api, api.key("demo")


def account(api, key, member_id) -> dict:
    return api(POINTS, {"id": member_id}, key)["member"]["points"]


def pay(api, key, member_id, order_id, total, lines=None, **extra):
    payload = api(ORDER_PAID, {"input": {"orderId": order_id, "memberId": member_id, "total": total,
                                         "lines": lines, **extra}}, key)["recordOrderPaid"]
    assert payload["errors"] == [], payload
    return [(e["rule"], e["description"]) for e in payload["effects"] if e["plugin"] == "points"]


def refund(api, key, order_id, refund_id, amount):
    payload = api(ORDER_REFUNDED, {"input": {"orderId": order_id, "refundId": refund_id, "amount": amount}},
                  key)["recordOrderRefunded"]
    assert payload["errors"] == [], payload
    return [(e["kind"], e["description"]) for e in payload["effects"] if e["plugin"] == "points"]


def test_an_order_earns_one_point_per_yuan_paid_rounded_down(demo):
    runtime, api, key = demo
    member_id = sign_up(api, key, "u-1")
    assert pay(api, key, member_id, "o-1", 49999) == [("base", "points +499 (1 per 1.00 paid)")]
    points = account(api, key, member_id)
    assert (points["balance"], points["pending"], points["lifetimeEarned"]) == (499, 0, 499)
    assert points["history"]["edges"][0]["node"] == {"delta": 499, "reason": "EARN", "rule": "base", "orderId": "o-1"}


def test_threshold_bonus_and_milestones_each_their_own_effect(demo):
    runtime, api, key = demo
    member_id = sign_up(api, key, "u-1")
    assert pay(api, key, member_id, "o-1", 100000) == [
        ("base", "points +1000 (1 per 1.00 paid)"), ("threshold:100000", "points +200 (orders of 1000.00 or more)")]
    effects = pay(api, key, member_id, "o-2", 1950000)  # lifetime 20,500 yuan: passes 10,000 and 20,000 at once
    assert [rule for rule, _ in effects] == ["base", "threshold:100000", "milestone:1000000", "milestone:2000000"]
    assert account(api, key, member_id)["balance"] == 1000 + 200 + 19500 + 200 + 5000 + 10000
    effects = pay(api, key, member_id, "o-3", 100)
    assert [rule for rule, _ in effects] == ["base"]  # milestones are paid once each


SHOP = """
[shops.s]
name = "S"
currency = "CNY"
timezone = "Asia/Shanghai"
plugins = PLUGINS

[shops.s.coupons.TEN]
title = "10 off"
kind = "FIXED"
value = 1000

[shops.s.settings.points]
category_multipliers = { shoes = 200 }
pending_days = PENDING
allow_negative_balance = NEGATIVE
actions = { check_in = { points = 10, daily_cap = 1 }, review = { points = 20, daily_cap = 3 } }
rewards = [{ id = "ten", title = "10 off", cost_points = 500, coupon_template = "TEN" }]

[[shops.s.settings.points.window_multipliers]]
name = "double-11"
starts_at = 2026-11-11T00:00:00+08:00
ends_at = 2026-11-12T00:00:00+08:00
multiplier_percent = 300
categories = ["bags"]
"""


@pytest.fixture
def shop(make_runtime, make_api, add_plugin):
    """A shop with its own points settings: `shop(pending=0, negative=False, tier=False)`."""
    from tests.recording_plugins import gold_tier

    def make(pending: int = 0, negative: bool = False, tier: bool = False):
        if tier:
            add_plugin(gold_tier)
        names = '["points", "gold"]' if tier else '["points"]'
        runtime = make_runtime(SHOP.replace("PLUGINS", names).replace("PENDING", str(pending))
                               .replace("NEGATIVE", str(negative).lower()))
        api = make_api(runtime)
        return runtime, api, api.key("s")

    return make


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_category_window_and_tier_multipliers_apply_to_their_lines_share(shop):
    runtime, api, key = shop(tier=True)
    member_id = sign_up(api, key, "u-1")
    lines = [{"sku": "S1", "quantity": 1, "unitPrice": 40000, "category": "shoes"},
             {"sku": "B1", "quantity": 1, "unitPrice": 40000, "category": "bags"},
             {"sku": "T1", "quantity": 1, "unitPrice": 20000, "category": "tea"}]
    # 800 yuan charged for 1,000 at list price: each line earns on its share of what was paid.
    effects = pay(api, key, member_id, "o-1", 80000, lines, paidAt="2026-11-11T20:00:00+08:00")
    assert effects == [("base", "points +800 (1 per 1.00 paid)"), ("category:shoes", "points +320 (shoes at 200%)"),
                       ("window:double-11", "points +640 (double-11 at 300%)"),
                       ("tier:GOLD", "points +400 (Gold earns 1.5x)")]
    assert account(api, key, member_id)["balance"] == 800 + 320 + 640 + 400
    effects = pay(api, key, member_id, "o-2", 80000, lines, paidAt="2026-11-12T00:00:00+08:00")
    assert "window:double-11" not in [rule for rule, _ in effects]  # the window has ended


def test_pending_points_wait_then_become_spendable(shop):
    runtime, api, key = shop(pending=7)
    member_id = sign_up(api, key, "u-1")
    with clock.frozen(at("2026-03-01T10:00:00+08:00")):
        pay(api, key, member_id, "o-1", 100000, paidAt="2026-03-01T10:00:00+08:00")
        points = account(api, key, member_id)
        assert (points["balance"], points["pending"]) == (0, 1000)
        spent = pay(api, key, member_id, "o-2", 0, pointsRedeemed=100)
        assert spent == [("order", "100 of 100 points were no longer there")]
    with clock.frozen(at("2026-03-08T10:00:01+08:00")):
        points = account(api, key, member_id)  # read as of now, before any job ran
        assert (points["balance"], points["pending"]) == (1000, 0)
        assert [r.status for r in jobs.run_due(runtime, force=True) if r.job == "points.settle_lots"] == ["done"]
        with runtime.db.read() as conn:
            assert conn.execute(select(PointsAccount.balance, PointsAccount.pending)).one() == (1000, 0)


def test_points_expire_at_the_end_of_the_twelfth_month(demo):
    runtime, api, key = demo
    member_id = sign_up(api, key, "u-1")
    with clock.frozen(at("2025-01-15T12:00:00+08:00")):
        pay(api, key, member_id, "o-1", 30000)
    with clock.frozen(at("2025-03-02T12:00:00+08:00")):
        pay(api, key, member_id, "o-2", 10000)
        expiring = account(api, key, member_id)["expiring"]
        assert expiring == [{"points": 300, "expiresAt": "2026-01-31T16:00:00+00:00"},  # 1 Feb 00:00 Shanghai
                            {"points": 100, "expiresAt": "2026-03-31T16:00:00+00:00"}]
    with clock.frozen(at("2026-01-31T23:59:59+08:00")):
        assert account(api, key, member_id)["balance"] == 400
    with clock.frozen(at("2026-02-01T00:00:00+08:00")):
        assert account(api, key, member_id)["balance"] == 100
        jobs.run_due(runtime, force=True)
        jobs.run_due(runtime, force=True)  # a repeat expires nothing twice
        history = account(api, key, member_id)["history"]["edges"]
        assert [(e["node"]["delta"], e["node"]["reason"]) for e in history] == [(-300, "EXPIRE"), (100, "EARN"),
                                                                                 (300, "EARN")]


def test_spending_takes_the_soonest_expiring_lots_first(demo):
    runtime, api, key = demo
    member_id = sign_up(api, key, "u-1")
    with clock.frozen(at("2025-01-15T12:00:00+08:00")):
        pay(api, key, member_id, "o-1", 30000)
    with clock.frozen(at("2025-06-15T12:00:00+08:00")):
        pay(api, key, member_id, "o-2", 50000)
        pay(api, key, member_id, "o-3", 0, pointsRedeemed=400)
    with runtime.db.read() as conn:
        lots = conn.execute(select(PointsLot.order_id, PointsLot.remaining).order_by(PointsLot.id)).all()
    assert lots == [("o-1", 0), ("o-2", 400)]


def test_refunds_take_back_what_the_order_granted_in_proportion(demo):
    runtime, api, key = demo
    member_id = sign_up(api, key, "u-1")
    pay(api, key, member_id, "o-1", 120000)  # 1,200 + 200 threshold bonus
    assert refund(api, key, "o-1", "r-1", 30000) == [("POINTS_REVERSED", "points -350 (refund of 300.00)")]
    assert refund(api, key, "o-1", "r-2", 90000) == [("POINTS_REVERSED", "points -1050 (refund of 900.00)")]
    assert account(api, key, member_id)["balance"] == 0


def test_refund_of_spent_points_records_the_shortfall(demo):
    runtime, api, key = demo
    member_id = sign_up(api, key, "u-1")
    pay(api, key, member_id, "o-1", 50000)
    pay(api, key, member_id, "o-2", 0, pointsRedeemed=400)
    assert refund(api, key, "o-1", "r-1", 50000) == [
        ("POINTS_REVERSED", "points -100 (refund of 500.00)"),
        ("POINTS_SHORTFALL", "400 points already spent: shortfall recorded")]
    assert account(api, key, member_id)["balance"] == 0
    with runtime.db.read() as conn:
        assert conn.execute(select(PointsAccount.shortfall)).scalar() == 400


def test_refund_of_spent_points_may_go_negative_where_the_shop_allows(shop):
    runtime, api, key = shop(negative=True)
    member_id = sign_up(api, key, "u-1")
    pay(api, key, member_id, "o-1", 50000)
    pay(api, key, member_id, "o-2", 0, pointsRedeemed=400)
    assert refund(api, key, "o-1", "r-1", 50000) == [("POINTS_REVERSED", "points -500 (refund of 500.00)")]
    assert account(api, key, member_id)["balance"] == -400
    pay(api, key, member_id, "o-3", 100000)  # new points repay the debt first
    assert account(api, key, member_id)["balance"] == 600


REWARDS = "{ rewards { id title costPoints } }"
REDEEM = """mutation($input: RedeemRewardInput!) { redeemReward(input: $input) {
  coupon { code title value source } pointsSpent duplicate member { points { balance } } errors { code } } }"""


def token_for(api, key, member_id) -> str:
    query = "mutation($m: ID!) { createMemberToken(memberId: $m) { token } }"
    return api(query, {"m": member_id}, key)["createMemberToken"]["token"]


def test_rewards_buy_coupons_into_the_wallet(demo):
    runtime, api, key = demo
    member_id = sign_up(api, key, "u-1")
    token = token_for(api, key, member_id)
    assert api(REWARDS, key=token)["rewards"] == [
        {"id": "coupon-10", "title": "10-yuan no-threshold coupon", "costPoints": 500},
        {"id": "coupon-50-off-300", "title": "50 off orders of 300", "costPoints": 1000}]
    pay(api, key, member_id, "o-1", 120000)  # 1,400 points
    first = api(REDEEM, {"input": {"rewardId": "coupon-50-off-300", "idempotencyKey": "k-1"}}, token)["redeemReward"]
    assert first["errors"] == [] and first["pointsSpent"] == 1000 and first["duplicate"] is False
    assert first["coupon"]["value"] == 5000 and first["coupon"]["source"] == "points:reward:coupon-50-off-300"
    assert first["member"]["points"]["balance"] == 400
    again = api(REDEEM, {"input": {"rewardId": "coupon-50-off-300", "idempotencyKey": "k-1"}}, token)["redeemReward"]
    assert again["duplicate"] is True and again["coupon"]["code"] == first["coupon"]["code"]
    short = api(REDEEM, {"input": {"rewardId": "coupon-10", "idempotencyKey": "k-2"}}, token)["redeemReward"]
    assert short["errors"] == [{"code": "INSUFFICIENT_POINTS"}] and short["coupon"] is None
    unknown = api(REDEEM, {"input": {"rewardId": "nope", "idempotencyKey": "k-3"}}, token)["redeemReward"]
    assert unknown["errors"] == [{"code": "REWARD_NOT_FOUND"}]
    wallet = api("query($id: ID) { member(id: $id) { coupons { code source } } }", {"id": member_id}, key)
    bought = [c["code"] for c in wallet["member"]["coupons"] if c["source"].startswith("points:")]
    assert bought == [first["coupon"]["code"]]  # (other plugins of the demo shop issue their own coupons)
    assert account(api, key, member_id)["balance"] == 400
    errors = api.errors(REDEEM, {"input": {"rewardId": "coupon-10", "idempotencyKey": "k-4"}}, key)
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"  # a storefront operation: member token only


def test_points_as_cash_spend_and_report_what_was_missing(demo):
    runtime, api, key = demo
    member_id = sign_up(api, key, "u-1")
    pay(api, key, member_id, "o-1", 30000)
    assert pay(api, key, member_id, "o-2", 10000, pointsRedeemed=200) == [
        ("order", "points -200 (order)"), ("base", "points +100 (1 per 1.00 paid)")]
    assert pay(api, key, member_id, "o-3", 10000, pointsRedeemed=500) == [
        ("order", "points -200 (order)"), ("order", "300 of 500 points were no longer there"),
        ("base", "points +100 (1 per 1.00 paid)")]
    assert account(api, key, member_id)["balance"] == 100


CHECK_IN = "mutation { checkIn { duplicate effects { description } errors { code } } }"
ACTION = """mutation($input: MemberActionInput!) { recordMemberAction(input: $input) {
  duplicate effects { description } errors { code field } } }"""
ADJUST = """mutation($input: AdjustPointsInput!) { adjustPoints(input: $input) {
  duplicate effects { description } errors { code field } } }"""


def test_check_in_once_a_day_in_the_shops_timezone(shop):
    runtime, api, key = shop()
    member_id = sign_up(api, key, "u-1")
    token = token_for(api, key, member_id)
    with clock.frozen(at("2026-05-01T23:30:00+08:00")):
        assert api(CHECK_IN, key=token)["checkIn"] == {"duplicate": False, "effects": [
            {"description": "points +10 (check_in)"}], "errors": []}
        assert api(CHECK_IN, key=token)["checkIn"]["duplicate"] is True
    with clock.frozen(at("2026-05-02T00:10:00+08:00")):  # still 1 May in UTC, a new day in Shanghai
        assert api(CHECK_IN, key=token)["checkIn"]["duplicate"] is False
    assert account(api, key, member_id)["balance"] == 20


def test_reported_actions_are_capped_per_day(shop):
    runtime, api, key = shop()
    member_id = sign_up(api, key, "u-1")
    results = [api(ACTION, {"input": {"memberId": member_id, "action": "review", "idempotencyKey": f"rv-{n}"}},
                   key)["recordMemberAction"] for n in range(4)]
    assert [r["errors"] for r in results[:3]] == [[], [], []]
    assert results[3]["errors"] == [{"code": "DAILY_CAP_REACHED", "field": "action"}]
    unknown = api(ACTION, {"input": {"memberId": member_id, "action": "dance", "idempotencyKey": "x"}}, key)
    assert unknown["recordMemberAction"]["errors"] == [{"code": "UNKNOWN_ACTION", "field": "action"}]
    assert account(api, key, member_id)["balance"] == 60


def test_adjustments_by_hand_record_who_and_why(shop):
    runtime, api, key = shop()
    member_id = sign_up(api, key, "u-1")
    up = api(ADJUST, {"input": {"memberId": member_id, "delta": 300, "reason": "goodwill", "idempotencyKey": "a"}},
             key)["adjustPoints"]
    assert up["errors"] == [] and up["effects"] == [{"description": "points +300 (goodwill)"}]
    down = api(ADJUST, {"input": {"memberId": member_id, "delta": -500, "reason": "fraud", "idempotencyKey": "b"}},
               key)["adjustPoints"]
    assert down["errors"] == [{"code": "INSUFFICIENT_POINTS", "field": None}]
    bad = api(ADJUST, {"input": {"memberId": member_id, "delta": 5, "reason": " ", "idempotencyKey": "c"}}, key)
    assert bad["adjustPoints"]["errors"] == [{"code": "INVALID_REASON", "field": "reason"}]
    with runtime.db.read() as conn:
        entry = conn.execute(select(PointsEntry.delta, PointsEntry.actor, PointsEntry.note)).one()
        assert entry.delta == 300 and entry.actor.startswith("key_") and entry.note == "goodwill"
        assert conn.execute(select(func.count()).select_from(PointsEntry)).scalar() == 1


def test_history_pages_newest_first(demo):
    runtime, api, key = demo
    member_id = sign_up(api, key, "u-1")
    for n in range(5):
        pay(api, key, member_id, f"o-{n}", 100 * (n + 1))
    query = """query($id: ID, $after: String) { member(id: $id) { points { history(first: 2, after: $after) {
        edges { node { orderId } cursor } pageInfo { hasNextPage endCursor } } } } }"""
    seen, after = [], None
    while True:
        page = api(query, {"id": member_id, "after": after}, key)["member"]["points"]["history"]
        seen += [edge["node"]["orderId"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == ["o-4", "o-3", "o-2", "o-1", "o-0"]
    errors = api.errors(query.replace("first: 2", "first: 101"), {"id": member_id}, key)
    assert "first must be from 0 to 100" in errors[0]["message"]


def test_demo_schema_keeps_the_points_part_of_the_contract():
    from memberkit.core import plugins as plugin_registry
    from memberkit.schema.builder import build_schema
    from tests.conftest import breaking_changes

    changes = breaking_changes(build_schema(plugin_registry.enabled(("points",))).as_str())
    assert any("Member.tier" in change for change in changes)  # tiering's part is missing: the check works
    points_types = ("PointsAccount", "PointsExpiry", "PointsEntry", "Reward", "redeemReward", "Member.points",
                    "rewards")
    broken = [change for change in changes if any(name in change for name in points_types)]
    assert broken == [], broken


def test_points_to_earn_tells_a_quote_what_the_order_would_earn(demo):
    from memberkit.core.types import Cart, OrderLine

    runtime, api, key = demo
    member_id = sign_up(api, key, "u-1")
    cart = Cart((OrderLine("A", 1, 120000, "shoes"),), member_id)
    with runtime.reading(runtime.shop("demo")) as ctx:
        # 1,200 yuan: 1,200 base + 200 threshold bonus; the same rules as a paid order, read only.
        assert ctx.hook.points_to_earn(ctx=ctx, cart=cart, total=120000) == [1400]
        assert ctx.hook.points_to_earn(ctx=ctx, cart=cart, total=99999) == [999]
