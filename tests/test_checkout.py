"""The cart quote and the checkout with the demo shop's numbers (RULES.md sections 2 and 6, DESIGN.md "Checkout
is a hold"): the price built stage by stage, holds taken in one transaction, given back on release or expiry,
turned into use by the paid order, and exclusive under concurrency (PostgreSQL)."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from memberkit import jobs
from memberkit.core import clock
from memberkit.core import plugins as plugin_registry
from memberkit.core.models import Coupon, Event
from memberkit.plugin import spread
from memberkit.plugins.checkout import holds
from memberkit.plugins.checkout.models import Checkout
from memberkit.plugins.points import ledger
from memberkit.plugins.points.models import PointsAccount, PointsEntry, PointsHold
from tests import checkout_plugins
from tests.conftest import ORDER_PAID, ROOT, SHARED, breaking_changes, postgres_only, shared_only, sign_up

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)  # a Friday afternoon: not the member day (the 15th)


def demo_config(extra: str = "", tiers: dict[str, int] | None = None) -> str:
    """The demo shop of plugins.toml with the built-in plugins this test owns and the test plugin "gate"
    (a member price at UNIT_PRICE, purchase denials, a hold that can refuse)."""
    text = (ROOT / "plugins.toml").read_text()
    kept, skipping = [], False
    for line in text.splitlines():
        if line.startswith("["):
            skipping = bool(re.match(r"^\[\[?shops\.demo\.settings\.(member_only|flash_sale|stored_value|checkout)\b",
                                     line))  # checkout: the defaults, which `extra` may set
        if not skipping:
            kept.append(line)
    text = "\n".join(kept)
    plugins = '["points", "tiering", "referral", "perks", "gate", "segments", "webhooks"]'
    text = re.sub(r"(?m)^plugins = \[.*\]$", f"plugins = {plugins}", text, count=1)
    for code, percent in (tiers or {}).items():
        text = text.replace(f'code = "{code}"\n', f'code = "{code}"\ndiscount_percent = {percent}\n', 1)
    return text + "\n" + extra


@pytest.fixture
def gate(add_plugin):
    add_plugin(checkout_plugins.gate)
    checkout_plugins.gate.clear()
    return checkout_plugins.gate


class Shop:
    def __init__(self, runtime, api):
        self.runtime, self.api = runtime, api
        self.key = api.key("demo")
        self.publishable = api.key("demo", "publishable")

    def member(self, external_id: str, points: int = 0, **fields) -> tuple[str, str]:
        """A member with `points` and a member token."""
        member_id = sign_up(self.api, self.key, external_id, **fields)
        if points:
            with self.runtime.transaction(self.runtime.shop("demo")) as ctx:
                ledger.earn(ctx, member_id, points, "ADJUST", "test", ledger.lock(ctx, member_id))
        return member_id, self.token(member_id)

    def token(self, member_id: str) -> str:
        return self.api(TOKEN, {"id": member_id}, self.key)["createMemberToken"]["token"]

    def coupon(self, member_id: str, template: str) -> str:
        with self.runtime.transaction(self.runtime.shop("demo")) as ctx:
            return ctx.wallet.issue(member_id, template, source="test:coupon").code

    def quote(self, key: str, lines, **cart) -> dict:
        return self.api(QUOTE, {"input": {"lines": lines, **cart}}, key)["quoteCart"]

    def start(self, token: str, idempotency_key: str, lines, **cart) -> dict:
        return self.api(START, {"input": {"lines": lines, "idempotencyKey": idempotency_key, **cart}},
                        token)["startCheckout"]

    def release(self, token: str, checkout_id: str) -> dict:
        return self.api(RELEASE, {"id": checkout_id}, token)["releaseCheckout"]

    def pay(self, member_id: str, order_id: str, total: int, lines=None, **extra) -> dict:
        payload = self.api(ORDER_PAID, {"input": {"orderId": order_id, "memberId": member_id, "total": total,
                                                  "lines": lines, **extra}}, self.key)["recordOrderPaid"]
        assert payload["errors"] == [], payload
        return payload

    def read(self, statement):
        with self.runtime.db.read() as conn:
            return conn.execute(statement).all()

    def points(self, member_id: str) -> tuple[int, int]:
        """(balance, held) of the member's account, as the API shows it and as stored."""
        shown = self.api("query($id: ID) { member(id: $id) { points { balance held } } }", {"id": member_id},
                         self.key)["member"]["points"]
        [row] = self.read(select(PointsAccount.balance, PointsAccount.held).where(PointsAccount.member_id == member_id))
        assert (shown["balance"], shown["held"]) == tuple(row)
        return tuple(row)

    def coupon_row(self, code: str):
        [row] = self.read(select(Coupon.status, Coupon.held_by, Coupon.used_order_id).where(Coupon.code == code))
        return tuple(row)

    def checkout_status(self, checkout_id: str) -> str:
        [row] = self.read(select(Checkout.status).where(Checkout.id == checkout_id))
        return row.status


@pytest.fixture
def make_shop(gate, make_runtime, make_api):
    def make(extra: str = "", tiers: dict[str, int] | None = None) -> Shop:
        clock.set_now(NOW)
        runtime = make_runtime(demo_config(extra, tiers))
        return Shop(runtime, make_api(runtime))

    return make


@pytest.fixture
def shop(make_shop) -> Shop:
    return make_shop()


TOKEN = """mutation($id: ID!) { createMemberToken(memberId: $id) { token errors { code } } }"""  # noqa: S105
QUOTE = """query($input: CartInput!) { quoteCart(input: $input) {
  subtotal { amount currency } total { amount currency } pointsToEarn pointsUsed couponCodes
  adjustments { plugin code label sku amount { amount currency } }
  denials { sku code message } couponProblems { couponCode code message }
  lines { sku quantity subtotal { amount } total { amount } } } }"""
START = """mutation($input: CheckoutInput!) { startCheckout(input: $input) {
  duplicate errors { code field message }
  checkout { id status expiresAt quote { total { amount } pointsUsed couponCodes
    adjustments { plugin code amount { amount } } } } } }"""
RELEASE = """mutation($id: ID!) { releaseCheckout(id: $id) { duplicate errors { code } checkout { id status } } }"""


def line(sku: str, unit_price: int, quantity: int = 1, category: str | None = None) -> dict:
    return {"sku": sku, "quantity": quantity, "unitPrice": unit_price, "category": category}


def steps(quote: dict) -> list[tuple[str, str, int]]:
    return [(a["plugin"], a["code"], a["amount"]["amount"]) for a in quote["adjustments"]]


def problems(quote: dict) -> list[tuple[str, str]]:
    return [(p["couponCode"], p["code"]) for p in quote["couponProblems"]]


# ---------------------------------------------------------------- the quote


def test_the_price_is_built_stage_by_stage_in_the_rules_order(shop):
    """List 200 yuan -> member price -20 -> coupon -10 -> first order 30% of 170 -> points, capped at half."""
    member_id, token = shop.member("u-1", points=100000)
    welcome = shop.coupon(member_id, "WELCOME_10")
    quote = shop.quote(token, [line("member-tee", 10000, 2)], couponCodes=[welcome.lower()], pointsToRedeem=100000)
    assert steps(quote) == [
        ("gate", "MEMBER_PRICE", -2000),  # UNIT_PRICE: 20000 -> 18000
        ("checkout", "COUPON", -1000),  # COUPON: 10 yuan, no threshold -> 17000
        ("perks", "FIRST_ORDER", -5100),  # PERCENT: 30% of the price so far -> 11900
        ("points", "POINTS_AS_CASH", -5950),  # POINTS: at most 50% of 11900 -> 5950
    ]
    assert quote["subtotal"] == {"amount": 20000, "currency": "CNY"}
    assert quote["total"] == {"amount": 5950, "currency": "CNY"}
    assert (quote["pointsUsed"], quote["couponCodes"], quote["pointsToEarn"]) == (5950, [welcome], 59)
    assert quote["adjustments"][0]["sku"] == "member-tee"
    assert all(a["label"] for a in quote["adjustments"])
    assert quote["denials"] == [] and quote["couponProblems"] == []
    # the same cart quoted twice gives the same answer, and a quote writes nothing
    assert shop.quote(token, [line("member-tee", 10000, 2)], couponCodes=[welcome], pointsToRedeem=100000) == quote
    assert shop.coupon_row(welcome) == ("AVAILABLE", None, None)
    assert shop.points(member_id) == (100000, 0)
    assert shop.read(select(func.count()).select_from(Checkout)) == [(0,)]


def test_each_line_keeps_its_share_of_every_discount(shop):
    """RULES.md section 6: shares rounded to the fen per line, adding up to the total, so refunding a line
    gives back exactly what the order charged for it; a member price stays with its own line."""
    member_id, token = shop.member("u-1", points=100000)
    welcome = shop.coupon(member_id, "WELCOME_10")
    cart = [line("member-tee", 10000, 2), line("socks", 333, 3), line("cap", 1999)]
    quote = shop.quote(token, cart, couponCodes=[welcome], pointsToRedeem=100000)
    shares = [(ln["sku"], ln["quantity"], ln["subtotal"]["amount"], ln["total"]["amount"]) for ln in quote["lines"]]
    assert [s[:3] for s in shares] == [("member-tee", 2, 20000), ("socks", 3, 999), ("cap", 1, 1999)]
    assert sum(s[3] for s in shares) == quote["total"]["amount"]
    assert all(0 <= s[3] <= s[2] for s in shares)
    # member price -2000 on the tee only; everything after it in proportion to what each line costs then
    after_member_price = [18000, 999, 1999]
    left = quote["total"]["amount"] / sum(after_member_price)
    slack = 1 + len(quote["adjustments"])  # a fen of rounding per adjustment at most
    assert all(abs(s[3] - amount * left) < slack for s, amount in zip(shares, after_member_price, strict=True))
    held = shop.start(token, "k-1", cart, couponCodes=[welcome], pointsToRedeem=100000)["checkout"]
    assert held["quote"]["total"]["amount"] == quote["total"]["amount"]
    [row] = shop.read(select(Checkout.quote).where(Checkout.id == held["id"]))
    assert [ln["total"] for ln in row.quote["lines"]] == [s[3] for s in shares]  # kept with the checkout


def test_spread_splits_exactly_and_in_proportion():
    from hypothesis import given
    from hypothesis import strategies as st

    @given(st.lists(st.integers(0, 10**7), min_size=1, max_size=30), st.data())
    def check(amounts, data):
        total = sum(amounts)
        amount = data.draw(st.integers(-total, 10**7))
        shares = spread(amounts, amount)
        if total == 0:
            assert shares == [0] * len(amounts)
            return
        assert sum(shares) == amount
        for a, share in zip(amounts, shares, strict=True):
            assert abs(share - amount * a / total) < 1
            assert amount > 0 or 0 <= a + share <= a  # a discount takes no line below zero

    check()


def test_a_threshold_coupon_is_checked_on_the_price_so_far_and_one_coupon_per_order(shop):
    member_id, token = shop.member("u-1")
    threshold = shop.coupon(member_id, "POINTS_50_OFF_300")  # 50 off orders of 300
    welcome = shop.coupon(member_id, "WELCOME_10")
    # 305 yuan at list price, 295 after the member price: below 300, so the coupon does not apply
    quote = shop.quote(token, [line("member-bag", 30500)], couponCodes=[threshold])
    assert steps(quote)[:2] == [("gate", "MEMBER_PRICE", -1000), ("perks", "FIRST_ORDER", -8850)]
    assert problems(quote) == [(threshold, "COUPON_MIN_SPEND_NOT_MET")]
    assert quote["couponCodes"] == []
    # without a member price the price so far is 305: it applies; a second coupon is over the shop's limit
    quote = shop.quote(token, [line("bag", 30500)], couponCodes=[threshold, welcome])
    assert steps(quote) == [("checkout", "COUPON", -5000), ("perks", "FIRST_ORDER", -7650)]
    assert problems(quote) == [(welcome, "COUPON_LIMIT")]
    assert quote["total"]["amount"] == 30500 - 5000 - 7650


def test_coupon_problems_are_named_and_percent_coupons_take_their_share(make_shop):
    shop = make_shop('[shops.demo.coupons.FIVE_PERCENT]\ntitle = "5% off"\nkind = "PERCENT"\nvalue = 5\n\n'
                     "[shops.demo.settings.checkout]\nmax_coupons = 2\n")
    member_id, token = shop.member("u-1")
    other_id, _ = shop.member("u-2")
    five, welcome = shop.coupon(member_id, "FIVE_PERCENT"), shop.coupon(member_id, "WELCOME_10")
    theirs = shop.coupon(other_id, "WELCOME_10")
    shop.pay(member_id, "o-1", 100)  # no first order discount from here on
    quote = shop.quote(token, [line("tee", 9999)], couponCodes=[welcome, five, theirs, "NOPE"])
    # 5% of what is left after the first coupon (89.99), rounded down: each coupon sees the price so far
    assert steps(quote) == [("checkout", "COUPON", -1000), ("checkout", "COUPON", -449)]
    assert problems(quote) == [(theirs, "COUPON_NOT_OWNED"), ("NOPE", "COUPON_UNKNOWN")]
    clock.set_now(NOW + timedelta(days=31))
    quote = shop.quote(shop.token(member_id), [line("tee", 9999)], couponCodes=[welcome])
    assert problems(quote) == [(welcome, "COUPON_EXPIRED")]


def test_percent_discounts_keep_the_largest_only_unless_the_shop_says_all(make_shop):
    for rule, expected in (("largest", [("perks", "FIRST_ORDER", -3000)]),
                           ("all", [("perks", "FIRST_ORDER", -3000), ("perks", "BIRTHDAY_MONTH", -500),
                                    ("perks", "MEMBER_DAY", -500)])):
        shop = make_shop(f'[shops.demo.settings.checkout]\npercent_rule = "{rule}"\n')
        clock.set_now(datetime(2026, 11, 15, 12, 0, tzinfo=UTC))  # member day, in the birthday month
        _, token = shop.member(f"u-{rule}", birthday="1990-11-03")
        assert steps(shop.quote(token, [line("tee", 10000)])) == expected


def test_the_tier_discount_competes_in_the_percent_group(make_shop):
    shop = make_shop(tiers={"REGULAR": 2})
    member_id, token = shop.member("u-1")
    assert steps(shop.quote(token, [line("tee", 10000)])) == [("perks", "FIRST_ORDER", -3000)]  # 30% > 2%
    shop.pay(member_id, "o-1", 100)
    assert steps(shop.quote(token, [line("tee", 9999)])) == [("tiering", "TIER_DISCOUNT", -199)]  # rounded down
    neutral = make_shop()  # the demo's tiers carry no discount: nothing to propose
    member_id, token = neutral.member("u-neutral")
    neutral.pay(member_id, "o-neutral", 100)
    assert steps(neutral.quote(token, [line("tee", 9999)])) == []


def test_points_pay_at_most_half_and_only_what_the_member_has(shop):
    member_id, token = shop.member("u-1", points=1000)
    shop.pay(member_id, "o-1", 0)  # no first-order discount from here on
    quote = shop.quote(token, [line("tee", 801)], pointsToRedeem=1000)
    assert steps(quote) == [("points", "POINTS_AS_CASH", -400)] and quote["total"]["amount"] == 401
    quote = shop.quote(token, [line("tee", 801)], pointsToRedeem=150)
    assert steps(quote) == [("points", "POINTS_AS_CASH", -150)] and quote["pointsUsed"] == 150
    quote = shop.quote(token, [line("tee", 900000)], pointsToRedeem=5000)
    assert quote["pointsUsed"] == 1000 and quote["total"]["amount"] == 899000  # the balance is all there is


def test_the_total_is_never_negative(shop):
    member_id, token = shop.member("u-1", points=1000)
    welcome = shop.coupon(member_id, "WELCOME_10")
    quote = shop.quote(token, [line("tee", 500)], couponCodes=[welcome], pointsToRedeem=1000)
    assert steps(quote) == [("checkout", "COUPON", -500)]
    assert (quote["total"]["amount"], quote["pointsUsed"], quote["pointsToEarn"]) == (0, 0, 0)


def test_anonymous_carts_get_no_member_pricing(shop):
    member_id, _ = shop.member("u-1", points=1000)
    welcome = shop.coupon(member_id, "WELCOME_10")
    for key in (shop.publishable, shop.key):
        quote = shop.quote(key, [line("member-tee", 10000), line("members-only", 500)], couponCodes=[welcome],
                           pointsToRedeem=1000)
        assert steps(quote) == [] and quote["total"]["amount"] == 10500
        assert problems(quote) == [(welcome, "COUPON_NEEDS_MEMBER")]
        assert [(d["sku"], d["code"]) for d in quote["denials"]] == [("members-only", "MEMBERS_ONLY")]
        assert quote["pointsToEarn"] == 105


def test_a_malformed_cart_is_a_graphql_error_with_a_code(shop):
    _, token = shop.member("u-1")
    errors = shop.api.errors(QUOTE, {"input": {"lines": [line("tee", 100, quantity=0)]}}, token)
    assert errors[0]["extensions"]["code"] == "INVALID_LINE"
    errors = shop.api.errors(QUOTE, {"input": {"lines": [line("tee", 100)], "pointsToRedeem": -1}}, token)
    assert errors[0]["extensions"]["code"] == "NEGATIVE_AMOUNT"


# ---------------------------------------------------------------- startCheckout


def test_start_checkout_holds_what_the_quote_uses_and_a_repeat_is_a_duplicate(shop, gate):
    member_id, token = shop.member("u-1", points=1000)
    welcome = shop.coupon(member_id, "WELCOME_10")
    cart = {"couponCodes": [welcome], "pointsToRedeem": 1000}
    payload = shop.start(token, "tab-1", [line("tee", 3000)], **cart)
    assert payload["errors"] == [] and payload["duplicate"] is False
    checkout = payload["checkout"]
    assert checkout["status"] == "HELD"
    assert datetime.fromisoformat(checkout["expiresAt"]) == NOW + timedelta(minutes=15)
    # 30 -> coupon 10 -> first order 30% of 20 = 6 -> points at most half of 14 = 7 yuan (700 points)
    assert checkout["quote"]["total"]["amount"] == 700 and checkout["quote"]["pointsUsed"] == 700
    assert shop.coupon_row(welcome) == ("AVAILABLE", checkout["id"], None)
    assert shop.points(member_id) == (300, 700)
    assert shop.read(select(PointsHold.checkout_id, PointsHold.amount, PointsHold.status)) == [
        (checkout["id"], 700, "HELD")]
    [(held_id, held_cart)] = gate.held
    assert held_id == checkout["id"] and held_cart.points_to_redeem == 700 and held_cart.coupon_codes == (welcome,)

    again = shop.start(token, "tab-1", [line("tee", 3000)], **cart)
    assert again["duplicate"] is True and again["checkout"]["id"] == checkout["id"]
    assert shop.points(member_id) == (300, 700) and len(gate.held) == 1
    conflict = shop.start(token, "tab-1", [line("tee", 3001)], **cart)
    assert [e["code"] for e in conflict["errors"]] == ["IDEMPOTENCY_CONFLICT"]

    # a second tab cannot take the held coupon; the quote says why
    second = shop.start(token, "tab-2", [line("tee", 3000)], couponCodes=[welcome])
    assert [(e["code"], e["field"]) for e in second["errors"]] == [("COUPON_HELD", "couponCodes")]
    assert problems(shop.quote(token, [line("tee", 3000)], couponCodes=[welcome])) == [(welcome, "COUPON_HELD")]
    assert shop.quote(token, [line("tee", 3000)], pointsToRedeem=1000)["pointsUsed"] == 300  # the rest is held
    # only a member token starts a checkout
    errors = shop.api.errors(START, {"input": {"lines": [line("tee", 3000)], "idempotencyKey": "k"}}, shop.key)
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"


def test_a_refusal_or_a_denial_rolls_back_every_hold(shop, gate):
    member_id, token = shop.member("u-1", points=1000)
    welcome = shop.coupon(member_id, "WELCOME_10")
    cart = {"couponCodes": [welcome], "pointsToRedeem": 1000}
    refused = shop.start(token, "k-1", [line("tee", 3000), line("refuse-hold", 100)], **cart)
    assert [e["code"] for e in refused["errors"]] == ["GATE_REFUSED"] and refused["checkout"] is None
    denied = shop.start(token, "k-2", [line("tee", 3000), line("forbidden", 100)], **cart)
    assert [(e["code"], e["field"]) for e in denied["errors"]] == [("PURCHASE_DENIED", "lines")]
    assert "forbidden" in denied["errors"][0]["message"]
    coupon_problem = shop.start(token, "k-3", [line("tee", 3000)], couponCodes=["NOPE"])
    assert [e["code"] for e in coupon_problem["errors"]] == ["COUPON_UNKNOWN"]
    # points and coupon were held before the gate refused: all of it rolled back, nothing recorded
    assert shop.coupon_row(welcome) == ("AVAILABLE", None, None)
    assert shop.points(member_id) == (1000, 0)
    assert shop.read(select(func.count()).select_from(Checkout)) == [(0,)]
    assert shop.read(select(func.count()).select_from(PointsHold)) == [(0,)]
    assert shop.read(select(func.count()).select_from(Event).where(Event.kind == "checkout_start")) == [(0,)]
    assert shop.start(token, "k-1", [line("tee", 3000)], **cart)["errors"] == []  # the key is free again


# ---------------------------------------------------------------- release and expiry


def test_release_gives_everything_back_and_only_the_member_may(shop, gate):
    member_id, token = shop.member("u-1", points=1000)
    _, other = shop.member("u-2")
    welcome = shop.coupon(member_id, "WELCOME_10")
    checkout = shop.start(token, "k", [line("tee", 3000)], couponCodes=[welcome], pointsToRedeem=1000)["checkout"]
    assert [e["code"] for e in shop.release(other, checkout["id"])["errors"]] == ["CHECKOUT_NOT_FOUND"]
    released = shop.release(token, checkout["id"])
    assert released["errors"] == [] and released["checkout"] == {"id": checkout["id"], "status": "RELEASED"}
    assert shop.coupon_row(welcome) == ("AVAILABLE", None, None)
    assert shop.points(member_id) == (1000, 0)
    assert gate.released == [(checkout["id"], "released")]
    again = shop.release(token, checkout["id"])
    assert again["duplicate"] is True and again["checkout"]["status"] == "RELEASED" and len(gate.released) == 1
    assert [e["code"] for e in shop.release(token, "chk_nope")["errors"]] == ["CHECKOUT_NOT_FOUND"]


def test_expiry_gives_everything_back_once(shop, gate):
    member_id, token = shop.member("u-1", points=1000)
    welcome = shop.coupon(member_id, "WELCOME_10")
    checkout = shop.start(token, "k", [line("tee", 3000)], couponCodes=[welcome], pointsToRedeem=1000)["checkout"]
    clock.set_now(NOW + timedelta(minutes=14))
    assert jobs.run_due(shop.runtime, "demo", force=True)[0].result is None
    clock.set_now(NOW + timedelta(minutes=15))
    runs = {r.job: r for r in jobs.run_due(shop.runtime, "demo", force=True)}
    assert (runs["checkout.expire_checkouts"].status, runs["checkout.expire_checkouts"].result) == ("done",
                                                                                           "1 checkout(s) expired")
    assert shop.checkout_status(checkout["id"]) == "EXPIRED"
    assert shop.coupon_row(welcome) == ("AVAILABLE", None, None)
    assert shop.points(member_id) == (1000, 0)
    assert jobs.run_due(shop.runtime, "demo", force=True)[0].result is None  # run twice
    assert gate.released == [(checkout["id"], "expired")]
    assert [e["code"] for e in shop.release(token, checkout["id"])["errors"]] == ["CHECKOUT_NOT_HELD"]


# ---------------------------------------------------------------- paying with the checkout


def test_paying_with_the_checkout_completes_it_and_uses_its_holds(shop, gate):
    member_id, token = shop.member("u-1", points=1000)
    welcome = shop.coupon(member_id, "WELCOME_10")
    checkout = shop.start(token, "k", [line("tee", 3000)], couponCodes=[welcome], pointsToRedeem=1000)["checkout"]
    payload = shop.pay(member_id, "o-1", 700, [line("tee", 3000)], checkoutId=checkout["id"])
    kinds = [(e["plugin"], e["kind"], e["code"]) for e in payload["effects"]]
    assert ("checkout", "CHECKOUT_COMPLETED", None) in kinds and ("core", "COUPON_USED", None) in kinds
    assert ("points", "POINTS_SPENT", None) in kinds
    assert not [k for k in kinds if k[1] == "CONFLICT"], kinds
    assert shop.checkout_status(checkout["id"]) == "COMPLETED"
    assert shop.coupon_row(welcome) == ("USED", None, "o-1")
    spent = shop.read(select(func.sum(PointsEntry.delta)).where(PointsEntry.reason == "SPEND"))
    assert spent == [(-700,)]  # the held points, spent once: not redeemed again
    assert shop.points(member_id) == (300 + 7, 0)  # what was left, and 7 points earned on 7 yuan paid
    [order] = gate.paid
    assert (order.checkout_id, order.coupon_codes, order.points_redeemed) == (checkout["id"], (welcome,), 700)
    # the checkout is spent: paying again with it is an order of its own, told it was completed
    again = shop.pay(member_id, "o-2", 100, checkoutId=checkout["id"])
    assert [e["code"] for e in again["effects"] if e["kind"] == "CONFLICT"] == ["CHECKOUT_COMPLETED"]
    assert shop.points(member_id) == (307 + 1, 0)  # recorded as sent: nothing of the checkout taken twice


def test_paying_after_expiry_records_the_order_and_takes_what_is_still_there(shop, gate):
    member_id, token = shop.member("u-1", points=1000)
    welcome = shop.coupon(member_id, "WELCOME_10")
    checkout = shop.start(token, "k", [line("tee", 3000)], couponCodes=[welcome], pointsToRedeem=1000)["checkout"]
    clock.set_now(NOW + timedelta(minutes=20))  # expired; the job has not run
    payload = shop.pay(member_id, "o-1", 700, [line("tee", 3000)], checkoutId=checkout["id"])
    conflicts = [e["code"] for e in payload["effects"] if e["kind"] == "CONFLICT"]
    assert conflicts == ["CHECKOUT_EXPIRED"]  # but the coupon and the points were still free: taken
    assert shop.coupon_row(welcome) == ("USED", None, "o-1")
    assert shop.read(select(func.sum(PointsEntry.delta)).where(PointsEntry.reason == "SPEND")) == [(-700,)]
    assert shop.checkout_status(checkout["id"]) == "EXPIRED" and gate.released == [(checkout["id"], "expired")]
    assert gate.paid[0].checkout_id is None  # plugins' holds were given back: nothing to capture


def test_paying_after_expiry_reports_each_missing_piece_as_a_conflict(shop, gate):
    member_id, token = shop.member("u-1", points=1000)
    welcome = shop.coupon(member_id, "WELCOME_10")
    checkout = shop.start(token, "k", [line("tee", 3000)], couponCodes=[welcome], pointsToRedeem=1000)["checkout"]
    clock.set_now(NOW + timedelta(minutes=20))
    jobs.run_due(shop.runtime, "demo", force=True)
    shop.pay(member_id, "o-elsewhere", 1000, couponCodes=[welcome], pointsRedeemed=1000)  # meanwhile
    payload = shop.pay(member_id, "o-1", 700, [line("tee", 3000)], checkoutId=checkout["id"])
    assert [e["code"] for e in payload["effects"] if e["kind"] == "CONFLICT"] == [
        "CHECKOUT_EXPIRED", "COUPON_ALREADY_USED", "INSUFFICIENT_POINTS"]
    assert shop.read(select(func.count()).select_from(Event).where(Event.kind == "order_paid")) == [(2,)]


def test_an_unknown_checkout_or_another_members_is_a_conflict_and_the_order_is_recorded(shop, gate):
    member_id, token = shop.member("u-1", points=1000)
    other_id, _ = shop.member("u-2")
    checkout = shop.start(token, "k", [line("tee", 3000)], pointsToRedeem=1000)["checkout"]
    for order_id, checkout_id in (("o-1", "chk_nope"), ("o-2", checkout["id"])):
        payload = shop.pay(other_id, order_id, 500, checkoutId=checkout_id)
        assert [(e["code"]) for e in payload["effects"] if e["kind"] == "CONFLICT"] == ["CHECKOUT_UNKNOWN"]
    assert shop.checkout_status(checkout["id"]) == "HELD" and shop.points(member_id) == (0, 1000)


# ---------------------------------------------------------------- races (PostgreSQL)


def race(shop: Shop, member_id: str, carts: list[dict]) -> list:
    """Start one checkout per cart at the same moment, each in its own thread and transaction."""
    barrier = threading.Barrier(len(carts))
    results: dict[int, object] = {}

    def run(i: int) -> None:
        barrier.wait()
        results[i] = holds.start_checkout(shop.runtime, shop.runtime.shop("demo"), None,
                                                  member_id=member_id, idempotency_key=f"race-{i}", **carts[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(carts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return [results[i] for i in range(len(carts))]


@postgres_only()
def test_checkouts_racing_for_one_coupon_exactly_one_holds_it(shop):
    member_id, _ = shop.member("u-1")
    shop.pay(member_id, "o-0", 0)  # not a first order: only the coupon is raced for, not its discount too
    welcome = shop.coupon(member_id, "WELCOME_10")
    cart = {"lines": [{"sku": "tee", "quantity": 1, "unit_price": 3000}], "coupon_codes": [welcome]}
    results = race(shop, member_id, [cart] * 6)
    held = [r for r in results if not r.errors]
    assert len(held) == 1, [r.errors for r in results]
    assert {e.code for r in results if r.errors for e in r.errors} == {"COUPON_HELD"}
    assert shop.coupon_row(welcome) == ("AVAILABLE", held[0].data["checkout_id"], None)
    assert shop.read(select(func.count()).select_from(Checkout)) == [(1,)]


@postgres_only()
def test_checkouts_racing_for_the_last_points_exactly_one_holds_them(shop):
    member_id, _ = shop.member("u-1", points=1000)
    shop.pay(member_id, "o-0", 0)  # not a first order: only the points are raced for, not its discount too
    cart = {"lines": [{"sku": "tee", "quantity": 1, "unit_price": 5000}], "points_to_redeem": 1000}
    results = race(shop, member_id, [cart] * 6)
    # a loser either priced the points in and was refused at the hold, or came late enough to see none left
    # (its checkout then holds no points and costs more): never two holds on the same points
    assert {e.code for r in results if r.errors for e in r.errors} <= {"INSUFFICIENT_POINTS"}
    using = [c.id for c in shop.read(select(Checkout.id, Checkout.quote)) if c.quote["points_used"]]
    assert len(using) == 1, [r.errors for r in results]
    assert shop.points(member_id) == (0, 1000)
    assert shop.read(select(PointsHold.checkout_id, PointsHold.amount)) == [(using[0], 1000)]


# ---------------------------------------------------------------- the contract


@shared_only
def test_the_demo_schema_keeps_the_whole_shared_contract(tmp_path):
    from memberkit import config as settings_module
    from memberkit.schema.builder import build_schema

    shop = settings_module.load(ROOT / "plugins.toml").shop("demo")
    sdl = tmp_path / "demo.graphql"
    sdl.write_text(build_schema(shop.plugins).as_str())
    check = subprocess.run([sys.executable, str(SHARED / "check-contract.py"), str(sdl)], capture_output=True,
                           text=True, check=False)
    assert check.returncode == 0 and "contract kept" in check.stdout, check.stdout


def test_the_checkout_part_of_the_contract_is_served_by_the_default_plugins_alone(tmp_path):
    from memberkit.schema.builder import build_schema

    changes = breaking_changes(build_schema(plugin_registry.enabled(())).as_str())
    assert any("Member.points" in change for change in changes)  # what other plugins own is missing
    ours = ("Adjustment", "PurchaseDenial", "Quote", "Checkout", "CartInput", "quoteCart", "startCheckout",
            "releaseCheckout")
    assert [change for change in changes if any(name in change for name in ours)] == []



def test_checkout_settings_are_validated_per_shop(settings_file, gate):
    from memberkit import config as settings_module

    bad = demo_config('[shops.demo.settings.checkout]\nmax_coupons = -1\npercent_rule = "sum"\nhold_minutes = 0\n')
    with pytest.raises(settings_module.SettingsError) as raised:
        settings_module.load(settings_file(bad))
    found = {(p.shop, p.plugin, p.key) for p in raised.value.problems}
    assert found == {("demo", "checkout", "max_coupons"), ("demo", "checkout", "percent_rule"),
                     ("demo", "checkout", "hold_minutes")}, raised.value.problems
    settings = settings_module.load(ROOT / "plugins.toml").shop("demo").settings_for("checkout")
    assert (settings.max_coupons, settings.hold_minutes, settings.percent_rule) == (1, 15, "largest")


def test_one_unit_price_per_line_even_when_every_percent_applies():
    from memberkit.plugin import Adjustment
    from memberkit.plugins.checkout.pricing import fold

    member = Adjustment("member_only", "MEMBER_PRICE", "member price", -500, "A", "unit_price:A")
    flash = Adjustment("flash_sale", "FLASH_PRICE", "flash sale", -800, "A", "unit_price:A")
    other_line = Adjustment("member_only", "MEMBER_PRICE", "member price", -100, "B", "unit_price:B")
    birthday = Adjustment("perks", "BIRTHDAY", "birthday", -50, None, "percent")
    member_day = Adjustment("perks", "MEMBER_DAY", "member day", -70, None, "percent")
    proposed = [member, flash, other_line, birthday, member_day]
    assert fold(proposed, "largest") == [flash, other_line, member_day]
    assert fold(proposed, "all") == [flash, other_line, birthday, member_day]


def test_a_coupon_that_would_take_nothing_is_not_held(make_shop):
    shop = make_shop("[shops.demo.settings.checkout]\nmax_coupons = 2\n")
    member_id, token = shop.member("u-1")
    big, small = shop.coupon(member_id, "BIRTHDAY_50"), shop.coupon(member_id, "POINTS_10")
    quote = shop.quote(token, [line("tee", 4000)], couponCodes=[big, small])
    assert quote["total"]["amount"] == 0 and quote["couponCodes"] == [big]
    assert [(p["couponCode"], p["code"]) for p in quote["couponProblems"]] == [(small, "COUPON_NOTHING_LEFT")]


def test_two_open_checkouts_cannot_both_take_the_first_order_discount(make_shop):
    shop = make_shop()
    member_id, token = shop.member("u-1")
    first = shop.start(token, "tab-1", [line("tee", 10000)])
    assert first["errors"] == [] and "FIRST_ORDER" in [a["code"] for a in first["checkout"]["quote"]["adjustments"]]
    second = shop.start(token, "tab-2", [line("cap", 5000)])
    assert [e["code"] for e in second["errors"]] == ["FIRST_ORDER_HELD"] and second["checkout"] is None
    shop.release(token, first["checkout"]["id"])
    assert shop.start(token, "tab-3", [line("cap", 5000)])["errors"] == []


def test_the_checkout_payment_hook_says_what_an_order_pays_with(make_shop):
    from dataclasses import replace

    from memberkit.plugin import PaidOrder

    shop = make_shop()
    member_id, token = shop.member("u-1")
    welcome = shop.coupon(member_id, "WELCOME_10")
    held = shop.start(token, "k", [line("tee", 3000)], couponCodes=[welcome])["checkout"]
    order = PaidOrder("o-1", member_id, 2000, "CNY", NOW, checkout_id=held["id"])
    with shop.runtime.transaction(shop.runtime.shop("demo")) as ctx:
        paying = ctx.hook.checkout_payment(ctx=ctx, order=order)
        unknown = ctx.hook.checkout_payment(ctx=ctx, order=replace(order, checkout_id="chk_nope"))
        again = ctx.hook.checkout_payment(ctx=ctx, order=replace(order, order_id="o-2"))
    assert (paying.order.checkout_id, paying.order.coupon_codes, paying.held_points) == (held["id"], (welcome,), 0)
    assert [(e.plugin, e.kind) for e in paying.effects] == [("checkout", "CHECKOUT_COMPLETED")]
    assert unknown.order.checkout_id is None and [e.code for e in unknown.effects] == ["CHECKOUT_UNKNOWN"]
    assert again.order.checkout_id is None and [e.code for e in again.effects] == ["CHECKOUT_COMPLETED"]


def test_erasing_a_member_releases_their_held_checkout_and_empties_its_cart(shop):
    from memberkit.schema import erasure

    member_id, token = shop.member("u-1", points=1000)
    welcome = shop.coupon(member_id, "WELCOME_10")
    checkout = shop.start(token, "tab-1", [line("tee", 3000)], couponCodes=[welcome], pointsToRedeem=1000)["checkout"]
    assert shop.points(member_id) == (300, 700)
    demo = shop.runtime.shop("demo")
    assert erasure.erase_member(shop.runtime, demo, None, member_id=member_id, idempotency_key="e-1").errors == []
    assert shop.coupon_row(welcome) == ("AVAILABLE", None, None) and shop.points(member_id) == (1000, 0)
    assert shop.read(select(Checkout.status, Checkout.cart, Checkout.quote).where(Checkout.id == checkout["id"])) == [
        ("RELEASED", {}, {})]
