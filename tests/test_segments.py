"""The segments plugin's lifecycle stages (RULES.md section 7): NEW, ACTIVE, DORMANT and CHURNED by the shop's
calendar days since the last paid order; orders and refunds move members in their own transaction, the
job moves them as days pass; the win-back coupon once per dormant spell; other plugins hear it through
core, and the platform through lifecycle.changed."""

from __future__ import annotations

import itertools
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from memberkit.plugin import Plugin, hookimpl
from memberkit.plugins.webhooks.models import WebhookEvent
from tests.conftest import TEST_DATABASE_URL

DEMO = (Path(__file__).resolve().parents[1] / "plugins.toml").read_text()
SHANGHAI = "+08:00"
SHANGHAI_TZ = ZoneInfo("Asia/Shanghai")
MEMBER = """query($id: ID!) { member(id: $id) {
  lifecycle { stage since lastOrderAt }
  lifecycleHistory { fromStage toStage reason reference }
  coupons(status: null) { source } } }"""


def at(text: str) -> datetime:
    return datetime.fromisoformat(text + SHANGHAI).astimezone(UTC)


class StageWatcher:
    def __init__(self):
        self.changes = []

    @hookimpl
    def lifecycle_changed(self, ctx, member_id, before, after, reason, since):
        self.changes.append((member_id, before, after, reason, since))


@pytest.fixture
def watched(memberkit):
    watcher = StageWatcher()
    settings = DEMO.replace('"segments", "webhooks"]', '"segments", "webhooks", "stage_watcher"]')
    shop = memberkit(settings, plugins=[Plugin("stage_watcher", hooks=watcher)])
    return shop, watcher


def member(shop, member_id: str) -> dict:
    return shop.integrator("demo")(MEMBER, {"id": member_id})["member"]


def winbacks(shop, member_id: str) -> int:
    return sum(1 for c in member(shop, member_id)["coupons"] if c["source"] == "perks:winback_coupon")


def lifecycle_events(shop) -> list[dict]:
    with shop.runtime.db.read() as conn:
        rows = conn.execute(select(WebhookEvent.data).where(WebhookEvent.type == "lifecycle.changed")
                            .order_by(WebhookEvent.id)).scalars()
        return [json.loads(data) for data in rows]


def test_a_member_is_new_until_a_first_order_then_active_and_an_order_by_an_active_one_changes_nothing(watched):
    shop, watcher = watched
    shop.clock.set(at("2026-03-01T10:00:00"))
    member_id = shop.sign_up("demo", "crm-1")
    assert member(shop, member_id)["lifecycle"] == {"stage": "NEW", "since": "2026-03-01T02:00:00+00:00",
                                                    "lastOrderAt": None}
    effects = shop.pay("demo", member_id, "o-1", 12800)["effects"]
    assert {"plugin": "segments", "kind": "LIFECYCLE_CHANGED", "description": "lifecycle NEW → ACTIVE",
            "code": None, "rule": "lifecycle.active"} in effects
    shop.clock.set(at("2026-03-05T10:00:00"))
    assert not [e for e in shop.pay("demo", member_id, "o-2", 100)["effects"] if e["plugin"] == "segments"]
    found = member(shop, member_id)
    assert found["lifecycle"]["stage"] == "ACTIVE" and found["lifecycle"]["lastOrderAt"] == "2026-03-05T02:00:00+00:00"
    assert found["lifecycleHistory"] == [{"fromStage": "NEW", "toStage": "ACTIVE", "reason": "ORDER",
                                          "reference": "o-1"}]
    assert [(b, a, r) for _, b, a, r, _ in watcher.changes] == [("NEW", "ACTIVE", "ORDER")]
    [event] = lifecycle_events(shop)
    assert (event["from"], event["to"], event["reason"], event["reference"]) == ("NEW", "ACTIVE", "ORDER", "o-1")


def test_stages_turn_on_the_shops_calendar_days_90_91_180_181(watched):
    shop, watcher = watched
    shop.clock.set(at("2026-03-01T23:30:00"))  # the last order: 1 March in Shanghai (15:30 UTC)
    member_id = shop.sign_up("demo", "crm-1")
    shop.pay("demo", member_id, "o-1", 12800)

    def stage_on(local: str) -> str:
        shop.clock.set(at(local))
        shop.run_jobs("demo", force=True)
        return member(shop, member_id)["lifecycle"]["stage"]

    assert stage_on("2026-05-30T23:59:00") == "ACTIVE"   # day 90 (UTC already has 30 May 15:59)
    assert stage_on("2026-05-31T00:01:00") == "DORMANT"  # day 91 in Shanghai, still 30 May in UTC
    assert winbacks(shop, member_id) == 1
    assert stage_on("2026-08-28T23:59:00") == "DORMANT"  # day 180
    assert stage_on("2026-08-29T00:01:00") == "CHURNED"  # day 181
    assert [(b, a, r) for _, b, a, r, _ in watcher.changes] == [
        ("NEW", "ACTIVE", "ORDER"), ("ACTIVE", "DORMANT", "TIME"), ("DORMANT", "CHURNED", "TIME")]
    history = member(shop, member_id)["lifecycleHistory"]
    assert [(h["fromStage"], h["toStage"], h["reason"]) for h in history] == [
        ("DORMANT", "CHURNED", "TIME"), ("ACTIVE", "DORMANT", "TIME"), ("NEW", "ACTIVE", "ORDER")]
    last = lifecycle_events(shop)[-1]  # (older ones are pruned after the 30 days webhooks keeps them)
    assert (last["from"], last["to"], last["reason"], last["lastOrderAt"]) == (
        "DORMANT", "CHURNED", "TIME", "2026-03-01T15:30:00Z")
    assert last["cause"] == {"kind": "job", "job": "segments.lifecycle"}


def test_the_winback_coupon_comes_once_per_dormant_spell_and_a_refund_back_starts_none(watched):
    shop, _ = watched
    shop.clock.set(at("2026-01-01T12:00:00"))
    member_id = shop.sign_up("demo", "crm-1")
    shop.pay("demo", member_id, "o-1", 12800)
    shop.clock.set(at("2026-04-10T12:00:00"))  # day 99
    shop.run_jobs("demo", force=True)
    shop.run_jobs("demo", force=True)  # a second run moves nobody and gives nothing
    assert member(shop, member_id)["lifecycle"]["stage"] == "DORMANT" and winbacks(shop, member_id) == 1

    shop.pay("demo", member_id, "o-2", 12800)  # back to ACTIVE by an order...
    assert member(shop, member_id)["lifecycle"]["stage"] == "ACTIVE"
    shop.refund("demo", "o-2", "r-2", 12800)  # ...and to DORMANT by its full refund: no new spell
    found = member(shop, member_id)
    assert found["lifecycle"] == {"stage": "DORMANT", "since": "2026-04-10T04:00:00+00:00",
                                  "lastOrderAt": "2026-01-01T04:00:00+00:00"}
    assert found["lifecycleHistory"][0] == {"fromStage": "ACTIVE", "toStage": "DORMANT", "reason": "REFUND",
                                            "reference": "r-2"}
    shop.run_jobs("demo", force=True)
    assert winbacks(shop, member_id) == 1

    shop.clock.set(at("2026-05-01T12:00:00"))
    shop.pay("demo", member_id, "o-3", 12800)  # a new spell can only start after new activity
    shop.clock.set(at("2026-08-15T12:00:00"))  # day 106 after o-3
    shop.run_jobs("demo", force=True)
    assert member(shop, member_id)["lifecycle"]["stage"] == "DORMANT" and winbacks(shop, member_id) == 2


def test_a_partial_refund_or_a_refund_of_an_older_order_moves_nobody(watched):
    shop, watcher = watched
    shop.clock.set(at("2026-01-01T12:00:00"))
    member_id = shop.sign_up("demo", "crm-1")
    shop.pay("demo", member_id, "o-1", 12800)
    shop.clock.set(at("2026-02-01T12:00:00"))
    shop.pay("demo", member_id, "o-2", 12800)
    shop.refund("demo", "o-2", "r-1", 100)  # partial
    shop.refund("demo", "o-1", "r-2", 12800)  # in full, but o-2 is the last order
    assert member(shop, member_id)["lifecycle"]["lastOrderAt"] == "2026-02-01T04:00:00+00:00"
    shop.refund("demo", "o-2", "r-3", 12700)  # the rest of o-2: no order is left
    assert member(shop, member_id)["lifecycle"] == {"stage": "NEW", "since": "2026-02-01T04:00:00+00:00",
                                                    "lastOrderAt": None}
    assert watcher.changes[-1][1:4] == ("ACTIVE", "NEW", "REFUND")


def test_a_late_reported_order_paid_long_ago_does_not_make_a_member_active(watched):
    shop, _ = watched
    shop.clock.set(at("2026-06-01T12:00:00"))
    member_id = shop.sign_up("demo", "crm-1")
    shop.pay("demo", member_id, "o-old", 12800, paidAt="2026-01-02T12:00:00+08:00")  # day 150
    assert member(shop, member_id)["lifecycle"]["stage"] == "DORMANT"
    assert winbacks(shop, member_id) == 0  # moved by an order, not by time: no dormant spell began
    shop.pay("demo", member_id, "o-now", 100)
    shop.pay("demo", member_id, "o-older", 100, paidAt="2026-01-01T12:00:00+08:00")
    assert member(shop, member_id)["lifecycle"]["lastOrderAt"] == "2026-06-01T04:00:00+00:00"


def test_segments_settings_are_checked(settings_file):
    from memberkit.config import SettingsError, load

    bad = DEMO.replace("churned_after_days = 180", "churned_after_days = 60")
    with pytest.raises(SettingsError) as refused:
        load(settings_file(bad))
    assert "churned_after_days is 60: expected more than active_days (90)" in str(refused.value)


@pytest.mark.skipif(bool(TEST_DATABASE_URL), reason="counts SQLite's statements (the same plan on both)")
def test_an_order_by_an_active_member_costs_one_statement_more(memberkit):
    def statements_of_an_order(settings: str) -> list[str]:
        shop = memberkit(settings)
        shop.clock.set(at("2026-03-01T10:00:00"))
        member_id = shop.sign_up("demo", "crm-1")
        shop.pay("demo", member_id, "o-1", 12800)
        seen: list[str] = []
        with shop.runtime.db.write() as conn:  # the process's one writer: traced from now on
            conn.connection.driver_connection.set_trace_callback(seen.append)
        seen.clear()
        shop.pay("demo", member_id, "o-2", 12800)
        return seen

    without = re.sub(r"(?ms)^\[shops\.demo\.settings\.segments\]\n.*?(?=^\[shops\.)", "", DEMO)
    without = without.replace('"segments", "webhooks"]', '"webhooks"]')
    with_segments = statements_of_an_order(DEMO)
    assert len(with_segments) - len(statements_of_an_order(without)) == 1
    assert sum("segments_lifecycle" in sql for sql in with_segments) == 1


TAG = """mutation($input: TagMembersInput!) { tagMembers(input: $input) {
  duplicate changed errors { code field message } } }"""
TAGS = "query($id: ID!) { member(id: $id) { tags } }"


def test_tag_members_adds_and_removes_on_many_members_once_per_key(watched):
    shop, _ = watched
    integrator = shop.integrator("demo")
    ids = [shop.sign_up("demo", f"crm-{n}", tags=["vip"] if n == 0 else []) for n in range(3)]
    call = {"input": {"memberIds": ids, "add": ["sneaker fan", "north"], "remove": ["vip"],
                      "idempotencyKey": "campaign-1"}}
    assert integrator(TAG, call)["tagMembers"] == {"duplicate": False, "changed": 3, "errors": []}
    assert [integrator(TAGS, {"id": i})["member"]["tags"] for i in ids] == [["sneaker fan", "north"]] * 3
    assert integrator(TAG, call)["tagMembers"] == {"duplicate": True, "changed": 3, "errors": []}
    again = {"input": {**call["input"], "idempotencyKey": "campaign-2"}}
    assert integrator(TAG, again)["tagMembers"]["changed"] == 0  # they have them all already
    with shop.runtime.db.read() as conn:
        updated = conn.execute(select(WebhookEvent.member_id).where(WebhookEvent.type == "member.updated")).scalars()
        assert sorted(updated) == sorted(ids)  # one member.updated each, for the call that changed them


def test_tag_members_refuses_bad_calls_and_changes_nothing(watched):
    shop, _ = watched
    integrator = shop.integrator("demo")
    member_id = shop.sign_up("demo", "crm-1", tags=[f"old{n}" for n in range(40)])

    def refusal(**fields):
        payload = integrator(TAG, {"input": {"memberIds": [member_id], "idempotencyKey": "k", **fields}})
        [error] = payload["tagMembers"]["errors"]
        return error["code"], error["field"], error["message"]

    assert refusal(add=[])[:2] == ("NOTHING_TO_CHANGE", "add")
    assert refusal(add=["a"], remove=["a"])[:2] == ("TAG_CONFLICT", "remove")
    code, field, message = refusal(memberIds=[member_id, "mem_nope"], add=["a"])
    assert (code, field) == ("MEMBER_NOT_FOUND", "memberIds") and "'mem_nope'" in message
    code, field, message = refusal(add=[f"new{n}" for n in range(20)])
    assert (code, field) == ("INVALID_TAGS", "add") and "would have 60 tags: at most 50" in message
    assert integrator(TAGS, {"id": member_id})["member"]["tags"] == [f"old{n}" for n in range(40)]
    too_many = shop.api.post(TAG, {"input": {"memberIds": [member_id] * 1001, "add": ["a"], "idempotencyKey": "k"}},
                             shop._key("demo", "secret")).json()
    assert too_many["errors"][0]["extensions"]["code"] == "TOO_MANY_ITEMS"
    assert "1000" in too_many["errors"][0]["message"]


RFM = "query($id: ID!) { member(id: $id) { rfm { recency frequency monetary band computedAt } } }"
RFM_RUN = """{ rfmRun { windowDays members recency { score min max members } frequency { score min max members }
  monetary { score min max members } } }"""


def scores(shop, member_id: str) -> tuple | None:
    found = shop.integrator("demo")(RFM, {"id": member_id})["member"]["rfm"]
    return found and (found["recency"], found["frequency"], found["monetary"], found["band"])


def test_rfm_scores_are_quintiles_where_equal_values_score_alike(memberkit):
    shop = memberkit(DEMO)
    shop.clock.set(at("2026-06-30T12:00:00"))
    members = [shop.sign_up("demo", f"crm-{n}") for n in range(11)]
    # ten members: orders 1,1,1,1,1,1,2,2,3,4 on days 1..10 of June, spend 100 × n; one with none in the window
    counts = [1, 1, 1, 1, 1, 1, 2, 2, 3, 4]
    for n, (member_id, count) in enumerate(zip(members, counts, strict=False)):
        for k in range(count):
            shop.pay("demo", member_id, f"o-{n}-{k}", 100 * (n + 1), paidAt=f"2026-06-{n + 1:02d}T10:00:00+08:00")
    shop.pay("demo", members[10], "o-old", 5000, paidAt="2025-06-01T10:00:00+08:00")  # 394 days ago
    shop.run_jobs("demo", force=True)
    found = [scores(shop, m) for m in members]
    # frequency 1 is six members of ten (cume_dist 0.6: score 3); 2 → 0.8: 4; 3 → 0.9 and 4 → 1.0: 5
    assert [f[1] for f in found[:10]] == [3, 3, 3, 3, 3, 3, 4, 4, 5, 5]
    # recency and monetary: all different, two members to a fifth
    assert [f[0] for f in found[:10]] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert [f[2] for f in found[:10]] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert found[10] is None  # no order in the last 365 days: no score
    assert [f[3] for f in found[:10]] == ["AT_RISK", "AT_RISK", "AT_RISK", "AT_RISK", "OTHERS", "OTHERS",
                                          "CHAMPIONS", "CHAMPIONS", "CHAMPIONS", "CHAMPIONS"]
    run = shop.integrator("demo")(RFM_RUN)["rfmRun"]
    assert (run["windowDays"], run["members"]) == (365, 10)
    assert run["frequency"] == [{"score": 3, "min": 1, "max": 1, "members": 6}, {"score": 4, "min": 2, "max": 2,
                                "members": 2}, {"score": 5, "min": 3, "max": 4, "members": 2}]
    assert run["recency"][0] == {"score": 1, "min": 28, "max": 29, "members": 2}  # 1 and 2 June: 29, 28 days
    assert run["monetary"][-1] == {"score": 5, "min": 2700, "max": 4000, "members": 2}  # 3 × 900, 4 × 1000


def test_rfm_with_fewer_than_five_members_and_ties_on_the_same_day(memberkit):
    shop = memberkit(DEMO)
    shop.clock.set(at("2026-06-30T12:00:00"))
    first, second = shop.sign_up("demo", "crm-1"), shop.sign_up("demo", "crm-2")
    shop.pay("demo", first, "o-1", 1000, paidAt="2026-06-29T09:00:00+08:00")
    shop.pay("demo", second, "o-2", 1000, paidAt="2026-06-29T23:00:00+08:00")  # the same day in Shanghai
    shop.run_jobs("demo", force=True)
    assert scores(shop, first) == scores(shop, second) == (5, 5, 5, "CHAMPIONS")
    shop.refund("demo", "o-2", "r-2", 1000)  # refunded in full: no longer counts
    shop.run_jobs("demo", force=True)
    assert scores(shop, first) == (5, 5, 5, "CHAMPIONS") and scores(shop, second) is None


def test_a_later_rfm_run_rewrites_what_changed_and_scores_as_a_first_run_would(memberkit):
    shop = memberkit(DEMO)
    shop.clock.set(at("2026-06-30T12:00:00"))
    members = [shop.sign_up("demo", f"crm-{n}") for n in range(5)]
    for n, member_id in enumerate(members):  # one order each, on 1 to 5 June, 100 to 500
        shop.pay("demo", member_id, f"o-{n}", 100 * (n + 1), paidAt=f"2026-06-{n + 1:02d}T10:00:00+08:00")
    shop.run_jobs("demo", force=True)
    assert [scores(shop, m) for m in members] == [(1, 5, 1, "LOYAL"), (2, 5, 2, "LOYAL"), (3, 5, 3, "LOYAL"),
                                                  (4, 5, 4, "CHAMPIONS"), (5, 5, 5, "CHAMPIONS")]
    shop.clock.set(at("2026-07-01T12:00:00"))
    for k in range(3):  # the first member orders three times more; the last one's order is refunded
        shop.pay("demo", members[0], f"o-0-{k}", 1000, paidAt="2026-07-01T10:00:00+08:00")
    shop.refund("demo", "o-4", "r-4", 500)
    shop.run_jobs("demo", force=True)
    # four members scored now: what a first run over these orders gives
    assert [scores(shop, m) for m in members] == [(5, 5, 5, "CHAMPIONS"), (2, 4, 2, "LOYAL"), (3, 4, 3, "LOYAL"),
                                                  (4, 4, 4, "CHAMPIONS"), None]
    run = shop.integrator("demo")(RFM_RUN)["rfmRun"]
    assert run["members"] == 4
    assert run["frequency"] == [{"score": 4, "min": 1, "max": 1, "members": 3},
                                {"score": 5, "min": 4, "max": 4, "members": 1}]
    shop.clock.set(at("2026-07-01T18:00:00"))  # a run that changes no row still dates every score
    shop.run_jobs("demo", force=True)
    assert [scores(shop, m) for m in members[:4]] == [(5, 5, 5, "CHAMPIONS"), (2, 4, 2, "LOYAL"),
                                                      (3, 4, 3, "LOYAL"), (4, 4, 4, "CHAMPIONS")]
    computed = {shop.integrator("demo")(RFM, {"id": m})["member"]["rfm"]["computedAt"] for m in members[:4]}
    assert computed == {"2026-07-01T10:00:00+00:00"}


def test_rfm_bands_are_settings_and_checked(memberkit, settings_file):
    from memberkit.config import SettingsError, load

    vip = 'rfm_bands = [{ code = "VIP", monetary = [5] }, { code = "REST" }]\n'
    bands = re.sub(r"(?ms)^rfm_bands = \[.*?^\]\n", vip, DEMO)
    shop = memberkit(bands)
    shop.clock.set(at("2026-06-30T12:00:00"))
    member_id = shop.sign_up("demo", "crm-1")
    shop.pay("demo", member_id, "o-1", 1000)
    shop.run_jobs("demo", force=True)
    assert scores(shop, member_id)[3] == "VIP"
    with pytest.raises(SettingsError) as refused:
        load(settings_file(bands.replace("monetary = [5]", "monetary = [6]")))
    assert "VIP.monetary: 6 is not a score: expected 1 to 5" in str(refused.value)


STEP = st.one_of(st.tuples(st.just("pay"), st.integers(0, 200)),  # an order paid this many days ago
                 st.tuples(st.just("refund"), st.integers(0, 10)),  # the nth order, refunded in full
                 st.tuples(st.just("wait"), st.integers(1, 120)))  # days pass, then the job runs
EXTERNAL_IDS = itertools.count()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEP, min_size=1, max_size=12))
def test_the_stage_kept_step_by_step_equals_the_stage_recomputed_from_the_orders(watched, steps):
    shop, watcher = watched
    start = at("2026-01-01T12:00:00")
    shop.clock.set(start)
    member_id = shop.sign_up("demo", f"p-{next(EXTERNAL_IDS)}")
    paid: list[tuple[str, datetime]] = []
    refunded: set[str] = set()
    for n, (kind, value) in enumerate(steps):
        now = shop.clock.now()
        if kind == "pay":
            order_id = f"{member_id}-o{n}"
            shop.pay("demo", member_id, order_id, 1000, paidAt=(now - timedelta(days=value)).isoformat())
            paid.append((order_id, now - timedelta(days=value)))
        elif kind == "refund" and paid:
            order_id = paid[value % len(paid)][0]
            if order_id not in refunded:
                shop.refund("demo", order_id, f"r-{order_id}", 1000)
                refunded.add(order_id)
        elif kind == "wait":
            shop.clock.set(now + timedelta(days=value))
            shop.run_jobs("demo", force=True)
        last = max((at_ for order_id, at_ in paid if order_id not in refunded), default=None)
        if last is None:
            expected = "NEW"
        else:
            days = (shop.clock.now().astimezone(SHANGHAI_TZ).date() - last.astimezone(SHANGHAI_TZ).date()).days
            expected = "ACTIVE" if days <= 90 else "DORMANT" if days <= 180 else "CHURNED"
        assert member(shop, member_id)["lifecycle"]["stage"] == expected, (steps[: n + 1], days if last else None)
    # a win-back coupon for each dormant spell time began, and only for those
    spells = sum(1 for m, _, after, reason, _ in watcher.changes if m == member_id and (after, reason) ==
                 ("DORMANT", "TIME"))
    assert winbacks(shop, member_id) == spells


def test_two_shops_never_mix(memberkit):
    other = DEMO.replace("[shops.demo]\n", '[shops.other]\nname = "Other"\ncurrency = "CNY"\n'
                         'timezone = "Asia/Shanghai"\nplugins = ["segments"]\n\n[shops.demo]\n', 1)
    shop = memberkit(other)
    shop.clock.set(at("2026-06-30T12:00:00"))
    ours, theirs = shop.sign_up("demo", "crm-1"), shop.sign_up("other", "crm-1")
    shop.pay("demo", ours, "o-1", 1000)
    shop.pay("other", theirs, "o-1", 9000, paidAt="2026-01-01T12:00:00+08:00")
    shop.run_jobs(force=True)
    assert member(shop, ours)["lifecycle"]["stage"] == "ACTIVE"
    assert shop.integrator("other")(MEMBER.replace(" coupons(status: null) { source }", ""),
                                    {"id": theirs})["member"]["lifecycle"]["stage"] == "DORMANT"
    assert shop.integrator("demo")(RFM_RUN)["rfmRun"]["members"] == 1
    assert shop.integrator("other")(RFM_RUN)["rfmRun"]["members"] == 1
    assert shop.integrator("demo")(MEMBER, {"id": theirs})["member"] is None  # not a member of demo
