"""The core wallet: coupons issued by any plugin, listed per member, used exactly once by a paid order."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import select

from memberkit.core import clock, orders
from memberkit.core.models import Coupon, Order
from tests.conftest import MEMBER, ORDER_PAID, postgres_only, sign_up


def issue(runtime, member_id: str, template: str = "TEN_OFF", shop: str = "alpha") -> str:
    with runtime.transaction(runtime.shop(shop)) as ctx:
        return ctx.wallet.issue(member_id, template, source="test:gift").code


def pay(api, key, member_id, order_id, codes, total=5000):
    payload = api(ORDER_PAID, {"input": {"orderId": order_id, "memberId": member_id, "total": total,
                                         "couponCodes": codes}}, key)["recordOrderPaid"]
    assert payload["errors"] == [], payload
    return [(e["kind"], e["code"]) for e in payload["effects"]]


def coupons(api, key, member_id):
    return api(MEMBER, {"id": member_id}, key)["member"]["coupons"]


def test_issued_coupon_is_listed_with_its_template(api, runtime):
    key = api.key("alpha")
    member_id = sign_up(api, key, "u-1")
    code = issue(runtime, member_id)
    percent = issue(runtime, member_id, "FIVE_PERCENT")
    listed = {c["code"]: c for c in coupons(api, key, member_id)}
    assert listed[code]["title"] == "10 off" and listed[code]["kind"] == "FIXED" and listed[code]["value"] == 1000
    assert listed[code]["status"] == "AVAILABLE" and listed[code]["source"] == "test:gift"
    assert listed[code]["minSpend"] is None and listed[code]["validUntil"]
    assert listed[percent]["kind"] == "PERCENT" and listed[percent]["minSpend"] == {"amount": 10000, "currency": "CNY"}
    assert listed[percent]["validUntil"] is None


def test_coupon_is_used_exactly_once(api, runtime):
    key = api.key("alpha")
    member_id = sign_up(api, key, "u-1")
    code = issue(runtime, member_id)
    assert pay(api, key, member_id, "o-1", [code.lower()]) == [("COUPON_USED", None)]  # codes read case-blind
    assert pay(api, key, member_id, "o-2", [code]) == [("CONFLICT", "COUPON_ALREADY_USED")]
    with runtime.db.read() as conn:
        assert conn.execute(select(Coupon.status, Coupon.used_order_id)).one() == ("USED", "o-1")
        assert conn.execute(select(Order.order_id).order_by(Order.order_id)).scalars().all() == ["o-1", "o-2"]
    query = "query($id: ID) { member(id: $id) { available: coupons { code } used: coupons(status: USED) { code } } }"
    statuses = api(query, {"id": member_id}, key)["member"]
    assert statuses == {"available": [], "used": [{"code": code}]}


def test_unusable_coupons_are_conflicts_and_stay_unused(api, runtime):
    key = api.key("alpha")
    member_id, other_id = sign_up(api, key, "u-1"), sign_up(api, key, "u-2")
    others = issue(runtime, other_id)
    with clock.frozen(clock.now() - timedelta(days=31)):
        expired = issue(runtime, member_id)
    effects = pay(api, key, member_id, "o-1", ["NOPE", others, expired])
    assert effects == [("CONFLICT", "COUPON_UNKNOWN"), ("CONFLICT", "COUPON_NOT_OWNED"),
                       ("CONFLICT", "COUPON_EXPIRED")]
    assert [c["status"] for c in coupons(api, key, other_id)] == ["AVAILABLE"]
    assert [c["status"] for c in coupons(api, key, member_id)] == ["EXPIRED"]


def test_another_shops_coupon_is_unknown(api, runtime):
    alpha, beta = api.key("alpha"), api.key("beta")
    alpha_member, beta_member = sign_up(api, alpha, "u-1"), sign_up(api, beta, "u-1")
    code = issue(runtime, beta_member, shop="beta")
    assert pay(api, alpha, alpha_member, "o-1", [code]) == [("CONFLICT", "COUPON_UNKNOWN")]
    assert [c["status"] for c in coupons(api, beta, beta_member)] == ["AVAILABLE"]


def test_points_as_cash_without_a_points_plugin_is_a_conflict(api, runtime):
    key = api.key("alpha")
    member_id = sign_up(api, key, "u-1")
    payload = api(ORDER_PAID, {"input": {"orderId": "o-1", "memberId": member_id, "total": 5000,
                                         "pointsRedeemed": 500}}, key)["recordOrderPaid"]
    assert payload["errors"] == []
    assert [(e["kind"], e["code"]) for e in payload["effects"]] == [("CONFLICT", "REDEMPTION_UNSUPPORTED")]


@postgres_only()
def test_concurrent_orders_race_for_one_coupon(runtime, api):
    key = api.key("alpha")
    member_id = sign_up(api, key, "u-1")
    code = issue(runtime, member_id)
    shop = runtime.shop("alpha")

    def order(n: int):
        return orders.record_order_paid(runtime, shop, None, order_id=f"o-{n}", member_id=member_id,
                                        total=1000, coupon_codes=[code])

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(order, range(16)))
    kinds = [r.effects[0].kind for r in results]
    assert all(not r.errors for r in results)
    assert kinds.count("COUPON_USED") == 1 and kinds.count("CONFLICT") == 15
    with runtime.db.read() as conn:
        assert len(conn.execute(select(Order.id)).all()) == 16


@postgres_only()
def test_concurrent_retries_of_one_order_record_it_once(runtime, api):
    key = api.key("alpha")
    member_id = sign_up(api, key, "u-1")
    shop = runtime.shop("alpha")

    def order(_: int):
        return orders.record_order_paid(runtime, shop, None, order_id="o-1", member_id=member_id, total=1000)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(order, range(24)))
    assert all(not r.errors for r in results)
    assert sorted(r.duplicate for r in results) == [False] + [True] * 23
    with runtime.db.read() as conn:
        assert len(conn.execute(select(Order.id)).all()) == 1


def test_a_coupon_below_its_minimum_spend_is_a_conflict(api, runtime):
    key = api.key("alpha")
    member_id = sign_up(api, key, "u-1")
    code = issue(runtime, member_id, "FIVE_PERCENT")  # needs 100.00
    line = {"sku": "A", "quantity": 1, "unitPrice": 9999}
    payload = api(ORDER_PAID, {"input": {"orderId": "o-1", "memberId": member_id, "total": 9000, "lines": [line],
                                         "couponCodes": [code]}}, key)["recordOrderPaid"]
    assert [(e["kind"], e["code"]) for e in payload["effects"]] == [("CONFLICT", "COUPON_MIN_SPEND_NOT_MET")]
    # The minimum is checked on the lines at list price, not on the total after the discount.
    assert pay(api, key, member_id, "o-2", [code], total=9500) == [("CONFLICT", "COUPON_MIN_SPEND_NOT_MET")]
    payload = api(ORDER_PAID, {"input": {"orderId": "o-3", "memberId": member_id, "total": 9500,
                                         "lines": [{**line, "unitPrice": 10000}], "couponCodes": [code]}},
                  key)["recordOrderPaid"]
    assert [(e["kind"], e["code"]) for e in payload["effects"]] == [("COUPON_USED", None)]


def test_an_unused_coupon_can_be_withdrawn_once(api, runtime):
    key = api.key("alpha")
    member_id = sign_up(api, key, "u-1")
    code = issue(runtime, member_id)
    with runtime.transaction(runtime.shop("alpha")) as ctx:
        coupon_id = ctx.conn.execute(select(Coupon.id).where(Coupon.code == code)).scalar()
        assert ctx.wallet.withdraw(coupon_id, "refund r-1") is True
        assert ctx.wallet.withdraw(coupon_id, "refund r-1") is False
    query = "query($id: ID) { member(id: $id) { coupons(status: WITHDRAWN) { code } available: coupons { code } } }"
    assert api(query, {"id": member_id}, key)["member"] == {"coupons": [{"code": code}], "available": []}
    assert pay(api, key, member_id, "o-1", [code]) == [("CONFLICT", "COUPON_WITHDRAWN")]
