"""The tiering plugin (RULES.md section 1): upgrades, refunds, evaluation, history, overrides, progress,
benefits through core, paid upgrades with points, and shops that never mix."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from memberkit import config as settings_module
from memberkit import jobs
from memberkit.cli import app
from memberkit.core import clock
from memberkit.core.models import Event
from memberkit.core.orders import record_order_paid
from memberkit.core.runtime import Runtime
from memberkit.core.types import Effect, RedemptionRefused, RedemptionResult
from memberkit.plugin import Plugin, hookimpl
from memberkit.plugins.tiering.models import TierChange, TierMember
from tests.conftest import ORDER_PAID, ORDER_REFUNDED, ROOT, SIGN_UP, postgres_only, sign_up

TIERS = """
[[shops.{shop}.settings.tiering.tiers]]
code = "REGULAR"
name = "Regular"
rank = 1
benefits = ["one lucky draw a month"]

[[shops.{shop}.settings.tiering.tiers]]
code = "SILVER"
name = "Silver"
rank = 2
min_spend = 50000
benefits = ["one exclusive coupon each month"]

[[shops.{shop}.settings.tiering.tiers]]
code = "GOLD"
name = "Gold"
rank = 3
min_spend = 200000
benefits = ["free express shipping"]
points_multiplier_permille = 1200
discount_percent = 2
upgrade_price = 19900
upgrade_max_points = 10000

[[shops.{shop}.settings.tiering.tiers]]
code = "DIAMOND"
name = "Diamond"
rank = 4
min_spend = 500000
benefits = ["a dedicated service channel"]
"""


def shop(slug: str, plugins: str = '"tiering"', settings: str = "", currency: str = "CNY",
         zone: str = "Asia/Shanghai", tiers: str = TIERS) -> str:
    return (f'[shops.{slug}]\nname = "{slug}"\ncurrency = "{currency}"\ntimezone = "{zone}"\n'
            f"plugins = [{plugins}]\n\n[shops.{slug}.settings.tiering]\n{settings}\n" + tiers.format(shop=slug))


# alpha: the demo numbers (lifetime spend, refunds at once). beta: other tiers, on orders, a rolling window.
BETA_TIERS = """
[[shops.beta.settings.tiering.tiers]]
code = "BRONZE"
name = "Bronze"
rank = 0

[[shops.beta.settings.tiering.tiers]]
code = "STAR"
name = "Star"
rank = 5
min_orders = 2
points_multiplier_permille = 1500
"""
SETTINGS_TEXT = shop("alpha") + "\n" + shop("beta", settings='qualify_by = "orders"\nwindow_months = 3\n',
                                             currency="EUR", zone="Europe/Berlin", tiers=BETA_TIERS)

PROGRESS = """
query($id: ID) { member(id: $id) {
  tier { code name rank benefits }
  tierProgress { current { code } next { code name } qualifyingSpend { amount currency } spendToNext { amount }
                 qualifyingOrders ordersToNext downgradeAt setUntil }
  tierHistory { fromCode toCode reason reference note }
} }"""

SET_TIER = """
mutation($input: SetMemberTierInput!) { setMemberTier(input: $input) {
  duplicate member { tier { code } } effects { plugin kind description rule } errors { code field message } } }"""

UPGRADE = """
mutation($input: RecordTierUpgradeInput!) { recordTierUpgrade(input: $input) {
  duplicate member { tier { code } } effects { plugin kind description rule code } errors { code field message } } }"""


@pytest.fixture
def shops(make_runtime, make_api):
    runtime = make_runtime(SETTINGS_TEXT)
    api = make_api(runtime)
    return runtime, api, api.key("alpha")


def pay(api, key, member_id: str, order_id: str, total: int, **more) -> list[tuple[str, str]]:
    payload = api(ORDER_PAID, {"input": {"orderId": order_id, "memberId": member_id, "total": total, **more}},
                  key)["recordOrderPaid"]
    assert payload["errors"] == [], payload
    return [(e["kind"], e["description"].split(" (")[0]) for e in payload["effects"] if e["plugin"] == "tiering"]


def refund(api, key, order_id: str, refund_id: str, amount: int) -> list[tuple[str, str]]:
    payload = api(ORDER_REFUNDED, {"input": {"orderId": order_id, "refundId": refund_id, "amount": amount}},
                  key)["recordOrderRefunded"]
    assert payload["errors"] == [], payload
    return [(e["kind"], e["description"].split(" (")[0]) for e in payload["effects"] if e["plugin"] == "tiering"]


def member(api, key, member_id: str) -> dict:
    return api(PROGRESS, {"id": member_id}, key)["member"]


def tier(api, key, member_id: str) -> str:
    return member(api, key, member_id)["tier"]["code"]


def history(runtime, member_id: str) -> list[tuple[str | None, str, str]]:
    with runtime.db.read() as conn:
        rows = conn.execute(select(TierChange).where(TierChange.member_id == member_id).order_by(TierChange.id))
        return [(r.from_code, r.to_code, r.reason) for r in rows]


def run_jobs(runtime, slug: str) -> list:
    runs = jobs.run_due(runtime, slug, force=True)
    assert [r.status for r in runs if r.job == "tiering.evaluate"] == ["done"], runs
    return runs


# ---------------------------------------------------------------- 1. settings


def write(tmp_path, text: str):
    path = tmp_path / "tiers.toml"
    path.write_text(text)
    return path


def test_check_refuses_thresholds_that_do_not_rise_with_rank(tmp_path):
    bad = shop("alpha", tiers=TIERS.replace("min_spend = 500000", "min_spend = 150000"))
    result = CliRunner().invoke(app, ["check", str(write(tmp_path, bad))])
    assert result.exit_code == 1
    assert ("shop 'alpha', plugin 'tiering', key 'tiers': thresholds must rise with rank: DIAMOND (rank 4) needs "
            "min_spend 150000, less than GOLD (rank 3) with 200000") in " ".join(result.output.split())


@pytest.mark.parametrize("change, reason", [
    (lambda t: t.replace("min_spend = 500000", "min_spend = 200000"), "DIAMOND (rank 4) needs the same as GOLD"),
    (lambda t: t.replace('rank = 1\n', 'rank = 1\nmin_spend = 100\n'), "the lowest tier (REGULAR, rank 1) must need"),
    (lambda t: t.replace('"DIAMOND"', '"GOLD"'), "each tier's code once; repeated: GOLD"),
    (lambda t: t.replace("rank = 4", "rank = 3"), "each tier's rank once; repeated: 3"),
    (lambda t: t.replace('code = "GOLD"', 'code = "gold"'), "a tier code of upper-case letters"),
    (lambda t: t.replace("min_spend = 200000", "min_spend = 200000\nmin_orders = 3"),
     "tier GOLD sets min_orders but qualify_by is 'spend'"),
])
def test_settings_refuse_tiers_with_the_reason(tmp_path, change, reason):
    with pytest.raises(settings_module.SettingsError) as refused:
        settings_module.load(write(tmp_path, shop("alpha", tiers=change(TIERS))))
    problems = [str(p) for p in refused.value.problems]
    assert len(problems) == 1 and "plugin 'tiering'" in problems[0] and reason in problems[0], problems


def test_orders_and_both_may_qualify_and_must_rise_too(tmp_path):
    tiers = BETA_TIERS.replace("shops.beta", "shops.{shop}")
    loaded = settings_module.load(write(tmp_path, shop("x", settings='qualify_by = "orders"', tiers=tiers)))
    assert [t.min_orders for t in loaded.shop("x").settings_for("tiering").tiers] == [0, 2]
    mixed = tiers.replace("min_orders = 2", "min_orders = 2\nmin_spend = 0")
    with pytest.raises(settings_module.SettingsError) as refused:
        settings_module.load(write(tmp_path, shop("x", settings='qualify_by = "spend_and_orders"',
                                                  tiers=mixed.replace("min_orders = 2", "min_orders = 0"))))
    assert "thresholds must rise with rank" in str(refused.value)


def test_demo_shop_has_the_four_tiers_of_the_rules():
    demo = settings_module.load(ROOT / "plugins.toml").shop("demo")
    assert demo.plugins.index("tiering") > demo.plugins.index("points")  # points earn at the tier when paying
    s = demo.settings_for("tiering")
    assert [(t.code, t.min_spend) for t in s.tiers] == [("REGULAR", 0), ("SILVER", 50000), ("GOLD", 200000),
                                                         ("DIAMOND", 500000)]
    assert (s.qualify_by, s.window_months, s.grace_days, s.refunds) == ("spend", 0, 0, "immediately")
    gold = s.tiers[2]
    assert gold.upgrade_price and gold.upgrade_max_points == 10000 and s.upgrade_points_per_yuan == 100
    assert all(t.benefits for t in s.tiers)


# ---------------------------------------------------------------- 2, 6. upgrades and progress


def test_member_walks_from_regular_to_diamond_with_the_demo_numbers(shops):
    runtime, api, key = shops
    member_id = sign_up(api, key, "u-1")
    first = member(api, key, member_id)
    assert first["tier"] == {"code": "REGULAR", "name": "Regular", "rank": 1, "benefits": ["one lucky draw a month"]}
    assert pay(api, key, member_id, "o-1", 40000) == []
    progress = member(api, key, member_id)["tierProgress"]
    assert progress["current"]["code"] == "REGULAR" and progress["next"] == {"code": "SILVER", "name": "Silver"}
    assert progress["qualifyingSpend"] == {"amount": 40000, "currency": "CNY"}
    assert progress["spendToNext"] == {"amount": 10000}  # "100 yuan from silver"
    assert pay(api, key, member_id, "o-2", 10000) == [("TIER_CHANGED", "tier REGULAR -> SILVER")]
    assert pay(api, key, member_id, "o-3", 149999) == []
    assert member(api, key, member_id)["tierProgress"]["spendToNext"] == {"amount": 1}
    assert pay(api, key, member_id, "o-4", 1) == [("TIER_CHANGED", "tier SILVER -> GOLD")]
    assert pay(api, key, member_id, "o-5", 300000) == [("TIER_CHANGED", "tier GOLD -> DIAMOND")]
    top = member(api, key, member_id)
    assert top["tier"]["code"] == "DIAMOND"
    assert top["tierProgress"]["next"] is None and top["tierProgress"]["spendToNext"] is None
    assert top["tierProgress"]["qualifyingSpend"]["amount"] == 500000
    assert history(runtime, member_id) == [("REGULAR", "SILVER", "order"), ("SILVER", "GOLD", "order"),
                                           ("GOLD", "DIAMOND", "order")]
    assert [h["reference"] for h in top["tierHistory"]] == ["o-5", "o-4", "o-2"]  # newest first


def test_one_order_crosses_several_tiers(shops):
    runtime, api, key = shops
    member_id = sign_up(api, key, "u-1")
    payload = api(ORDER_PAID, {"input": {"orderId": "o-1", "memberId": member_id, "total": 520000}},
                  key)["recordOrderPaid"]
    effects = [e for e in payload["effects"] if e["plugin"] == "tiering"]
    assert len(effects) == 1 and effects[0]["description"].startswith("tier REGULAR -> DIAMOND")
    assert effects[0]["rule"] == "tiers.DIAMOND: min_spend 500000 (lifetime)"
    assert history(runtime, member_id) == [("REGULAR", "DIAMOND", "order")]
    again = api(ORDER_PAID, {"input": {"orderId": "o-1", "memberId": member_id, "total": 520000}}, key)
    assert again["recordOrderPaid"]["duplicate"] is True and len(history(runtime, member_id)) == 1


# ---------------------------------------------------------------- 3. refunds


def test_refunds_correct_the_tier_at_once_to_what_net_spend_earns(shops):
    runtime, api, key = shops
    member_id = sign_up(api, key, "u-1")
    pay(api, key, member_id, "o-1", 300000)
    pay(api, key, member_id, "o-2", 250000)
    assert tier(api, key, member_id) == "DIAMOND"
    assert refund(api, key, "o-2", "r-1", 60000) == [("TIER_CHANGED", "tier DIAMOND -> GOLD")]
    assert refund(api, key, "o-2", "r-2", 10000) == []  # 480,000 still earns gold
    assert refund(api, key, "o-2", "r-3", 180000) == []  # o-2 fully refunded: 300,000, gold
    assert member(api, key, member_id)["tierProgress"]["qualifyingOrders"] == 1
    assert refund(api, key, "o-1", "r-4", 260000) == [("TIER_CHANGED", "tier GOLD -> REGULAR")]  # two steps
    assert refund(api, key, "o-1", "r-5", 40000) == []
    state = member(api, key, member_id)["tierProgress"]
    assert state["qualifyingSpend"]["amount"] == 0 and state["qualifyingOrders"] == 0
    assert [r for _, _, r in history(runtime, member_id)] == ["order", "order", "refund", "refund"]


def test_a_refund_crossing_several_tiers_goes_down_in_one_step(shops):
    runtime, api, key = shops
    member_id = sign_up(api, key, "u-1")
    pay(api, key, member_id, "o-1", 600000)
    assert refund(api, key, "o-1", "r-1", 580000) == [("TIER_CHANGED", "tier DIAMOND -> REGULAR")]
    assert history(runtime, member_id)[-1] == ("DIAMOND", "REGULAR", "refund")


def test_refund_correction_can_wait_for_the_next_evaluation(make_runtime, make_api):
    runtime = make_runtime(shop("alpha", settings='refunds = "next_evaluation"'))
    api = make_api(runtime)
    key = api.key("alpha")
    member_id = sign_up(api, key, "u-1")
    pay(api, key, member_id, "o-1", 250000)
    assert refund(api, key, "o-1", "r-1", 100000) == [("TIER_REVIEW_PENDING",
                                                       "net spend now earns SILVER; the tier is corrected at "
                                                       "the next evaluation")]
    assert tier(api, key, member_id) == "GOLD"
    run_jobs(runtime, "alpha")
    assert tier(api, key, member_id) == "SILVER"
    assert history(runtime, member_id)[-1] == ("GOLD", "SILVER", "refund")
    run_jobs(runtime, "alpha")  # idempotent
    assert len(history(runtime, member_id)) == 2


# ---------------------------------------------------------------- 4. evaluation


def test_rolling_window_downgrades_one_step_at_a_time_after_the_grace_period(make_runtime, make_api):
    runtime = make_runtime(shop("alpha", settings="window_months = 3\ngrace_days = 30"))
    api = make_api(runtime)
    key = api.key("alpha")
    start = datetime(2026, 1, 10, 12, tzinfo=UTC)
    clock.set_now(start)
    member_id = sign_up(api, key, "u-1")
    pay(api, key, member_id, "o-1", 520000)
    assert tier(api, key, member_id) == "DIAMOND"
    clock.set_now(start + timedelta(days=60))
    run_jobs(runtime, "alpha")
    assert tier(api, key, member_id) == "DIAMOND" and member(api, key, member_id)["tierProgress"]["downgradeAt"] is None
    clock.set_now(datetime(2026, 4, 11, 0, tzinfo=UTC))  # o-1 has left the 3-month window
    assert member(api, key, member_id)["tierProgress"]["qualifyingSpend"]["amount"] == 0
    run_jobs(runtime, "alpha")  # the grace period starts
    run_jobs(runtime, "alpha")  # and running again changes nothing
    progress = member(api, key, member_id)["tierProgress"]
    assert progress["current"]["code"] == "DIAMOND" and progress["downgradeAt"].startswith("2026-05-11")
    clock.set_now(datetime(2026, 5, 11, 0, tzinfo=UTC))
    run_jobs(runtime, "alpha")
    run_jobs(runtime, "alpha")
    assert tier(api, key, member_id) == "GOLD"  # one step, not all the way
    clock.set_now(datetime(2026, 6, 10, 0, tzinfo=UTC))
    pay(api, key, member_id, "o-2", 60000)  # earns silver: gold's grace goes on
    clock.set_now(datetime(2026, 6, 11, 0, tzinfo=UTC))
    run_jobs(runtime, "alpha")
    assert tier(api, key, member_id) == "SILVER"
    run_jobs(runtime, "alpha")
    assert tier(api, key, member_id) == "SILVER"
    assert member(api, key, member_id)["tierProgress"]["downgradeAt"] is None  # silver is earned
    assert history(runtime, member_id) == [("REGULAR", "DIAMOND", "order"), ("DIAMOND", "GOLD", "evaluation"),
                                           ("GOLD", "SILVER", "evaluation")]


def test_lifetime_tiers_with_no_grace_are_never_downgraded_by_evaluation(shops):
    runtime, api, key = shops
    member_id = sign_up(api, key, "u-1")
    pay(api, key, member_id, "o-1", 200000)
    clock.set_now(datetime(2030, 1, 1, tzinfo=UTC))
    run_jobs(runtime, "alpha")
    assert tier(api, key, member_id) == "GOLD" and len(history(runtime, member_id)) == 1


def test_evaluation_applies_a_shops_changed_thresholds(shops, settings_file):
    runtime, api, key = shops
    member_id = sign_up(api, key, "u-1")
    pay(api, key, member_id, "o-1", 150000)
    assert tier(api, key, member_id) == "SILVER"
    lowered = SETTINGS_TEXT.replace("min_spend = 200000", "min_spend = 100000")
    changed = Runtime(settings_module.load(settings_file(lowered, "lowered.toml")), runtime.db)
    run_jobs(changed, "alpha")
    run_jobs(changed, "alpha")
    assert history(runtime, member_id)[-1] == ("SILVER", "GOLD", "evaluation")
    assert len(history(runtime, member_id)) == 2
    raised = SETTINGS_TEXT.replace("min_spend = 200000", "min_spend = 300000").replace(
        "[shops.alpha.settings.tiering]\n", "[shops.alpha.settings.tiering]\ngrace_days = 10\n")
    stricter = Runtime(settings_module.load(settings_file(raised, "raised.toml")), runtime.db)
    run_jobs(stricter, "alpha")  # grace starts: the member keeps gold for 10 days
    clock.set_now(clock.now() + timedelta(days=10))
    run_jobs(stricter, "alpha")
    assert history(runtime, member_id)[-1] == ("GOLD", "SILVER", "evaluation")


# ---------------------------------------------------------------- 5. override and history


def test_a_tier_set_by_hand_stands_until_spend_earns_a_higher_one(shops):
    runtime, api, key = shops
    member_id = sign_up(api, key, "u-1")
    payload = api(SET_TIER, {"input": {"memberId": member_id, "tierCode": "GOLD", "reason": "VIP from the CEO"}},
                  key)["setMemberTier"]
    assert payload["errors"] == [] and payload["member"] == {"tier": {"code": "GOLD"}}
    assert payload["effects"][0]["description"].startswith("tier REGULAR -> GOLD") and \
        payload["effects"][0]["rule"] == "manual"
    assert pay(api, key, member_id, "o-1", 300000) == []  # earns gold: no change, the override stands
    progress = member(api, key, member_id)["tierProgress"]
    assert progress["next"]["code"] == "DIAMOND" and progress["spendToNext"] == {"amount": 200000}
    assert pay(api, key, member_id, "o-2", 200000) == [("TIER_CHANGED", "tier GOLD -> DIAMOND")]
    with runtime.db.read() as conn:
        assert conn.execute(select(TierMember.override_code)).scalar() is None
    assert history(runtime, member_id) == [("REGULAR", "GOLD", "manual"), ("GOLD", "DIAMOND", "order")]
    notes = [h["note"] for h in member(api, key, member_id)["tierHistory"]]
    assert "VIP from the CEO" in notes[-1]


def test_a_tier_set_by_hand_ends_at_its_expiry(shops):
    runtime, api, key = shops
    clock.set_now(datetime(2026, 3, 1, tzinfo=UTC))
    member_id = sign_up(api, key, "u-1")
    pay(api, key, member_id, "o-1", 60000)
    expiry = "2026-03-31T23:59:59+08:00"
    payload = api(SET_TIER, {"input": {"memberId": member_id, "tierCode": "diamond", "reason": "launch party",
                                       "expiresAt": expiry, "idempotencyKey": "k-1"}}, key)["setMemberTier"]
    assert payload["errors"] == [] and payload["member"]["tier"]["code"] == "DIAMOND"
    again = api(SET_TIER, {"input": {"memberId": member_id, "tierCode": "diamond", "reason": "launch party",
                                     "expiresAt": expiry, "idempotencyKey": "k-1"}}, key)["setMemberTier"]
    assert again["duplicate"] is True and len(history(runtime, member_id)) == 2
    assert member(api, key, member_id)["tierProgress"]["setUntil"] == "2026-03-31T15:59:59+00:00"
    newcomer = sign_up(api, key, "u-2")  # no tiering row yet: the lowest tier
    with runtime.reading(runtime.shop("alpha")) as ctx:  # many members at once agree with one at a time
        assert {m: t.code for m, t in ctx.member_tiers([member_id, newcomer]).items()} == \
            {member_id: "DIAMOND", newcomer: "REGULAR"}
    clock.set_now(datetime(2026, 4, 1, tzinfo=UTC))
    assert tier(api, key, member_id) == "SILVER"  # reads see the expiry at once, without writing
    with runtime.reading(runtime.shop("alpha")) as ctx:
        assert ctx.member_tier(member_id).code == "SILVER"
        assert ctx.member_tiers([member_id, newcomer]) == {member_id: ctx.member_tier(member_id),
                                                           newcomer: ctx.member_tier(newcomer)}
    run_jobs(runtime, "alpha")
    run_jobs(runtime, "alpha")
    assert history(runtime, member_id) == [("REGULAR", "SILVER", "order"), ("SILVER", "DIAMOND", "manual"),
                                           ("DIAMOND", "SILVER", "evaluation")]


def test_setting_a_tier_by_hand_is_checked_and_needs_the_secret_key(shops):
    runtime, api, key = shops
    member_id = sign_up(api, key, "u-1")
    clock.set_now(datetime(2026, 3, 1, tzinfo=UTC))
    cases = [
        ({"tierCode": "PLATINUM"}, "UNKNOWN_TIER", "tierCode"),
        ({"reason": "  "}, "INVALID_REASON", "reason"),
        ({"expiresAt": "2026-01-01T00:00:00+08:00"}, "EXPIRY_IN_PAST", "expiresAt"),
        ({"expiresAt": "2027-01-01T00:00:00"}, "TIMESTAMP_WITHOUT_OFFSET", "expiresAt"),
        ({"memberId": "mem_nope"}, "MEMBER_NOT_FOUND", "memberId"),
    ]
    for change, code, field in cases:
        base = {"memberId": member_id, "tierCode": "GOLD", "reason": "goodwill"}
        payload = api(SET_TIER, {"input": {**base, **change}}, key)["setMemberTier"]
        assert [(e["code"], e["field"]) for e in payload["errors"]] == [(code, field)], change
    errors = api.errors(SET_TIER, {"input": {"memberId": member_id, "tierCode": "GOLD", "reason": "x"}},
                        api.key("alpha", "publishable"))
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    assert history(runtime, member_id) == [] and tier(api, key, member_id) == "REGULAR"


# ---------------------------------------------------------------- 7. benefits through core


def test_tier_benefits_reach_other_plugins_through_core(shops):
    runtime, api, key = shops
    member_id = sign_up(api, key, "u-1")
    with runtime.reading(runtime.shop("alpha")) as ctx:
        regular = ctx.member_tier(member_id)
        catalog = ctx.hook.tier_catalog(ctx=ctx)
    assert (regular.code, regular.points_multiplier_permille, regular.discount_percent) == ("REGULAR", 1000, 0)
    assert [(t.code, t.rank) for t in catalog] == [("REGULAR", 1), ("SILVER", 2), ("GOLD", 3), ("DIAMOND", 4)]
    pay(api, key, member_id, "o-1", 200000)
    with runtime.reading(runtime.shop("alpha")) as ctx:
        gold = ctx.member_tier(member_id)
    assert (gold.code, gold.points_multiplier_permille, gold.discount_percent) == ("GOLD", 1200, 2)
    assert gold.benefits == ("free express shipping",)


def test_without_tiering_the_tier_is_neutral(make_runtime):
    runtime = make_runtime(shop("alpha") + '\n[shops.plain]\nname = "Plain"\ncurrency = "CNY"\n'
                                           'timezone = "Asia/Shanghai"\n')
    with runtime.reading(runtime.shop("plain")) as ctx:
        assert ctx.member_tier("mem_any") is None and ctx.hook.tier_catalog(ctx=ctx) is None


# ---------------------------------------------------------------- 8. paid upgrade with points


class FakePoints:
    """Owns "points": every member holds 12,000; refuses to spend more than is left."""

    plugin = Plugin("fakepoints")

    def __init__(self):
        self.spent: dict[str, int] = {}

    @hookimpl
    def redemption(self, ctx, member_id, redemption):
        if redemption.currency != "points":
            return None
        left = 12000 - self.spent.get(member_id, 0)
        if redemption.amount > left:
            raise RedemptionRefused("INSUFFICIENT_POINTS", f"only {left} points left")
        self.spent[member_id] = self.spent.get(member_id, 0) + redemption.amount
        return RedemptionResult(redemption.amount, (Effect("fakepoints", "POINTS_SPENT",
                                                           f"-{redemption.amount} points for {redemption.reason}",
                                                           rule=redemption.reference),))


FAKE_POINTS = FakePoints()


@pytest.fixture
def with_points(add_plugin, make_runtime, make_api):
    add_plugin(FAKE_POINTS)
    FAKE_POINTS.spent.clear()
    runtime = make_runtime(shop("alpha", plugins='"fakepoints", "tiering"') + "\n" + shop("plain"))
    api = make_api(runtime)
    return runtime, api, api.key("alpha")


def events_of(runtime, kind: str) -> int:
    with runtime.db.read() as conn:
        return conn.execute(select(func.count()).select_from(Event).where(Event.kind == kind)).scalar()


def test_paid_upgrade_spends_points_through_the_redemption_hook(with_points):
    runtime, api, key = with_points
    clock.set_now(datetime(2026, 3, 1, tzinfo=UTC))
    member_id = sign_up(api, key, "u-1")
    pay(api, key, member_id, "o-1", 60000)
    upgrade = {"memberId": member_id, "tierCode": "GOLD", "amountPaid": 9900, "pointsUsed": 10000,
               "idempotencyKey": "up-1"}
    payload = api(UPGRADE, {"input": upgrade}, key)["recordTierUpgrade"]
    assert payload["errors"] == [] and payload["member"] == {"tier": {"code": "GOLD"}}
    assert [(e["plugin"], e["kind"]) for e in payload["effects"]] == [("tiering", "TIER_CHANGED"),
                                                                      ("fakepoints", "POINTS_SPENT")]
    assert payload["effects"][1]["rule"] == "up-1" and FAKE_POINTS.spent == {member_id: 10000}
    again = api(UPGRADE, {"input": upgrade}, key)["recordTierUpgrade"]
    assert again["duplicate"] is True and FAKE_POINTS.spent == {member_id: 10000}
    conflict = api(UPGRADE, {"input": {**upgrade, "pointsUsed": 0, "amountPaid": 19900}}, key)["recordTierUpgrade"]
    assert conflict["errors"][0]["code"] == "IDEMPOTENCY_CONFLICT"
    assert history(runtime, member_id)[-1] == ("SILVER", "GOLD", "paid_upgrade")
    assert member(api, key, member_id)["tierProgress"]["setUntil"] == "2027-03-01T00:00:00+00:00"  # 12 months
    clock.set_now(datetime(2027, 3, 2, tzinfo=UTC))
    assert tier(api, key, member_id) == "SILVER"  # a bought tier ends too


def test_paid_upgrade_refusals_write_nothing(with_points):
    runtime, api, key = with_points
    member_id = sign_up(api, key, "u-1")
    FAKE_POINTS.spent[member_id] = 5000  # 7,000 points left
    base = {"memberId": member_id, "tierCode": "GOLD", "amountPaid": 9900, "pointsUsed": 10000,
            "idempotencyKey": "up-1"}
    cases = [
        ({}, "INSUFFICIENT_POINTS", None),
        ({"amountPaid": 10000}, "PRICE_MISMATCH", "amountPaid"),
        ({"pointsUsed": 12000, "amountPaid": 7900}, "TOO_MANY_POINTS", "pointsUsed"),
        ({"tierCode": "DIAMOND"}, "TIER_NOT_FOR_SALE", "tierCode"),
        ({"tierCode": "NOPE"}, "UNKNOWN_TIER", "tierCode"),
        ({"memberId": "mem_nope"}, "MEMBER_NOT_FOUND", "memberId"),
    ]
    for change, code, field in cases:
        payload = api(UPGRADE, {"input": {**base, **change}}, key)["recordTierUpgrade"]
        assert [e["code"] for e in payload["errors"]] == [code], (change, payload)
        if field:
            assert payload["errors"][0]["field"] == field
    assert FAKE_POINTS.spent == {member_id: 5000}
    assert events_of(runtime, "tiering_upgrade") == 0 and history(runtime, member_id) == []
    pay(api, key, member_id, "o-1", 200000)
    payload = api(UPGRADE, {"input": {**base, "pointsUsed": 0, "amountPaid": 19900}}, key)["recordTierUpgrade"]
    assert payload["errors"][0]["code"] == "TIER_NOT_HIGHER"
    assert events_of(runtime, "tiering_upgrade") == 0


def test_points_towards_an_upgrade_need_a_points_plugin(with_points):
    runtime, api, _ = with_points
    key = api.key("plain")
    member_id = sign_up(api, key, "u-1")
    base = {"memberId": member_id, "tierCode": "GOLD", "amountPaid": 9900, "pointsUsed": 10000,
            "idempotencyKey": "up-1"}
    payload = api(UPGRADE, {"input": base}, key)["recordTierUpgrade"]
    assert [(e["code"], e["field"]) for e in payload["errors"]] == [("POINTS_NOT_ENABLED", "pointsUsed")]
    assert events_of(runtime, "tiering_upgrade") == 0 and history(runtime, member_id) == []
    paid = api(UPGRADE, {"input": {**base, "pointsUsed": 0, "amountPaid": 19900}}, key)["recordTierUpgrade"]
    assert paid["errors"] == [] and paid["member"]["tier"]["code"] == "GOLD"


# ---------------------------------------------------------------- 9. shops never mix


def test_two_shops_with_different_tier_settings_never_mix(shops):
    runtime, api, alpha = shops
    beta = api.key("beta")
    in_alpha = sign_up(api, alpha, "same-person")
    payload = api(SIGN_UP, {"input": {"externalId": "same-person"}}, beta)["signUpMember"]
    in_beta = payload["member"]["id"]
    assert [e["description"] for e in payload["effects"] if e["plugin"] == "tiering"] == ["tier BRONZE (Bronze)"]
    pay(api, alpha, in_alpha, "o-1", 600000)
    assert tier(api, alpha, in_alpha) == "DIAMOND" and tier(api, beta, in_beta) == "BRONZE"
    assert pay(api, beta, in_beta, "o-1", 100) == []  # the same order id in another shop is its own order
    progress = member(api, beta, in_beta)["tierProgress"]
    assert progress["spendToNext"] is None and progress["ordersToNext"] == 1
    assert progress["qualifyingSpend"] == {"amount": 100, "currency": "EUR"}
    assert pay(api, beta, in_beta, "o-2", 100) == [("TIER_CHANGED", "tier BRONZE -> STAR")]
    assert api(PROGRESS, {"id": in_alpha}, beta)["member"] is None  # a member of alpha is unknown to beta
    with runtime.reading(runtime.shop("beta")) as ctx:
        assert ctx.member_tier(in_beta).points_multiplier_permille == 1500
        assert [t.code for t in ctx.hook.tier_catalog(ctx=ctx)] == ["BRONZE", "STAR"]
    set_in_beta = api(SET_TIER, {"input": {"memberId": in_alpha, "tierCode": "STAR", "reason": "x"}},
                      beta)["setMemberTier"]
    assert set_in_beta["errors"][0]["code"] == "MEMBER_NOT_FOUND"
    refund(api, alpha, "o-1", "r-1", 600000)
    assert tier(api, alpha, in_alpha) == "REGULAR" and tier(api, beta, in_beta) == "STAR"
    run_jobs(runtime, "alpha")
    assert tier(api, beta, in_beta) == "STAR"
    assert history(runtime, in_beta) == [("BRONZE", "STAR", "order")]


@postgres_only()
def test_concurrent_orders_count_every_fen_and_record_a_consistent_history(shops):
    runtime, api, key = shops
    member_id = sign_up(api, key, "u-1")
    alpha = runtime.shop("alpha")

    def order(n: int):
        return record_order_paid(runtime, alpha, None, order_id=f"o-{n}", member_id=member_id, total=70000)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(order, range(8)))
    assert all(not r.errors for r in results)
    progress = member(api, key, member_id)["tierProgress"]
    assert progress["qualifyingSpend"]["amount"] == 560000 and progress["current"]["code"] == "DIAMOND"
    changes = history(runtime, member_id)
    assert [c[1] for c in changes] == ["SILVER", "GOLD", "DIAMOND"][-len(changes):]
    assert all(a[1] == b[0] for a, b in zip(changes, changes[1:], strict=False))  # each from the last one's to
