"""The member_only plugin (RULES.md section 4) with the demo numbers: members-only products, products for a
tier and above, new-product early access for gold and above, member prices; the same answers through
productAccess, upsertProductRule's payload and the cart hooks (purchase_denials, price_adjustments); input
checks that write nothing; one rule per (shop, sku); and shops that cannot see each other's rules."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from memberkit import config as settings_module
from memberkit.core import clock
from memberkit.core.models import Event
from memberkit.core.types import Adjustment, Cart, OrderLine, PriceStage, PurchaseDenial
from memberkit.plugins.member_only import rules
from memberkit.plugins.member_only.models import ProductRule
from memberkit.plugins.member_only.settings import MemberOnlySettings
from tests.conftest import DEMO_TIERS as TIERS
from tests.conftest import ORDER_PAID, ROOT, sign_up

# alpha: the demo (tiering, gold and above 3 days early); plain: member_only alone, in Berlin, no tiering.
SETTINGS_TEXT = """
[shops.alpha]
name = "Alpha"
currency = "CNY"
timezone = "Asia/Shanghai"
plugins = ["tiering", "member_only"]

[shops.alpha.settings.member_only]
early_access_min_tier = "GOLD"
early_access_days = 3
""" + TIERS.format(shop="alpha") + """
[shops.plain]
name = "Plain"
currency = "EUR"
timezone = "Europe/Berlin"
plugins = ["member_only"]
"""

UPSERT = """
mutation($input: ProductRuleInput!) { upsertProductRule(input: $input) {
  access { sku memberOnly minTier launchAt earlyAccessFrom memberPrice { amount currency } canPurchase
           reasonCode reason }
  errors { code field message } } }"""

ACCESS = """
query($skus: [String!]!) { productAccess(skus: $skus) {
  sku memberOnly minTier launchAt earlyAccessFrom memberPrice { amount currency } canPurchase reasonCode reason
} }"""

MINT = "mutation($m: ID!) { createMemberToken(memberId: $m, ttlSeconds: 2592000) { token } }"  # 30 days

# The launch of the new product: 10 March 2026, 10:00 in Shanghai (02:00 UTC).
LAUNCH = "2026-03-10T10:00:00+08:00"


def local(*args) -> datetime:
    """A moment on the Shanghai wall clock (UTC+8), as UTC."""
    return datetime(*args, tzinfo=UTC) - timedelta(hours=8)


@pytest.fixture
def shops(make_runtime, make_api):
    clock.set_now(local(2026, 3, 1, 12))
    runtime = make_runtime(SETTINGS_TEXT)
    api = make_api(runtime)
    return runtime, api, api.key("alpha")


def upsert(api, key, **rule) -> dict:
    payload = api(UPSERT, {"input": rule}, key)["upsertProductRule"]
    assert payload["errors"] == [], payload
    return payload["access"]


def access(api, key, *skus: str) -> dict[str, dict]:
    return {a["sku"]: a for a in api(ACCESS, {"skus": list(skus)}, key)["productAccess"]}


def member(api, key, external_id: str, spend: int = 0) -> tuple[str, str]:
    """A member (gold with a paid order of 2,000 yuan: spend=200000) and a member token for them."""
    member_id = sign_up(api, key, external_id)
    if spend:
        paid = api(ORDER_PAID, {"input": {"orderId": f"o-{external_id}", "memberId": member_id, "total": spend}},
                   key)["recordOrderPaid"]
        assert paid["errors"] == [], paid
    return member_id, api(MINT, {"m": member_id}, key)["createMemberToken"]["token"]


def rule_rows(runtime) -> list:
    with runtime.db.read() as conn:
        return conn.execute(select(ProductRule.__table__).order_by(ProductRule.shop, ProductRule.sku)).all()


def upsert_events(runtime) -> int:
    with runtime.db.read() as conn:
        return conn.execute(select(func.count()).select_from(Event)
                            .where(Event.kind == "member_only.upsert_rule")).scalar()


def reason(found: dict) -> tuple[bool, str | None]:
    return found["canPurchase"], found["reasonCode"]


# ---------------------------------------------------------------- settings


def test_demo_shop_gives_gold_and_above_three_days_early():
    demo = settings_module.load(ROOT / "plugins.toml").shop("demo")
    s: MemberOnlySettings = demo.settings_for("member_only")
    assert "member_only" in demo.plugins and "tiering" in demo.plugins
    assert (s.early_access_min_tier, s.early_access_days) == ("GOLD", 3)


@pytest.mark.parametrize("setting, reason", [
    ('early_access_min_tier = "gold"', "a tier code of upper-case letters"),
    ("early_access_days = -1", "early_access_days"),
    ("early_days = 3", "unknown setting (check its spelling)"),
])
def test_settings_refuse_with_the_key_and_reason(tmp_path, setting, reason):
    path = tmp_path / "member_only.toml"
    path.write_text('[shops.x]\nname = "x"\ncurrency = "CNY"\ntimezone = "Asia/Shanghai"\nplugins = ["member_only"]\n'
                    f"[shops.x.settings.member_only]\n{setting}\n")
    with pytest.raises(settings_module.SettingsError) as refused:
        settings_module.load(path)
    assert any(reason in str(p) for p in refused.value.problems), refused.value.problems


# ---------------------------------------------------------------- productAccess: each reason


def test_a_sku_without_a_rule_is_open_to_everyone(shops):
    runtime, api, key = shops
    found = access(api, api.key("alpha", "publishable"), "PLAIN-TEE")["PLAIN-TEE"]
    assert found == {"sku": "PLAIN-TEE", "memberOnly": False, "minTier": None, "launchAt": None,
                     "earlyAccessFrom": None, "memberPrice": None, "canPurchase": True, "reasonCode": None,
                     "reason": None}


def test_members_only_needs_a_member_token(shops):
    runtime, api, key = shops
    saved = upsert(api, key, sku="VIP-TEE", memberOnly=True)
    # The payload answers as an anonymous shopper (what productAccess says for a key), with the rule.
    assert (saved["memberOnly"], saved["canPurchase"], saved["reasonCode"]) == (True, False, "MEMBERS_ONLY")
    _, token = member(api, key, "u-1")
    publishable = api.key("alpha", "publishable")
    for anonymous in (publishable, key):  # a publishable or secret key: nobody is signed in
        found = access(api, anonymous, "VIP-TEE")["VIP-TEE"]
        assert reason(found) == (False, "MEMBERS_ONLY")
        assert found["reason"] == "For members only: sign in to buy"
    assert reason(access(api, token, "VIP-TEE")["VIP-TEE"]) == (True, None)


def test_a_tier_and_above(shops):
    runtime, api, key = shops
    upsert(api, key, sku="LIMITED", memberOnly=True, minTier="GOLD")
    _, regular = member(api, key, "regular")
    _, silver = member(api, key, "silver", spend=50000)
    _, gold = member(api, key, "gold", spend=200000)  # 2,000 yuan paid: gold
    _, diamond = member(api, key, "diamond", spend=500000)
    for token in (regular, silver):
        found = access(api, token, "LIMITED")["LIMITED"]
        assert reason(found) == (False, "TIER_TOO_LOW")
        assert found["reason"] == "For Gold members and above" and found["minTier"] == "GOLD"
    for token in (gold, diamond):
        assert reason(access(api, token, "LIMITED")["LIMITED"]) == (True, None)
    anonymous = access(api, api.key("alpha", "publishable"), "LIMITED")["LIMITED"]
    assert reason(anonymous) == (False, "MEMBERS_ONLY")
    assert anonymous["reason"] == "For Gold members and above: sign in to buy"


def test_early_access_for_gold_and_above_three_days_before_launch(shops):
    runtime, api, key = shops
    saved = upsert(api, key, sku="NEW-SHOE", memberOnly=False, launchAt=LAUNCH)
    # Stored and answered in UTC; early access three days before, where the shop has the gold tier.
    assert saved["launchAt"] == "2026-03-10T02:00:00+00:00"
    assert saved["earlyAccessFrom"] == "2026-03-07T02:00:00+00:00"
    assert reason(saved) == (False, "NOT_LAUNCHED")
    _, silver = member(api, key, "silver", spend=50000)
    _, gold = member(api, key, "gold", spend=200000)
    _, diamond = member(api, key, "diamond", spend=500000)
    publishable = api.key("alpha", "publishable")

    def who_may_buy() -> dict[str, tuple[bool, str | None]]:
        return {name: reason(access(api, token, "NEW-SHOE")["NEW-SHOE"])
                for name, token in (("anonymous", publishable), ("silver", silver), ("gold", gold),
                                    ("diamond", diamond))}

    early = (False, "NOT_LAUNCHED")
    clock.set_now(local(2026, 3, 7, 9, 59, 59))  # a second before early access
    assert who_may_buy() == {"anonymous": early, "silver": early, "gold": early, "diamond": early}
    assert access(api, gold, "NEW-SHOE")["NEW-SHOE"]["reason"] == (
        "Early access for you from 2026-03-07 10:00 (Asia/Shanghai); "
        "on sale to everyone from 2026-03-10 10:00 (Asia/Shanghai)")
    clock.set_now(local(2026, 3, 7, 10))  # early access opens: gold and above
    assert who_may_buy() == {"anonymous": early, "silver": early, "gold": (True, None), "diamond": (True, None)}
    assert access(api, silver, "NEW-SHOE")["NEW-SHOE"]["reason"] == (
        "On sale from 2026-03-10 10:00 (Asia/Shanghai); Gold members and above from 2026-03-07 10:00 "
        "(Asia/Shanghai)")
    clock.set_now(local(2026, 3, 10, 9, 59, 59))
    assert who_may_buy()["silver"] == early
    clock.set_now(local(2026, 3, 10, 10))  # the launch: everyone
    assert set(who_may_buy().values()) == {(True, None)}


def test_launch_times_are_said_in_the_shops_timezone(shops):
    runtime, api, _ = shops
    key = api.key("plain")  # Europe/Berlin, no tiering: no early access
    # Given with Shanghai's offset: 17:00+08:00 is 09:00 UTC, 10:00 in Berlin (CET, +01:00).
    saved = upsert(api, key, sku="NEW-BAG", memberOnly=False, launchAt="2026-03-10T17:00:00+08:00")
    assert (saved["launchAt"], saved["earlyAccessFrom"]) == ("2026-03-10T09:00:00+00:00", None)
    assert saved["reason"] == "On sale from 2026-03-10 10:00 (Europe/Berlin)"
    publishable = api.key("plain", "publishable")
    clock.set_now(datetime(2026, 3, 10, 8, 59, 59, tzinfo=UTC))
    assert reason(access(api, publishable, "NEW-BAG")["NEW-BAG"]) == (False, "NOT_LAUNCHED")
    clock.set_now(datetime(2026, 3, 10, 9, tzinfo=UTC))
    assert reason(access(api, publishable, "NEW-BAG")["NEW-BAG"]) == (True, None)


def test_early_access_follows_the_settings(make_runtime, make_api):
    clock.set_now(local(2026, 3, 8, 12))  # two days before the launch
    text = SETTINGS_TEXT.replace('early_access_min_tier = "GOLD"', 'early_access_min_tier = "SILVER"') \
        .replace("early_access_days = 3", "early_access_days = 1")
    runtime = make_runtime(text)
    api = make_api(runtime)
    key = api.key("alpha")
    saved = upsert(api, key, sku="NEW-SHOE", memberOnly=False, launchAt=LAUNCH)
    assert saved["earlyAccessFrom"] == "2026-03-09T02:00:00+00:00"
    _, silver = member(api, key, "silver", spend=50000)
    assert reason(access(api, silver, "NEW-SHOE")["NEW-SHOE"]) == (False, "NOT_LAUNCHED")
    clock.set_now(local(2026, 3, 9, 10))
    assert reason(access(api, silver, "NEW-SHOE")["NEW-SHOE"]) == (True, None)


def test_reasons_come_in_order_members_tier_launch(shops):
    runtime, api, key = shops
    upsert(api, key, sku="DROP", memberOnly=True, minTier="GOLD", launchAt=LAUNCH, memberPrice=8900)
    _, silver = member(api, key, "silver", spend=50000)
    _, gold = member(api, key, "gold", spend=200000)
    assert reason(access(api, key, "DROP")["DROP"]) == (False, "MEMBERS_ONLY")
    assert reason(access(api, silver, "DROP")["DROP"]) == (False, "TIER_TOO_LOW")
    assert reason(access(api, gold, "DROP")["DROP"]) == (False, "NOT_LAUNCHED")
    clock.set_now(local(2026, 3, 7, 10))
    found = access(api, gold, "DROP")["DROP"]
    assert reason(found) == (True, None)
    assert found["memberPrice"] == {"amount": 8900, "currency": "CNY"}


def test_many_skus_at_once_in_the_order_asked_and_at_most_100(shops):
    runtime, api, key = shops
    upsert(api, key, sku="VIP-TEE", memberOnly=True)
    skus = ["PLAIN-TEE", " VIP-TEE", "VIP-TEE"] + [f"SKU-{i}" for i in range(97)]
    found = api(ACCESS, {"skus": skus}, key)["productAccess"]
    assert [f["sku"] for f in found[:3]] == ["PLAIN-TEE", "VIP-TEE", "VIP-TEE"] and len(found) == 100
    assert [f["canPurchase"] for f in found[:3]] == [True, False, False]
    errors = api.errors(ACCESS, {"skus": skus + ["ONE-TOO-MANY"]}, key)
    assert errors[0]["message"] == "skus: 101 items, at most 100 allowed"
    assert errors[0]["extensions"]["code"] == "TOO_MANY_ITEMS"


# ---------------------------------------------------------------- upsertProductRule


def test_upsert_is_one_rule_per_sku_and_replaces_it(shops):
    runtime, api, key = shops
    rule = {"sku": "VIP-TEE", "memberOnly": True, "minTier": "SILVER", "launchAt": LAUNCH, "memberPrice": 8900}
    first, again = upsert(api, key, **rule), upsert(api, key, **rule)
    assert first == again
    rows = rule_rows(runtime)
    assert [(r.shop, r.sku, r.member_only, r.min_tier, r.member_price) for r in rows] == \
        [("alpha", "VIP-TEE", True, "SILVER", 8900)]
    assert rows[0].launch_at == datetime(2026, 3, 10, 2, tzinfo=UTC)
    # The whole rule is replaced: what is left out is cleared; a padded sku is the same sku.
    replaced = upsert(api, key, sku=" VIP-TEE ", memberOnly=False)
    assert replaced == {"sku": "VIP-TEE", "memberOnly": False, "minTier": None, "launchAt": None,
                        "earlyAccessFrom": None, "memberPrice": None, "canPurchase": True, "reasonCode": None,
                        "reason": None}
    assert [(r.sku, r.member_only, r.min_tier, r.launch_at) for r in rule_rows(runtime)] == \
        [("VIP-TEE", False, None, None)]
    assert upsert_events(runtime) == 3  # each write is recorded: who sent it, under which settings


def test_concurrent_upserts_of_one_sku_leave_one_rule(shops):
    runtime, api, key = shops
    shop = runtime.shop("alpha")

    def write(price: int):
        result, _ = rules.upsert_rule(runtime, shop, None, sku="HOT", member_only=True, member_price=price)
        return result.errors

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(write, range(1000, 1016))) == [[]] * 16
    rows = rule_rows(runtime)
    assert len(rows) == 1 and 1000 <= rows[0].member_price < 1016


@pytest.mark.parametrize("rule, code, field", [
    ({"sku": "  "}, "INVALID_SKU", "sku"),
    ({"sku": "X" * 201}, "INVALID_SKU", "sku"),
    ({"minTier": "PLATINUM"}, "UNKNOWN_TIER", "minTier"),
    ({"minTier": "GOLD", "memberOnly": False}, "MIN_TIER_NEEDS_MEMBER_ONLY", "memberOnly"),
    ({"launchAt": "2026-03-10T10:00:00"}, "TIMESTAMP_WITHOUT_OFFSET", "launchAt"),
    ({"memberPrice": -1}, "NEGATIVE_AMOUNT", "memberPrice"),
])
def test_bad_input_is_refused_with_a_code_and_writes_nothing(shops, rule, code, field):
    runtime, api, key = shops
    payload = api(UPSERT, {"input": {"sku": "VIP-TEE", "memberOnly": True, **rule}}, key)["upsertProductRule"]
    assert payload["access"] is None
    assert [(e["code"], e["field"]) for e in payload["errors"]] == [(code, field)]
    assert rule_rows(runtime) == [] and upsert_events(runtime) == 0


def test_a_minimum_tier_needs_tiering(shops):
    runtime, api, _ = shops
    payload = api(UPSERT, {"input": {"sku": "LIMITED", "memberOnly": True, "minTier": "GOLD"}},
                  api.key("plain"))["upsertProductRule"]
    assert payload["access"] is None
    assert [(e["code"], e["field"]) for e in payload["errors"]] == [("TIERING_NOT_ENABLED", "minTier")]
    assert rule_rows(runtime) == []


def test_only_the_secret_key_writes_rules(shops):
    runtime, api, key = shops
    _, token = member(api, key, "u-1")
    for caller in (api.key("alpha", "publishable"), token):
        errors = api.errors(UPSERT, {"input": {"sku": "VIP-TEE", "memberOnly": True}}, caller)
        assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    assert rule_rows(runtime) == []


def test_a_shop_sees_only_its_own_rules(shops):
    runtime, api, key = shops
    upsert(api, key, sku="VIP-TEE", memberOnly=True, memberPrice=8900)
    upsert(api, api.key("plain"), sku="VIP-TEE", memberOnly=False, memberPrice=1500)
    for caller in (api.key("plain"), api.key("plain", "publishable")):
        found = access(api, caller, "VIP-TEE")["VIP-TEE"]
        assert (found["memberOnly"], found["canPurchase"], found["memberPrice"]) == \
            (False, True, {"amount": 1500, "currency": "EUR"})
    assert reason(access(api, api.key("alpha", "publishable"), "VIP-TEE")["VIP-TEE"]) == (False, "MEMBERS_ONLY")
    assert [(r.shop, r.member_price) for r in rule_rows(runtime)] == [("alpha", 8900), ("plain", 1500)]


# ---------------------------------------------------------------- the cart hooks, called as the quote will


def hook_denials(runtime, slug: str, member_id: str | None, *skus: str) -> list[PurchaseDenial]:
    cart = Cart(lines=tuple(OrderLine(sku, 1, 10000) for sku in skus), member_id=member_id)
    with runtime.reading(runtime.shop(slug)) as ctx:
        return [d for found in ctx.hook.purchase_denials(ctx=ctx, cart=cart) if found for d in found]


def hook_adjustments(runtime, slug: str, member_id: str | None, lines, stage=PriceStage.UNIT_PRICE
                     ) -> list[Adjustment]:
    cart = Cart(lines=tuple(lines), member_id=member_id)
    with runtime.reading(runtime.shop(slug)) as ctx:
        found = ctx.hook.price_adjustments(ctx=ctx, cart=cart, stage=stage,
                                           subtotal=sum(line.amount for line in lines))
    return [a for result in found if result for a in result]


def test_purchase_denials_say_what_product_access_says(shops):
    runtime, api, key = shops
    upsert(api, key, sku="VIP-TEE", memberOnly=True)
    upsert(api, key, sku="LIMITED", memberOnly=True, minTier="GOLD")
    upsert(api, key, sku="NEW-SHOE", memberOnly=False, launchAt=LAUNCH)
    silver_id, silver = member(api, key, "silver", spend=50000)
    gold_id, gold = member(api, key, "gold", spend=200000)
    skus = ("PLAIN-TEE", "VIP-TEE", "LIMITED", "NEW-SHOE")
    publishable = api.key("alpha", "publishable")
    clock.set_now(local(2026, 3, 8, 12))  # gold's early access is open, the launch is not
    for member_id, caller in ((None, publishable), (silver_id, silver), (gold_id, gold)):
        denied = hook_denials(runtime, "alpha", member_id, *skus)
        shown = access(api, caller, *skus)
        assert denied == [PurchaseDenial(sku, shown[sku]["reasonCode"], shown[sku]["reason"])
                          for sku in skus if not shown[sku]["canPurchase"]]
    assert [(d.sku, d.code) for d in hook_denials(runtime, "alpha", None, *skus)] == \
        [("VIP-TEE", "MEMBERS_ONLY"), ("LIMITED", "MEMBERS_ONLY"), ("NEW-SHOE", "NOT_LAUNCHED")]
    assert [(d.sku, d.code) for d in hook_denials(runtime, "alpha", silver_id, *skus)] == \
        [("LIMITED", "TIER_TOO_LOW"), ("NEW-SHOE", "NOT_LAUNCHED")]
    assert hook_denials(runtime, "alpha", gold_id, *skus) == []
    assert hook_denials(runtime, "plain", None, *skus) == []  # another shop's rules do not apply


def test_member_price_is_a_unit_price_adjustment_for_members_only(shops):
    runtime, api, key = shops
    upsert(api, key, sku="TEE", memberOnly=False, memberPrice=8900)
    upsert(api, key, sku="CAP", memberOnly=False, memberPrice=5000)
    upsert(api, key, sku="FREE", memberOnly=False, memberPrice=0)
    member_id, _ = member(api, key, "u-1")
    lines = [OrderLine("TEE", 2, 9900), OrderLine("CAP", 1, 4000), OrderLine("SOCK", 3, 1000),
             OrderLine("FREE", 1, 1500)]
    events_before = upsert_events(runtime)
    found = hook_adjustments(runtime, "alpha", member_id, lines)
    assert found == [
        Adjustment("member_only", "MEMBER_PRICE", "member price 89.00", -2000, sku="TEE",
                   exclusive_group="unit_price:TEE"),
        Adjustment("member_only", "MEMBER_PRICE", "member price 0.00", -1500, sku="FREE",
                   exclusive_group="unit_price:FREE"),
    ]  # the cap's member price is above its unit price: nothing; the socks have no rule
    assert hook_adjustments(runtime, "alpha", None, lines) == []  # anonymous: list price
    for stage in (PriceStage.COUPON, PriceStage.PERCENT, PriceStage.POINTS):
        assert hook_adjustments(runtime, "alpha", member_id, lines, stage) == []
    assert hook_adjustments(runtime, "plain", member_id, lines) == []  # alpha's rules only in alpha
    assert upsert_events(runtime) == events_before and len(rule_rows(runtime)) == 3  # reads only
