"""The stored_value plugin with the demo shop's numbers (RULES.md 10): top-ups and their bonus, top-up
refunds, bonus expiry, the liability figures, and the rounding that never creates or loses a fen."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from memberkit import jobs
from memberkit.core import clock, intake
from memberkit.plugins.stored_value import ledger
from memberkit.plugins.stored_value.ledger import TopUpState, split
from memberkit.plugins.stored_value.settings import StoredValueSettings
from memberkit.plugins.webhooks.models import WebhookEvent
from tests.conftest import ROOT, sign_up

DEMO = (ROOT / "plugins.toml").read_text()
PAID_AT = "2026-03-10T02:00:00Z"

ACCOUNT = """query($id: ID) { member(id: $id) { storedValue {
  balance { amount } principal { amount } bonus { amount } held { amount } refundable { amount }
  history(first: 20) { edges { node { principal bonus reason rule reference } } pageInfo { hasNextPage } }
} points { balance } } }"""
TOP_UP = """mutation($input: TopUpInput!) { recordTopUp(input: $input) {
  duplicate effects { plugin kind rule description } errors { code field } member { id } } }"""
REFUND = """mutation($input: TopUpRefundInput!) { refundTopUp(input: $input) {
  duplicate effects { kind rule description } errors { code field } } }"""


@pytest.fixture
def demo(make_runtime, make_api):
    runtime = make_runtime(DEMO)
    api = make_api(runtime)
    return runtime, api, api.key("demo")


def top_up(api, key, member_id, top_up_id, amount, paid_at=PAID_AT):
    return api(TOP_UP, {"input": {"topUpId": top_up_id, "memberId": member_id, "amount": amount,
                                  "paidAt": paid_at}}, key)["recordTopUp"]


def refund(api, key, refund_id, top_up_id, amount):
    return api(REFUND, {"input": {"refundId": refund_id, "topUpId": top_up_id, "amount": amount,
                                  "refundedAt": PAID_AT}}, key)["refundTopUp"]


def account(api, key, member_id) -> dict:
    member = api(ACCOUNT, {"id": member_id}, key)["member"]
    sv = member["storedValue"]
    return {"balance": sv["balance"]["amount"], "principal": sv["principal"]["amount"],
            "bonus": sv["bonus"]["amount"], "held": sv["held"]["amount"], "refundable": sv["refundable"]["amount"],
            "history": [edge["node"] for edge in sv["history"]["edges"]], "points": member["points"]["balance"]}


def spend(runtime, member_id, amount, reference):
    """A purchase's spend, as one event (what a checkout capture runs)."""
    def handle(ctx):
        return intake.EventResult(member_id, data={"taken": ledger.spend(ctx, member_id, amount, reference)})
    result = intake.run_event(runtime, runtime.shop("demo"), "stored_value.test_spend", reference,
                              {"amount": amount}, handle)
    assert result.errors == [], result.errors
    return tuple(result.data["taken"])


def test_a_top_up_credits_principal_and_the_largest_bonus_reached_and_earns_no_points(demo):
    runtime, api, key = demo
    member_id = sign_up(api, key, "u-1")
    payload = top_up(api, key, member_id, "t-1", 150000)  # 1,500 yuan: the 1,000 rule (120), not 500's
    assert payload["errors"] == [] and payload["duplicate"] is False and payload["member"] == {"id": member_id}
    assert [(e["kind"], e["rule"]) for e in payload["effects"]] == [
        ("STORED_VALUE_TOPPED_UP", "principal"), ("STORED_VALUE_BONUS", "bonus:100000")]
    assert "bonus +120.00 (top-ups of 1000.00 or more" in payload["effects"][1]["description"]
    top_up(api, key, member_id, "t-2", 49999)  # below every rule: principal only
    got = account(api, key, member_id)
    assert (got["balance"], got["principal"], got["bonus"], got["held"]) == (212000 - 1, 199999, 12000, 0)
    assert got["refundable"] == 199999 and got["points"] == 0  # a top-up is not an order
    progress = api("query($id: ID) { member(id: $id) { tierProgress { qualifyingSpend { amount } } } }",
                   {"id": member_id}, key)["member"]["tierProgress"]
    assert progress["qualifyingSpend"]["amount"] == 0  # nor tier spend
    assert got["history"] == [
        {"principal": 49999, "bonus": 0, "reason": "TOP_UP", "rule": "none", "reference": "t-2"},
        {"principal": 150000, "bonus": 12000, "reason": "TOP_UP", "rule": "bonus:100000", "reference": "t-1"}]


def test_top_ups_are_idempotent_and_bad_input_changes_nothing(demo):
    runtime, api, key = demo
    member_id = sign_up(api, key, "u-1")
    assert top_up(api, key, member_id, "t-1", 200000)["effects"][1]["rule"] == "bonus:200000"
    again = top_up(api, key, member_id, "t-1", 200000)
    assert again["duplicate"] is True and again["errors"] == []
    assert top_up(api, key, member_id, "t-1", 100000)["errors"] == [{"code": "IDEMPOTENCY_CONFLICT",
                                                                     "field": "topUpId"}]
    assert top_up(api, key, member_id, "t-2", 0)["errors"] == [{"code": "NEGATIVE_AMOUNT", "field": "amount"}]
    assert top_up(api, key, member_id, "t-3", -500)["errors"] == [{"code": "NEGATIVE_AMOUNT", "field": "amount"}]
    assert top_up(api, key, "mem_nobody", "t-4", 500)["errors"] == [{"code": "MEMBER_NOT_FOUND",
                                                                     "field": "memberId"}]
    assert top_up(api, key, member_id, "t-5", 500, paid_at="2026-03-10T10:00:00")["errors"] == [
        {"code": "TIMESTAMP_WITHOUT_OFFSET", "field": "paidAt"}]
    assert top_up(api, key, member_id, "t-6", 500, paid_at="2099-01-01T00:00:00Z")["errors"] == [
        {"code": "TIMESTAMP_OUT_OF_RANGE", "field": "paidAt"}]
    other = sign_up(api, key, "u-2")
    assert top_up(api, key, other, "t-1", 200000)["errors"][0]["code"] == "IDEMPOTENCY_CONFLICT"
    got = account(api, key, member_id)
    assert (got["principal"], got["bonus"], len(got["history"])) == (200000, 30000, 1)
    assert account(api, key, other)["balance"] == 0


def test_two_shops_never_mix(make_runtime, make_api):
    second = DEMO.replace("[shops.demo", "[shops.other").replace('name = "memberkit demo shop"', 'name = "Other"')
    runtime = make_runtime(DEMO + "\n" + second)
    api = make_api(runtime)
    demo_key, other_key = api.key("demo"), api.key("other")
    mine, theirs = sign_up(api, demo_key, "u-1"), sign_up(api, other_key, "u-1")
    assert top_up(api, other_key, mine, "t-1", 50000)["errors"] == [{"code": "MEMBER_NOT_FOUND", "field": "memberId"}]
    assert top_up(api, demo_key, mine, "t-1", 50000)["errors"] == []
    assert top_up(api, other_key, theirs, "t-1", 100000)["errors"] == []  # the same id, another shop's top-up
    assert refund(api, other_key, "r-1", "t-1", 100000)["errors"] == []
    assert account(api, demo_key, mine)["principal"] == 50000 and account(api, other_key, theirs)["balance"] == 0


def test_top_up_refunds_take_the_bonus_back_in_proportion_to_the_fen(demo):
    runtime, api, key = demo
    member_id = sign_up(api, key, "u-1")
    top_up(api, key, member_id, "t-1", 100000)  # bonus 12000
    first = refund(api, key, "r-1", "t-1", 33333)  # bonus due: 12000 * 33333 // 100000 = 3999
    assert first["errors"] == [] and [e["kind"] for e in first["effects"]] == [
        "STORED_VALUE_REFUNDED", "STORED_VALUE_BONUS_REVERSED"]
    assert refund(api, key, "r-1", "t-1", 33333)["duplicate"] is True
    got = account(api, key, member_id)
    assert (got["principal"], got["bonus"]) == (100000 - 33333, 12000 - 3999)
    refund(api, key, "r-2", "t-1", 33333)  # cumulative: 12000 * 66666 // 100000 = 7999, so 4000 this time
    assert account(api, key, member_id)["bonus"] == 12000 - 7999
    assert refund(api, key, "r-3", "t-1", 33335)["errors"] == [{"code": "INSUFFICIENT_BALANCE", "field": "amount"}]
    refund(api, key, "r-3", "t-1", 33334)  # the rest: the whole bonus is back, not a fen more or less
    got = account(api, key, member_id)
    assert (got["balance"], got["principal"], got["bonus"], got["refundable"]) == (0, 0, 0, 0)
    assert [(h["principal"], h["bonus"]) for h in got["history"]] == [
        (-33334, -4001), (-33333, -4000), (-33333, -3999), (100000, 12000)]
    assert refund(api, key, "r-4", "t-nope", 1)["errors"] == [{"code": "TOP_UP_NOT_FOUND", "field": "topUpId"}]
    assert refund(api, key, "r-5", "t-1", 0)["errors"] == [{"code": "NEGATIVE_AMOUNT", "field": "amount"}]


def test_a_proportional_spend_leaves_the_whole_unspent_principal_refundable(demo):
    runtime, api, key = demo
    member_id = sign_up(api, key, "u-1")
    top_up(api, key, member_id, "t-1", 50000)  # principal 50000, bonus 5000
    assert spend(runtime, member_id, 11000, "o-1") == (10000, 1000)  # 11000 * 50000 // 55000 principal
    got = account(api, key, member_id)  # refunding 40000 takes back 5000 * 40000 // 50000 = 4000: all there
    assert (got["principal"], got["bonus"], got["refundable"]) == (40000, 4000, 40000)


def test_a_refund_keeps_principal_for_bonus_already_spent(make_runtime, make_api):
    runtime = make_runtime(DEMO.replace('spend_order = "proportional"', 'spend_order = "bonus_first"'))
    api = make_api(runtime)
    key = api.key("demo")
    member_id = sign_up(api, key, "u-1")
    top_up(api, key, member_id, "t-1", 50000)  # principal 50000, bonus 5000
    assert spend(runtime, member_id, 5000, "o-1") == (0, 5000)
    # A refund of x takes back 5000 * x // 50000 = x // 10 of bonus, all spent: it keeps that much principal,
    # so x + x // 10 <= 50000: at most 45455 (45455 + 4545 = 50000).
    got = account(api, key, member_id)
    assert (got["principal"], got["bonus"], got["refundable"]) == (50000, 0, 45455)
    assert refund(api, key, "r-1", "t-1", 45456)["errors"] == [{"code": "INSUFFICIENT_BALANCE", "field": "amount"}]
    payload = refund(api, key, "r-1", "t-1", 45455)
    assert [e["kind"] for e in payload["effects"]] == ["STORED_VALUE_REFUNDED", "STORED_VALUE_BONUS_CHARGED"]
    got = account(api, key, member_id)
    assert (got["principal"], got["bonus"], got["refundable"]) == (0, 0, 0)
    assert got["history"][0] == {"principal": -50000, "bonus": 0, "reason": "TOP_UP_REFUND", "rule": "refund",
                                 "reference": "r-1"}


def test_the_bonus_expires_by_the_job_once_and_the_principal_never(demo):
    runtime, api, key = demo
    member_id = sign_up(api, key, "u-1")
    top_up(api, key, member_id, "t-1", 50000, paid_at="2026-01-31T02:00:00Z")
    assert [(e["principal"], e["bonus"], e["reason"]) for e in changed_events(runtime)] == [(50000, 5000, "TOP_UP")]
    with clock.frozen(datetime(2027, 1, 31, 1, 0, tzinfo=UTC)):  # 31 Jan 09:00 Shanghai: 1 hour to go
        assert account(api, key, member_id)["bonus"] == 5000
    with clock.frozen(datetime(2027, 1, 31, 2, 0, tzinfo=UTC)):
        assert account(api, key, member_id)["bonus"] == 0  # due: a read does not wait for the job
        runs = [r for r in jobs.run_due(runtime, force=True) if r.job == "stored_value.expire_bonuses"]
        assert [r.status for r in runs] == ["done"]
        jobs.run_due(runtime, force=True)  # a repeat expires nothing twice
        got = account(api, key, member_id)
        assert (got["principal"], got["bonus"], got["refundable"]) == (50000, 0, 50000)
        assert [h["reason"] for h in got["history"]] == ["EXPIRE", "TOP_UP"]
        assert got["history"][0]["bonus"] == -5000
        expired = [e for e in changed_events(runtime) if e["reason"] == "EXPIRE"]  # (the job prunes old events)
        assert [(e["principal"], e["bonus"], e["reference"]) for e in expired] == [(0, -5000, "t-1")]


def changed_events(runtime) -> list[dict]:
    """The stored_value.changed events in the outbox: amounts and ids, never personal data."""
    with runtime.db.read() as conn:
        rows = conn.execute(select(WebhookEvent.data).where(WebhookEvent.type == "stored_value.changed")
                            .order_by(WebhookEvent.id)).scalars().all()
    events = [json.loads(row) for row in rows]
    assert all(set(e) <= {"principal", "bonus", "reason", "rule", "reference", "entryId", "cause", "settingsVersion",
                          "member"} for e in events), events
    return events


def test_kpis_roll_the_liability_forward_principal_and_bonus_apart(demo):
    runtime, api, key = demo
    member_id = sign_up(api, key, "u-1")
    top_up(api, key, member_id, "t-1", 100000)
    spend(runtime, member_id, 22400, "o-1")  # 20000 principal, 2400 bonus
    refund(api, key, "r-1", "t-1", 50000)  # bonus due 6000
    query = """query($from: DateTime!, $to: DateTime!) { programmeKpis(from: $from, to: $to) {
      storedValue { principal { opening issued spent reversed expired closing }
                    bonus { opening issued spent reversed expired closing } } } }"""
    hour = clock.now().replace(minute=0, second=0, microsecond=0)  # Shanghai's hours start on UTC's
    kpis = api(query, {"from": (hour - timedelta(days=1)).isoformat(), "to": (hour + timedelta(hours=1)).isoformat()},
               key)["programmeKpis"]["storedValue"]
    got = account(api, key, member_id)
    assert kpis["principal"] == {"opening": 0, "issued": 100000, "spent": 20000, "reversed": 50000, "expired": 0,
                                 "closing": got["principal"]}
    assert kpis["bonus"] == {"opening": 0, "issued": 12000, "spent": 2400, "reversed": 6000, "expired": 0,
                             "closing": got["bonus"]}


@given(st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 10**9))
def test_a_proportional_split_creates_and_loses_no_fen(principal, bonus, seed):
    total = principal + bonus
    amount = seed % (total + 1)
    from_principal, from_bonus = split(StoredValueSettings(), principal, bonus, amount)
    assert from_principal + from_bonus == amount
    assert 0 <= from_principal <= principal and 0 <= from_bonus <= bonus


@pytest.mark.parametrize("order", ["bonus_first", "principal_first"])
def test_ordered_splits_take_one_kind_first(order):
    settings = StoredValueSettings(spend_order=order)
    assert split(settings, 700, 300, 500) == ((200, 300) if order == "bonus_first" else (500, 0))


@given(st.integers(1, 400), st.integers(0, 200), st.data())
def test_refundable_is_the_largest_refund_that_fits(amount, bonus, data):
    refunded = data.draw(st.integers(0, amount))
    taken_back = bonus * refunded // amount
    principal_left = data.draw(st.integers(0, amount - refunded))
    bonus_left = data.draw(st.integers(0, bonus - taken_back))
    spent = data.draw(st.integers(0, bonus - taken_back - bonus_left))
    state = TopUpState(amount, bonus, refunded, taken_back, principal_left, bonus_left, spent)
    fits = [x for x in range(0, amount - refunded + 1) if x + state.charge(x) <= principal_left]
    assert state.refundable() == max(fits)
