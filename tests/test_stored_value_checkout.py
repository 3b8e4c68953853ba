"""Stored value spent at checkout with the demo shop's numbers (RULES.md 10, issue 15 points 2, 3 and 8):
held by startCheckout, captured by the paid order (principal and bonus in proportion), given back on release
or expiry, a lapsed hold's shortfall reported, refunds returning the order's parts to the fen, and points and
tier spend counted on the order's total less the bonus it spent."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from memberkit import jobs
from memberkit.core import clock
from memberkit.plugins.points.models import PointsAccount
from memberkit.plugins.stored_value.models import StoredValueEntry, StoredValueLot
from tests.conftest import ORDER_PAID
from tests.test_stored_value import DEMO, account, top_up

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
START = """mutation($input: CheckoutInput!) { startCheckout(input: $input) {
  duplicate errors { code field message }
  checkout { id status quote { total { amount } storedValue { amount } } } } }"""
QUOTE = """query($input: CartInput!) { quoteCart(input: $input) { total { amount } storedValue { amount } } }"""
RELEASE = """mutation($id: ID!) { releaseCheckout(id: $id) { errors { code } checkout { status } } }"""
TOKEN = """mutation($id: ID!) { createMemberToken(memberId: $id) { token } }"""  # noqa: S105
REFUND = """mutation($input: OrderRefundedInput!) { recordOrderRefunded(input: $input) {
  errors { code field } effects { plugin kind code description } } }"""
TEE = [{"sku": "tee", "quantity": 1, "unitPrice": 30000}]


def config(without: tuple[str, ...] = ()) -> str:
    """The demo shop without the plugins that change a price (first-order gifts, member and flash prices), so
    a cart of 300 yuan costs 300; `without` drops more."""
    dropped = ("perks", "member_only", "flash_sale", "referral", *without)
    kept, skipping = [], False
    for line in DEMO.splitlines():
        if line.startswith("["):
            skipping = bool(re.match(rf"^\[\[?shops\.demo\.settings\.({'|'.join(dropped)})\b", line))
        if not skipping:
            kept.append(line)
    plugins = [p for p in ("points", "tiering", "stored_value", "segments", "webhooks") if p not in dropped]
    return re.sub(r"(?m)^plugins = \[.*\]$", f"plugins = {plugins}".replace("'", '"'), "\n".join(kept), count=1)


class Demo:
    def __init__(self, runtime, api):
        self.runtime, self.api, self.key = runtime, api, api.key("demo")

    def member(self, external_id: str, top_up_amount: int = 0) -> str:
        member_id = self.api.sign_up(self.key, external_id)
        if top_up_amount:
            assert top_up(self.api, self.key, member_id, f"t-{external_id}", top_up_amount)["errors"] == []
        return member_id

    def start(self, member_id: str, key: str, to_use: int | None, lines=TEE) -> dict:
        return self.api(START, {"input": {"lines": lines, "idempotencyKey": key, "memberId": member_id,
                                          "storedValueToUse": to_use}}, self.key)["startCheckout"]

    def pay(self, member_id: str, order_id: str, total: int, checkout_id: str | None = None) -> dict:
        payload = self.api(ORDER_PAID, {"input": {"orderId": order_id, "memberId": member_id, "total": total,
                                                  "checkoutId": checkout_id}}, self.key)["recordOrderPaid"]
        assert payload["errors"] == [], payload
        return payload

    def refund(self, order_id: str, refund_id: str, amount: int) -> list[dict]:
        payload = self.api(REFUND, {"input": {"orderId": order_id, "refundId": refund_id, "amount": amount}},
                           self.key)["recordOrderRefunded"]
        assert payload["errors"] == [], payload
        return [e for e in payload["effects"] if e["plugin"] == "stored_value"]

    def account(self, member_id: str) -> dict:
        return account(self.api, self.key, member_id)

    def lots(self, member_id: str) -> dict[str, int]:
        """What the open lots hold, by kind; no lot is ever below zero."""
        with self.runtime.db.read() as conn:
            lots = conn.execute(select(StoredValueLot.kind, StoredValueLot.remaining, StoredValueLot.state)
                                .where(StoredValueLot.member_id == member_id)).all()
        assert all(lot.remaining >= 0 for lot in lots)
        return {kind: sum(lot.remaining for lot in lots if lot.kind == kind and lot.state == "open")
                for kind in ("principal", "bonus")}


@pytest.fixture
def demo(make_runtime, make_api) -> Demo:
    clock.set_now(NOW)
    runtime = make_runtime(config())
    return Demo(runtime, make_api(runtime))


def money_of(got: dict) -> tuple[int, int, int, int]:
    return got["balance"], got["principal"], got["bonus"], got["held"]


def kinds(payload: dict) -> list[tuple[str, str | None]]:
    return [(e["kind"], e["code"]) for e in payload["effects"] if e["plugin"] == "stored_value"]


def test_a_checkout_holds_stored_value_and_the_paid_order_takes_it_in_proportion(demo):
    member_id = demo.member("u-1", 100000)  # 1,000 yuan: 120 bonus, 1,120 to spend
    started = demo.start(member_id, "k-1", 20000)
    assert started["errors"] == []
    checkout = started["checkout"]
    assert checkout["quote"] == {"total": {"amount": 30000}, "storedValue": {"amount": 20000}}
    assert money_of(demo.account(member_id)) == (92000, 100000, 12000, 20000)  # held, still in the lots
    paid = demo.pay(member_id, "o-1", 30000, checkout["id"])
    assert kinds(paid) == [("STORED_VALUE_SPENT", None)]
    # proportional: 20,000 * 100,000 // 112,000 = 17,857 of principal, 2,143 of bonus
    assert "principal 178.57, bonus 21.43" in paid["effects"][[e["kind"] for e in paid["effects"]].index(
        "STORED_VALUE_SPENT")]["description"]
    got = demo.account(member_id)
    assert money_of(got) == (92000, 82143, 9857, 0)
    assert demo.lots(member_id) == {"principal": 82143, "bonus": 9857}
    assert got["history"][0] == {"principal": -17857, "bonus": -2143, "reason": "SPEND", "rule": "order",
                                 "reference": "o-1"}
    # points and tier spend on the total less the bonus spent: 300.00 - 21.43 = 278.57 yuan -> 278 points
    assert got["points"] == 278
    with demo.runtime.db.read() as conn:
        assert conn.execute(select(PointsAccount.lifetime_spend)
                            .where(PointsAccount.member_id == member_id)).scalar() == 30000 - 2143
    # the checkout is completed: paying it again takes nothing more
    again = demo.pay(member_id, "o-2", 100, checkout["id"])
    assert kinds(again) == [] and demo.account(member_id)["balance"] == 92000


def test_the_quote_takes_at_most_the_total_and_a_checkout_at_most_the_balance(demo):
    member_id = demo.member("u-1", 100000)
    assert demo.api(QUOTE, {"input": {"lines": TEE, "memberId": member_id, "storedValueToUse": 50000}},
                    demo.key)["quoteCart"] == {"total": {"amount": 30000}, "storedValue": {"amount": 30000}}
    anonymous = demo.api(QUOTE, {"input": {"lines": TEE, "storedValueToUse": 50000}}, demo.api.key("demo",
                         "publishable"))["quoteCart"]
    assert anonymous["storedValue"] == {"amount": 0}  # no member, no balance
    capped = demo.start(member_id, "k-1", 50000)["checkout"]["quote"]["storedValue"]
    assert capped == {"amount": 30000}  # never more than the total: the cash part is 0
    assert demo.account(member_id)["held"] == 30000
    poor = demo.member("u-2", 10000)
    refused = demo.start(poor, "k-2", 20000)
    assert refused["checkout"] is None
    assert [(e["code"], e["field"]) for e in refused["errors"]] == [("INSUFFICIENT_BALANCE", "storedValueToUse")]
    assert "the balance is 10000" in refused["errors"][0]["message"]
    assert money_of(demo.account(poor)) == (10000, 10000, 0, 0)  # nothing held
    negative = demo.start(poor, "k-3", -1)
    assert [(e["code"], e["field"]) for e in negative["errors"]] == [("NEGATIVE_AMOUNT", "storedValueToUse")]
    none = demo.start(poor, "k-4", None)
    assert none["errors"] == [] and none["checkout"]["quote"]["storedValue"] == {"amount": 0}


def test_release_and_expiry_give_the_hold_back_once(demo):
    member_id = demo.member("u-1", 50000)  # 500 yuan + 50 bonus
    first = demo.start(member_id, "k-1", 30000)["checkout"]
    second = demo.start(member_id, "k-2", 20000)["checkout"]
    assert money_of(demo.account(member_id)) == (5000, 50000, 5000, 50000)
    assert demo.api(RELEASE, {"id": first["id"]}, demo.api(TOKEN, {"id": member_id}, demo.key)[
        "createMemberToken"]["token"])["releaseCheckout"]["errors"] == []
    assert money_of(demo.account(member_id)) == (35000, 50000, 5000, 20000)
    clock.set_now(NOW + timedelta(minutes=20))
    jobs.run_due(demo.runtime, "demo", force=True)
    jobs.run_due(demo.runtime, "demo", force=True)
    assert money_of(demo.account(member_id)) == (55000, 50000, 5000, 0)
    assert demo.lots(member_id) == {"principal": 50000, "bonus": 5000}
    assert second["id"] != first["id"]


def test_paying_after_the_hold_lapsed_takes_what_is_there_and_reports_the_shortfall(demo):
    member_id = demo.member("u-1", 50000)  # 55,000 to spend
    lapsed = demo.start(member_id, "k-1", 40000)["checkout"]  # capped at the total: 30,000
    clock.set_now(NOW + timedelta(minutes=20))
    jobs.run_due(demo.runtime, "demo", force=True)  # the hold goes back
    other = demo.start(member_id, "k-2", 50000, lines=[{"sku": "coat", "quantity": 1, "unitPrice": 60000}])
    demo.pay(member_id, "o-coat", 60000, other["checkout"]["id"])
    assert demo.account(member_id)["balance"] == 5000
    paid = demo.pay(member_id, "o-tee", 30000, lapsed["id"])
    assert kinds(paid) == [("STORED_VALUE_SPENT", None), ("CONFLICT", "STORED_VALUE_SHORTFALL")]
    shortfall = [e for e in paid["effects"] if e["code"] == "STORED_VALUE_SHORTFALL"][0]
    assert "250.00 of the 300.00" in shortfall["description"]  # the platform must still collect 250 yuan
    assert money_of(demo.account(member_id)) == (0, 0, 0, 0)
    assert demo.lots(member_id) == {"principal": 0, "bonus": 0}
    # the hold is captured: another order naming the checkout takes nothing
    assert kinds(demo.pay(member_id, "o-3", 100, lapsed["id"])) == []


@pytest.mark.parametrize("refunds", [[10000, 10000, 10001], [1, 2, 29998], [30001]])
def test_refunds_return_the_stored_value_share_in_the_orders_parts_to_the_fen(demo, refunds):
    member_id = demo.member("u-1", 100000)  # 100,000 principal + 12,000 bonus
    checkout = demo.start(member_id, "k-1", 20000, lines=[{"sku": "tee", "quantity": 1, "unitPrice": 30001}])
    demo.pay(member_id, "o-1", 30001, checkout["checkout"]["id"])
    returned = cash = 0
    for n, amount in enumerate(refunds):
        effects = demo.refund("o-1", f"r-{n}", amount)
        [cash_effect] = [e for e in effects if e["kind"] == "STORED_VALUE_CASH_REFUND"]
        cash += int(round(float(re.match(r"([\d.]+) of the refund", cash_effect["description"]).group(1)) * 100))
        refunded = sum(refunds[:n + 1])
        got = demo.account(member_id)
        returned = got["balance"] - 92000
        assert returned == 20000 * refunded // 30001  # the cumulative share, never ahead of it
        assert demo.lots(member_id) == {"principal": got["principal"], "bonus": got["bonus"]}
    assert returned == 20000 and cash == 30001 - 20000  # every fen back where it came from
    assert money_of(demo.account(member_id)) == (112000, 100000, 12000, 0)
    with demo.runtime.db.read() as conn:
        entries = conn.execute(select(StoredValueEntry.principal, StoredValueEntry.bonus).where(
            StoredValueEntry.member_id == member_id, StoredValueEntry.reason == "RETURN")).all()
    assert (sum(e.principal for e in entries), sum(e.bonus for e in entries)) == (17857, 2143)
    with demo.runtime.db.read() as conn:  # lifetime spend counted 30,001 - 2,143 and gives back exactly that
        assert conn.execute(select(PointsAccount.lifetime_spend)
                            .where(PointsAccount.member_id == member_id)).scalar() == 0


def test_an_order_without_stored_value_earns_on_its_whole_total(demo):
    member_id = demo.member("u-1", 100000)
    checkout = demo.start(member_id, "k-1", None)["checkout"]
    paid = demo.pay(member_id, "o-1", 30000, checkout["id"])
    assert kinds(paid) == [] and demo.account(member_id)["points"] == 300
    assert demo.refund("o-1", "r-1", 30000) == []  # nothing of stored value to return


@pytest.mark.skipif(bool(__import__("os").environ.get("MEMBERKIT_TEST_DATABASE_URL")),
                    reason="counts SQLite's statements (the same plan on both)")
def test_a_checkout_spending_no_stored_value_adds_one_statement_to_its_order(make_runtime, make_api):
    def statements_of_a_checkout_order(settings: str) -> list[str]:
        clock.set_now(NOW)
        shop = Demo(*(lambda runtime: (runtime, make_api(runtime)))(make_runtime(settings)))
        member_id = shop.member("u-1")
        shop.pay(member_id, "o-0", 100, shop.start(member_id, "k-0", None)["checkout"]["id"])
        checkout_id = shop.start(member_id, "k-1", None)["checkout"]["id"]
        seen: list[str] = []
        with shop.runtime.db.write() as conn:  # the process's one writer: traced from now on
            conn.connection.driver_connection.set_trace_callback(seen.append)
        shop.pay(member_id, "o-1", 30000, checkout_id)
        return seen

    with_stored_value = statements_of_a_checkout_order(config())
    assert len(with_stored_value) - len(statements_of_a_checkout_order(config(("stored_value",)))) == 1
    assert sum("stored_value_hold" in sql for sql in with_stored_value) == 1


def test_a_shop_without_stored_value_refuses_to_take_it_at_checkout(make_runtime, make_api):
    clock.set_now(NOW)
    runtime = make_runtime(config(("stored_value",)))
    shop = Demo(runtime, make_api(runtime))
    member_id = shop.member("u-1")
    refused = shop.start(member_id, "k-1", 100)
    assert [(e["code"], e["field"]) for e in refused["errors"]] == [("STORED_VALUE_UNSUPPORTED", "storedValueToUse")]
    assert shop.start(member_id, "k-2", 0)["errors"] == []
