"""No accepted write breaks a later read (issue 11 point 2): extreme amounts through every write, then every
read of the member, on both databases. A write is either accepted or refused with a code; never an internal
error, and never accepted and then unreadable."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memberkit import config
from memberkit.plugin import MAX_INT
from tests.conftest import ORDER_PAID, ORDER_REFUNDED, ROOT

READ = """query($id: ID!) { member(id: $id) {
  tier { code } tierProgress { qualifyingSpend { amount } qualifyingSpendTotal spendToNext { amount }
                               qualifyingOrders ordersToNext }
  points { balance pending lifetimeEarned held expiring { points } history(first: 100) { edges { node { delta } } } }
  coupons(status: null) { code value } tierHistory { toCode } referral { invited rewarded bonuses }
  perks { firstOrderDiscount birthdayPercent } } }"""
ADJUST = """mutation($input: AdjustPointsInput!) { adjustPoints(input: $input) {
  effects { code } errors { code field } } }"""
QUOTE = """query($input: CartInput!) { quoteCart(input: $input) {
  total { amount } pointsToEarn lines { subtotal { amount } total { amount } } } }"""

EXTREME = st.sampled_from([MAX_INT, -MAX_INT, 2**31 - 2, 1, 0, -1])
AMOUNT = st.sampled_from([0, 1, 12_345, 2**30, MAX_INT - 1, MAX_INT])
WRITE = st.one_of(
    st.tuples(st.just("order"), AMOUNT, st.sampled_from([1, 2, 3, MAX_INT]), AMOUNT),
    st.tuples(st.just("refund"), AMOUNT),
    st.tuples(st.just("adjust"), EXTREME),
    st.tuples(st.just("quote"), st.sampled_from([1, 1000, MAX_INT]), AMOUNT, AMOUNT),
)


def codes_only(body: dict) -> None:
    """Accepted, or refused with a code: never an internal error."""
    for error in body.get("errors") or []:
        assert error["message"] != "Internal server error", body
        assert error.get("extensions", {}).get("code"), body


MEMBERS = itertools.count()


@pytest.fixture
def programme(memberkit):
    return memberkit((ROOT / "plugins.toml").read_text())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(writes=st.lists(WRITE, min_size=1, max_size=8))
def test_extreme_values_through_every_write_leave_every_read_working(programme, writes):
    api, key = programme.api, programme._key("demo", "secret")
    member_id = programme.sign_up("demo", f"u-{next(MEMBERS)}")  # one programme, a member per example
    member_key = programme.api.token(key, member_id)
    orders = []
    for step, write in enumerate(writes):
        if write[0] == "order":
            _, total, quantity, unit_price = write
            order_id = f"{member_id}-o{step}"
            body = api.post(ORDER_PAID, {"input": {"orderId": order_id, "memberId": member_id, "total": total,
                                                   "lines": [{"sku": "SKU", "quantity": quantity,
                                                              "unitPrice": unit_price}]}}, key).json()
            codes_only(body)
            payload = (body.get("data") or {}).get("recordOrderPaid")
            if payload and not payload["errors"]:
                orders.append((order_id, total))
            elif payload:
                assert {e["code"] for e in payload["errors"]} <= {"AMOUNT_TOO_LARGE", "TOTAL_EXCEEDS_LINES"}, payload
        elif write[0] == "refund" and orders:
            order_id, total = orders[-1]
            amount = min(write[1], total) or 1
            codes_only(api.post(ORDER_REFUNDED, {"input": {"orderId": order_id, "refundId": f"{order_id}-r{step}",
                                                           "amount": amount}}, key).json())
        elif write[0] == "adjust":
            codes_only(api.post(ADJUST, {"input": {"memberId": member_id, "delta": write[1], "reason": "test",
                                                   "idempotencyKey": f"{member_id}-a{step}"}}, key).json())
        elif write[0] == "quote":
            _, quantity, unit_price, points = write
            codes_only(api.post(QUOTE, {"input": {"lines": [{"sku": "SKU", "quantity": quantity,
                                                             "unitPrice": unit_price}],
                                                  "pointsToRedeem": points}}, member_key).json())
        response = api.post(READ, {"id": member_id}, key)
        body = response.json()
        assert response.status_code == 200 and not body.get("errors"), (writes[:step + 1], body)
        points = body["data"]["member"]["points"]
        assert points is None or all(-MAX_INT <= points[name] <= MAX_INT
                                     for name in ("balance", "pending", "lifetimeEarned", "held"))


def test_two_orders_of_the_largest_total_are_both_recorded_and_readable(programme):
    member_id = programme.sign_up("demo", "big-spender")
    for order_id in ("o-1", "o-2"):
        assert programme.pay("demo", member_id, order_id, MAX_INT)["errors"] == []
    progress = programme.integrator("demo")(READ, {"id": member_id})["member"]["tierProgress"]
    assert progress["qualifyingSpendTotal"] == 2 * MAX_INT
    assert progress["qualifyingSpend"]["amount"] == MAX_INT  # Int's limit; the total above is exact


def test_points_past_the_limit_are_a_conflict_not_a_lost_order(programme):
    integrator = programme.integrator("demo")
    member_id = programme.sign_up("demo", "hoarder")
    adjusted = integrator(ADJUST, {"input": {"memberId": member_id, "delta": MAX_INT - 10, "reason": "gift",
                                             "idempotencyKey": "a-1"}})["adjustPoints"]
    assert adjusted["errors"] == []
    again = integrator(ADJUST, {"input": {"memberId": member_id, "delta": 11, "reason": "gift",
                                          "idempotencyKey": "a-2"}})["adjustPoints"]
    assert again["errors"] == [{"code": "POINTS_LIMIT_REACHED", "field": "delta"}]
    paid = programme.pay("demo", member_id, "o-1", 100_000)
    assert paid["errors"] == []
    assert [e["code"] for e in paid["effects"] if e["code"]] == ["POINTS_LIMIT_REACHED"]
    points = integrator(READ, {"id": member_id})["member"]["points"]
    assert points["balance"] == MAX_INT - 10 and points["lifetimeEarned"] == MAX_INT - 10
    assert programme.pay("demo", member_id, "o-1", 100_000)["duplicate"] is True


def test_a_line_whose_amount_passes_int_is_refused_with_its_field(programme):
    member_id = programme.sign_up("demo", "u-lines")
    lines = [{"sku": "A", "quantity": MAX_INT, "unitPrice": MAX_INT}]
    paid = programme.pay("demo", member_id, "o-1", 100, lines=lines)
    assert [(e["code"], e["field"]) for e in paid["errors"]] == [("AMOUNT_TOO_LARGE", "lines[0].quantity")]
    lines = [{"sku": "A", "quantity": 1, "unitPrice": MAX_INT}, {"sku": "B", "quantity": 1, "unitPrice": 1}]
    paid = programme.pay("demo", member_id, "o-1", 100, lines=lines)
    assert [(e["code"], e["field"]) for e in paid["errors"]] == [("AMOUNT_TOO_LARGE", "lines[1].quantity")]


def test_settings_beyond_int_are_refused_and_the_largest_milestone_is_granted(memberkit, settings_file):
    """No setting can make a read fail: a figure beyond Int is refused when plugins.toml is loaded."""
    demo = (ROOT / "plugins.toml").read_text()
    with pytest.raises(config.SettingsError) as refused:
        config.load(settings_file(demo.replace("lifetime_spend = 3000000 ", "lifetime_spend = 3000000000 ", 1)))
    [problem] = refused.value.problems
    assert (problem.plugin, problem.key) == ("points", "milestones.2.lifetime_spend")
    assert problem.message == "got 3000000000: it is beyond 2147483647, the largest figure memberkit serves"
    programme = memberkit(demo.replace("lifetime_spend = 3000000 ", f"lifetime_spend = {MAX_INT} ", 1))
    member_id = programme.sign_up("demo", "whale")
    assert programme.pay("demo", member_id, "o-1", MAX_INT - 1)["errors"] == []
    second = programme.pay("demo", member_id, "o-2", MAX_INT)
    assert second["errors"] == [] and f"milestone:{MAX_INT}" in [e.get("rule") for e in second["effects"]]
