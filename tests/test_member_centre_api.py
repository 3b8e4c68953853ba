"""The member centre's API (schema/contract/member-centre.graphql): the shop's locale, tier names per locale,
the upgrade path (`tiers`) and the activity calendar (`calendar`) from the plugins' `calendar_entries`."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from memberkit import config as settings_module
from tests.conftest import ROOT

DEMO = (ROOT / "plugins.toml").read_text()

# A second shop, in English: its tiers name no other locale, its member day the 31st (the last day of a
# shorter month), no flash sales.
ENGLISH = """
[shops.uk]
name = "English shop"
currency = "GBP"
timezone = "Europe/London"
locale = "en"
plugins = ["tiering", "perks"]

[shops.uk.settings.perks]
welcome_coupon = ""
first_order_coupon = ""
birthday_coupon = ""
monthly_coupon = ""
member_day = 31
member_day_percent = 10
birthday_percent = 0

[[shops.uk.settings.tiering.tiers]]
code = "BASIC"
name = "Basic"
rank = 1

[[shops.uk.settings.tiering.tiers]]
code = "PLUS"
name = "Plus"
names = { "zh-CN" = "加会员" }
rank = 2
min_spend = 10000
benefits = ["free delivery"]

[shops.plain]
name = "No locale given"
currency = "CNY"
timezone = "Asia/Shanghai"
"""

CALENDAR = """query($from: Date!, $to: Date!) { calendar(from: $from, to: $to) { date kind title reference } }"""
CREATE_SALE = """mutation($input: FlashSaleInput!) { createFlashSale(input: $input) {
  flashSale { id } errors { code message } } }"""
CANCEL_SALE = """mutation($id: ID!) { cancelFlashSale(id: $id) { errors { code } } }"""


@pytest.fixture
def demo(memberkit):
    programme = memberkit(DEMO)
    programme.clock.set(datetime(2026, 2, 20, 4, tzinfo=UTC))
    return programme


@pytest.fixture
def shops(memberkit):
    return memberkit(DEMO + ENGLISH)


def entries(client, first: str, last: str) -> list[tuple]:
    return [(e["date"], e["kind"], e["title"], e["reference"])
            for e in client(CALENDAR, {"from": first, "to": last})["calendar"]]


def sale(demo, title: str, starts_at: str, ends_at: str) -> str:
    created = demo.integrator("demo")(CREATE_SALE, {"input": {
        "sku": "FLASH-1", "title": title, "price": 8900, "startsAt": starts_at, "endsAt": ends_at, "stock": 10,
        "perMemberLimit": 2, "membersOnly": True}})["createFlashSale"]
    assert created["errors"] == [], created
    return created["flashSale"]["id"]


# ---------------------------------------------------------------- the shop's locale


def test_each_shop_says_its_locale_zh_cn_by_default(shops):
    locales = {slug: shops.storefront(slug)("{ shop { slug locale } }")["shop"]["locale"]
               for slug in ("demo", "uk", "plain")}
    assert locales == {"demo": "zh-CN", "uk": "en", "plain": "zh-CN"}


def test_a_locale_memberkit_has_no_messages_for_is_refused_with_the_ones_it_has(settings_file):
    text = DEMO.replace('\nlocale = "zh-CN"', '\nlocale = "fr"')
    assert text != DEMO
    with pytest.raises(settings_module.SettingsError) as refused:
        settings_module.load(settings_file(text))
    [problem] = refused.value.problems
    assert (problem.shop, problem.key) == ("demo", "locale")
    assert "'fr'" in problem.message and "zh-CN, en" in problem.message


def test_a_tier_name_for_an_unknown_locale_is_refused(settings_file):
    text = DEMO.replace('names = { en = "Silver" }', 'names = { de = "Silber" }')
    with pytest.raises(settings_module.SettingsError) as refused:
        settings_module.load(settings_file(text))
    [problem] = refused.value.problems
    assert (problem.shop, problem.plugin) == ("demo", "tiering") and problem.key.startswith("tiers.1.names")
    assert "'de'" in problem.message and "zh-CN, en" in problem.message


# ---------------------------------------------------------------- tiers and their names


def test_tiers_are_the_upgrade_path_in_rank_order_with_every_benefit(demo):
    tiers = demo.storefront("demo")("{ tiers { code rank name localName benefits } }")["tiers"]
    assert [(t["code"], t["rank"], t["name"], t["localName"]) for t in tiers] == [
        ("REGULAR", 1, "普通会员", "普通会员"), ("SILVER", 2, "银卡会员", "银卡会员"),
        ("GOLD", 3, "金卡会员", "金卡会员"), ("DIAMOND", 4, "钻石会员", "钻石会员")]
    assert tiers[1]["benefits"] == ["one exclusive coupon each month",
                                    "an extra 5% off during the birthday month (10% in all)"]
    assert tiers[2]["benefits"] == ["free express shipping", "a birthday gift", "early access to new products",
                                    "limited editions"]
    member = demo.sign_up("demo", "ann")
    assert demo.member("demo", member)("{ tiers { code } }")["tiers"] == [{"code": c} for c in
                                                                         ("REGULAR", "SILVER", "GOLD", "DIAMOND")]


def test_local_name_follows_the_locale_asked_then_the_shops_and_falls_back_to_the_name(shops):
    query = '{ tiers { code shop: localName en: localName(locale: "en") zh: localName(locale: "zh-CN") } }'
    demo = shops.storefront("demo")(query)["tiers"]
    assert demo[1] == {"code": "SILVER", "shop": "银卡会员", "en": "Silver", "zh": "银卡会员"}
    uk = shops.storefront("uk")(query)["tiers"]
    assert uk == [{"code": "BASIC", "shop": "Basic", "en": "Basic", "zh": "Basic"},  # no names: `name` everywhere
                  {"code": "PLUS", "shop": "Plus", "en": "Plus", "zh": "加会员"}]
    member = shops.sign_up("demo", "bo")
    mine = shops.member("demo", member)('{ me { tier { localName en: localName(locale: "en") } } }')
    assert mine["me"]["tier"] == {"localName": "普通会员", "en": "Regular"}


def test_local_name_refuses_a_locale_memberkit_has_no_messages_for(demo):
    [error] = demo.storefront("demo").errors('{ tiers { localName(locale: "fr") } }')[:1]
    assert error["extensions"] == {"code": "INVALID_LOCALE", "field": "locale"}
    assert "'fr'" in error["message"] and "zh-CN, en" in error["message"]


# ---------------------------------------------------------------- the calendar


def test_a_month_of_the_demo_shop_for_a_member_born_in_it(demo):
    friday = sale(demo, "周五秒杀 Friday flash", "2026-03-06T20:00:00+08:00", "2026-03-06T22:00:00+08:00")
    late = sale(demo, "月末秒杀", "2026-03-31T23:30:00+08:00", "2026-04-01T01:00:00+08:00")  # 15:30 UTC: still the 31st
    sale(demo, "四月秒杀", "2026-04-01T00:30:00+08:00", "2026-04-01T02:00:00+08:00")  # 31 March in UTC, April here
    cancelled = sale(demo, "取消的秒杀", "2026-03-13T20:00:00+08:00", "2026-03-13T22:00:00+08:00")
    assert demo.integrator("demo")(CANCEL_SALE, {"id": cancelled})["cancelFlashSale"]["errors"] == []
    born_in_march = demo.sign_up("demo", "cai", birthday="1990-03-20")

    assert entries(demo.member("demo", born_in_march), "2026-03-01", "2026-03-31") == [
        ("2026-03-01", "BIRTHDAY_MONTH", "生日月：95折", None),  # one entry, on the month's first day
        ("2026-03-06", "FLASH_SALE", "周五秒杀 Friday flash", friday),
        ("2026-03-15", "MEMBER_DAY", "会员日：95折", None),
        ("2026-03-31", "FLASH_SALE", "月末秒杀", late),
    ]


def test_the_birthday_month_is_the_signed_in_members_own(demo):
    born_in_march = demo.sign_up("demo", "cai", birthday="1990-03-20")
    no_birthday = demo.sign_up("demo", "dan")
    born_in_may = demo.sign_up("demo", "eve", birthday="1985-05-02")
    member_day_only = [("2026-03-15", "MEMBER_DAY", "会员日：95折", None)]
    assert entries(demo.member("demo", no_birthday), "2026-03-01", "2026-03-31") == member_day_only
    assert entries(demo.member("demo", born_in_may), "2026-03-01", "2026-03-31") == member_day_only
    assert entries(demo.storefront("demo"), "2026-03-01", "2026-03-31") == member_day_only  # nobody signed in
    assert entries(demo.integrator("demo"), "2026-03-01", "2026-03-31") == member_day_only  # nor with the secret key
    # a range that begins inside the birthday month shows it on its first day; one after it, not at all
    assert entries(demo.member("demo", born_in_march), "2026-03-16", "2026-04-16") == [
        ("2026-03-16", "BIRTHDAY_MONTH", "生日月：95折", None), ("2026-04-15", "MEMBER_DAY", "会员日：95折", None)]
    assert entries(demo.member("demo", born_in_march), "2026-04-01", "2026-04-30") == [
        ("2026-04-15", "MEMBER_DAY", "会员日：95折", None)]


def test_the_birthday_title_gives_the_members_own_percent(demo):
    silver = demo.sign_up("demo", "fay", birthday="1992-03-08")
    assert demo.pay("demo", silver, "o-1", 50000)["errors"] == []  # 500 yuan: silver, 10% in the birthday month
    assert entries(demo.member("demo", silver), "2026-03-01", "2026-03-01") == [
        ("2026-03-01", "BIRTHDAY_MONTH", "生日月：9折", None)]


def test_an_english_shop_speaks_english_and_keeps_a_member_day_in_a_short_month(shops):
    shops.clock.set(datetime(2026, 1, 10, tzinfo=UTC))
    member = shops.sign_up("uk", "gus", birthday="1970-02-11")
    assert entries(shops.member("uk", member), "2026-01-25", "2026-03-01") == [
        ("2026-01-31", "MEMBER_DAY", "Member day: 10% off", None),
        ("2026-02-01", "BIRTHDAY_MONTH", "Birthday month", None),  # no birthday percent in this shop
        ("2026-02-28", "MEMBER_DAY", "Member day: 10% off", None),  # the 31st: February's last day
    ]
    assert entries(shops.storefront("plain"), "2026-01-01", "2026-01-31") == []  # no plugin says anything


def test_ranges_are_at_most_62_days_in_order_and_within_the_years_memberkit_schedules(demo):
    client = demo.storefront("demo")
    assert len(client(CALENDAR, {"from": "2026-03-01", "to": "2026-05-01"})["calendar"]) == 2  # 62 days: fine
    refused = {
        ("2026-03-01", "2026-05-02"): ("to", "63 days: expected at most 62"),
        ("2026-03-02", "2026-03-01"): ("to", "before from (2026-03-02)"),
        ("1999-12-31", "2000-01-05"): ("from", "expected a day from 2000-01-01 to 2099-12-31"),
        ("2099-12-31", "9999-12-31"): ("to", "expected a day from 2000-01-01 to 2099-12-31"),
    }
    for (first, last), (field, words) in refused.items():
        [error] = client.errors(CALENDAR, {"from": first, "to": last})
        assert error["extensions"] == {"code": "INVALID_RANGE", "field": field}, error
        assert words in error["message"] and error["message"].startswith(f"calendar: {field} "), error
    for bad in ("2026-02-30", "2026-3-1", "tomorrow", 20260301):
        [error] = client.errors(CALENDAR, {"from": bad, "to": "2026-03-31"})
        assert "$from" in error["message"], error  # not a Date: refused before anything runs


def test_the_calendar_needs_a_credential(demo):
    response = demo.api.post(CALENDAR, {"from": "2026-03-01", "to": "2026-03-31"})
    assert response.status_code == 401 or response.json().get("errors"), response.text


def test_a_percentage_off_reads_as_zhe_the_tenths_of_the_price_paid():
    from memberkit.plugins.perks.rules import title

    assert [title("zh-CN", "MEMBER_DAY", off) for off in (5, 10, 15, 95, 100)] == [
        "会员日：95折", "会员日：9折", "会员日：85折", "会员日：0.5折", "会员日：免单"]
    assert [title("en", "MEMBER_DAY", off) for off in (5, 100)] == ["Member day: 5% off", "Member day: free"]
