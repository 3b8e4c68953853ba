"""The perks plugin (RULES.md section 6) with the demo numbers: sign-up gift, first order (percent or
threshold, and its coupon once), birthday month by tier with excluded categories, birthday coupon by job
(29 February, late and repeated runs), the birthday-change limit, member day, the monthly tier coupon, and
a shop with perks but neither tiering nor referral."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import event, select
from typer.testing import CliRunner

from memberkit import config as settings_module
from memberkit import jobs
from memberkit.cli import app
from memberkit.core import clock
from memberkit.core.members import update_member
from memberkit.core.models import Coupon
from memberkit.core.orders import record_order_paid
from memberkit.core.types import Cart, OrderLine, PriceStage
from memberkit.plugins.perks import rules
from memberkit.plugins.perks.models import PerksBirthdayCoupon, PerksFirstOrder, PerksMonthlyCoupon
from memberkit.plugins.perks.settings import PerksSettings
from tests.conftest import DEMO_TIERS as TIERS
from tests.conftest import MEMBER, ORDER_PAID, ROOT, SIGN_UP, sign_up

COUPONS = """
[shops.{shop}.coupons.WELCOME_10]
title = "10 off (welcome)"
kind = "FIXED"
value = 1000
valid_days = 30

[shops.{shop}.coupons.FIRST_ORDER_10]
title = "10 off (first order)"
kind = "FIXED"
value = 1000
valid_days = 30

[shops.{shop}.coupons.BIRTHDAY_50]
title = "50 off (birthday)"
kind = "FIXED"
value = 5000
valid_days = 31

[shops.{shop}.coupons.SILVER_MONTHLY]
title = "20 off 200 (silver monthly)"
kind = "FIXED"
value = 2000
min_spend = 20000
valid_days = 31
"""

DEMO_PERKS = """
first_order_discount = "percent"
first_order_percent = 30
first_order_threshold = 10000
first_order_threshold_off = 3000
first_order_coupon_min_total = 3000
birthday_percent = 5
birthday_tier_percents = {{ SILVER = 10 }}
birthday_excluded_categories = ["fresh"]
birthday_change_limit_days = 365
member_day = 15
member_day_percent = 5
monthly_coupon_min_tier = "SILVER"
"""



def shop(slug: str, plugins: str, perks: str = DEMO_PERKS, tiers: bool = True) -> str:
    text = (f'[shops.{slug}]\nname = "{slug}"\ncurrency = "CNY"\ntimezone = "Asia/Shanghai"\n'
            f"plugins = [{plugins}]\n" + COUPONS + f"\n[shops.{slug}.settings.perks]\n" + perks)
    return (text + (TIERS if tiers else "")).format(shop=slug)


# alpha: the demo (tiering and perks); plain: perks alone (no tiering, no referral); thresh: 30 off 100.
SETTINGS_TEXT = "\n".join([
    shop("alpha", '"tiering", "perks"'),
    shop("plain", '"perks"', tiers=False),
    shop("thresh", '"perks"', DEMO_PERKS.replace('"percent"', '"threshold"'), tiers=False),
])

UPDATE = """
mutation($input: UpdateMemberInput!) { updateMember(input: $input) {
  member { birthday } effects { plugin kind } errors { code field message } } }"""

PERKS = """
query($id: ID) { member(id: $id) {
  perks { firstOrderDiscount birthdayMonth birthdayPercent birthdayCouponYear memberDay nextMemberDay
          monthlyCouponMonth }
  coupons(status: null) { title source status value }
} }"""


def local(*args) -> datetime:
    """A moment given on the shop's (Asia/Shanghai, UTC+8) wall clock, as UTC."""
    return datetime(*args, tzinfo=UTC) - timedelta(hours=8)


@pytest.fixture
def shops(make_runtime, make_api):
    clock.set_now(local(2026, 1, 5, 12))
    runtime = make_runtime(SETTINGS_TEXT)
    api = make_api(runtime)
    return runtime, api, api.key("alpha")


def pay(api, key, member_id: str, order_id: str, total: int) -> list[tuple[str, str | None]]:
    payload = api(ORDER_PAID, {"input": {"orderId": order_id, "memberId": member_id, "total": total}},
                  key)["recordOrderPaid"]
    assert payload["errors"] == [], payload
    return [(e["kind"], e["rule"]) for e in payload["effects"] if e["plugin"] == "perks"]


def coupons(runtime, member_id: str) -> list[str]:
    """The templates of the member's coupons, sorted (a frozen clock issues several at one instant)."""
    with runtime.db.read() as conn:
        return sorted(conn.execute(select(Coupon.template).where(Coupon.member_id == member_id)).scalars())


def adjustments(runtime, slug: str, member_id: str | None, lines, stage=PriceStage.PERCENT,
                subtotal: int | None = None) -> dict[str, int]:
    """What the shop's price_adjustments hook proposes, by code; every perks percent competes in "percent"."""
    cart = Cart(lines=tuple(lines), member_id=member_id)
    subtotal = sum(line.amount for line in lines) if subtotal is None else subtotal
    with runtime.reading(runtime.shop(slug)) as ctx:
        results = ctx.hook.price_adjustments(ctx=ctx, cart=cart, stage=stage, subtotal=subtotal)
    found = [a for result in results if result for a in result]
    assert all(a.plugin == "perks" and a.amount < 0 for a in found)
    if stage is PriceStage.PERCENT:
        assert all(a.exclusive_group == "percent" for a in found)
    return {a.code: a.amount for a in found}


def run(runtime, slug: str, job: str) -> str:
    """Run every job of the shop now (as `memberkit jobs run` does when they are due); return `job`'s result."""
    runs = {r.job: r for r in jobs.run_due(runtime, slug, force=True)}
    assert all(r.status == "done" for r in runs.values()), runs
    return runs[f"perks.{job}"].result


SHOES = OrderLine("SHOE", 1, 10000, "shoes")
FRESH = OrderLine("APPLE", 1, 5000, "fresh")


# ---------------------------------------------------------------- settings


def test_demo_shop_has_the_perks_of_the_rules():
    demo = settings_module.load(ROOT / "plugins.toml").shop("demo")
    s: PerksSettings = demo.settings_for("perks")
    assert "perks" in demo.plugins  # member_only and flash_sale come after it
    assert (s.first_order_discount, s.first_order_percent, s.first_order_threshold,
            s.first_order_threshold_off, s.first_order_coupon_min_total) == ("percent", 30, 10000, 3000, 3000)
    assert (s.birthday_percent, s.birthday_tier_percents, s.birthday_excluded_categories) == \
        (5, {"SILVER": 10}, ["fresh"])
    assert (s.member_day, s.member_day_percent, s.monthly_coupon_min_tier, s.birthday_change_limit_days) == \
        (15, 5, "SILVER", 365)
    for template, value in (("WELCOME_10", 1000), ("FIRST_ORDER_10", 1000), ("BIRTHDAY_50", 5000)):
        assert template in s.coupon_templates() and demo.coupons[template].value == value
        assert demo.coupons[template].min_spend == 0  # no threshold
    assert s.monthly_coupon in demo.coupons


@pytest.mark.parametrize("setting, reason", [
    ("member_day = 32", "member_day"),
    ('first_order_discount = "half"', "first_order_discount"),
    ("birthday_tier_percents = {{ silver = 10 }}", "'silver' is not a tier code"),
    ("birthday_tier_percents = {{ SILVER = 120 }}", "SILVER: a percent from 0 to 100"),
    ('monthly_coupon_min_tier = "silver"', "a tier code of upper-case letters"),
    ("birthday_pct = 5", "unknown setting (check its spelling)"),
    ('first_order_discount = "threshold"\nfirst_order_threshold_off = 20000',
     "first_order_threshold_off (20000) must not be more than first_order_threshold (10000)"),
])
def test_settings_refuse_with_the_key_and_reason(tmp_path, setting, reason):
    path = tmp_path / "perks.toml"
    path.write_text(shop("x", '"perks"', setting + "\n", tiers=False))
    with pytest.raises(settings_module.SettingsError) as refused:
        settings_module.load(path)
    problems = [str(p) for p in refused.value.problems]
    assert len(problems) == 1 and "shop 'x', plugin 'perks'" in problems[0] and reason in problems[0], problems
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 1 and "plugin 'perks'" in result.output


# ---------------------------------------------------------------- 1. sign-up gift


def test_sign_up_gives_the_welcome_coupon_once(shops):
    runtime, api, key = shops
    payload = api(SIGN_UP, {"input": {"externalId": "u-1"}}, key)["signUpMember"]
    perks = [e for e in payload["effects"] if e["plugin"] == "perks"]
    assert [e["kind"] for e in perks] == ["COUPON_ISSUED"] and "10 off (welcome)" in perks[0]["description"]
    member_id = payload["member"]["id"]
    again = api(SIGN_UP, {"input": {"externalId": "u-1"}}, key)["signUpMember"]
    assert again["duplicate"] is True
    wallet = api(PERKS, {"id": member_id}, key)["member"]["coupons"]
    assert wallet == [{"title": "10 off (welcome)", "source": "perks:welcome", "status": "AVAILABLE",
                       "value": 1000}]


def test_a_coupon_template_the_shop_lacks_stops_the_settings(settings_file):
    with pytest.raises(settings_module.SettingsError) as caught:
        settings_module.load(settings_file(shop("x", '"perks"', 'welcome_coupon = "NOPE"\n', tiers=False)))
    assert [(p.plugin, p.key) for p in caught.value.problems] == [("perks", "welcome_coupon")]


# ---------------------------------------------------------------- 2. first order


def test_first_order_gets_30_percent_off_rounded_down_per_line(shops):
    runtime, api, key = shops
    member_id = sign_up(api, key, "u-1")
    assert adjustments(runtime, "alpha", member_id, [SHOES]) == {"FIRST_ORDER": -3000}
    odd = [OrderLine(f"S{i}", 1, 333) for i in range(3)]  # 99 a line, not 999 * 30% = 299
    assert adjustments(runtime, "alpha", member_id, odd) == {"FIRST_ORDER": -297}
    # After a coupon took 5,000 off 20,000, each line's share (7,500) gets the 30%.
    two = [SHOES, OrderLine("SHOE2", 2, 5000, "shoes")]
    assert adjustments(runtime, "alpha", member_id, two, subtotal=15000) == {"FIRST_ORDER": -4500}
    assert adjustments(runtime, "alpha", member_id, [SHOES], PriceStage.COUPON) == {}
    assert adjustments(runtime, "alpha", None, [SHOES]) == {}  # anonymous
    assert adjustments(runtime, "plain", member_id, [SHOES]) == {}  # not a member of that shop
    pay(api, key, member_id, "o-1", 1000)
    assert adjustments(runtime, "alpha", member_id, [SHOES]) == {}  # no longer a first order


def test_the_threshold_variant_takes_30_off_100_at_the_coupon_stage(shops):
    runtime, api, _ = shops
    member_id = sign_up(api, api.key("thresh"), "u-1")
    assert adjustments(runtime, "thresh", member_id, [SHOES], PriceStage.COUPON, subtotal=9999) == {}
    assert adjustments(runtime, "thresh", member_id, [SHOES], PriceStage.COUPON) == {"FIRST_ORDER": -3000}
    assert adjustments(runtime, "thresh", member_id, [SHOES], PriceStage.PERCENT) == {}
    with runtime.reading(runtime.shop("thresh")) as ctx:
        [[found]] = ctx.hook.price_adjustments(ctx=ctx, cart=Cart((SHOES,), member_id), stage=PriceStage.COUPON,
                                               subtotal=10000)
    assert found.exclusive_group is None and found.label == "first order 3000 off orders of 10000"


def test_first_order_of_30_yuan_earns_the_coupon_once(shops):
    runtime, api, key = shops
    small, big = sign_up(api, key, "u-small"), sign_up(api, key, "u-big")
    assert pay(api, key, small, "s-1", 2999) == [("NO_REWARD", "first_order")]
    assert pay(api, key, small, "s-2", 50000) == []  # not the first order
    assert coupons(runtime, small) == ["WELCOME_10"]
    assert pay(api, key, big, "b-1", 3000) == [("COUPON_ISSUED", "first_order")]
    again = api(ORDER_PAID, {"input": {"orderId": "b-1", "memberId": big, "total": 3000}}, key)["recordOrderPaid"]
    assert again["duplicate"] is True
    assert pay(api, key, big, "b-2", 9000) == []
    assert coupons(runtime, big) == ["FIRST_ORDER_10", "WELCOME_10"]
    wallet = api(MEMBER, {"id": big}, key)["member"]["coupons"]
    assert sorted(c["source"] for c in wallet) == ["perks:first_order", "perks:welcome"]


def test_two_first_orders_recorded_at_once_earn_one_coupon(shops):
    runtime, api, key = shops
    alpha = runtime.shop("alpha")
    member_ids = [sign_up(api, key, f"u-{n}") for n in range(4)]

    def order(args):
        member_id, n = args
        return record_order_paid(runtime, alpha, None, order_id=f"{member_id}-{n}", member_id=member_id,
                                 total=5000)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(order, [(m, n) for m in member_ids for n in range(3)]))
    assert all(not r.errors for r in results)
    for member_id in member_ids:
        assert coupons(runtime, member_id).count("FIRST_ORDER_10") == 1
    with runtime.db.read() as conn:
        assert len(conn.execute(select(PerksFirstOrder)).all()) == 4


# ---------------------------------------------------------------- 3. birthday


def test_birthday_month_discount_by_tier_excludes_fresh(shops):
    runtime, api, key = shops
    member_id = sign_up(api, key, "u-1", birthday="1990-03-10")
    pay(api, key, member_id, "o-1", 100)  # past the first order
    clock.set_now(local(2026, 3, 1, 0, 5))
    assert adjustments(runtime, "alpha", member_id, [SHOES, FRESH]) == {"BIRTHDAY_MONTH": -500}  # 5%, regular
    pay(api, key, member_id, "o-2", 49900)  # silver
    assert adjustments(runtime, "alpha", member_id, [SHOES, FRESH]) == {"BIRTHDAY_MONTH": -1000}  # 10%
    pay(api, key, member_id, "o-3", 150000)  # gold: silver and above
    assert adjustments(runtime, "alpha", member_id, [SHOES, FRESH]) == {"BIRTHDAY_MONTH": -1000}
    assert adjustments(runtime, "alpha", member_id, [FRESH]) == {}
    odd = [OrderLine("A", 1, 999), OrderLine("B", 1, 999)]  # 99 each, not 1998 * 10% = 199
    assert adjustments(runtime, "alpha", member_id, odd) == {"BIRTHDAY_MONTH": -198}
    clock.set_now(local(2026, 4, 1, 0, 5))  # 31 March in UTC, April in Shanghai
    assert adjustments(runtime, "alpha", member_id, [SHOES]) == {}
    clock.set_now(local(2026, 2, 28, 23, 55))
    assert adjustments(runtime, "alpha", member_id, [SHOES]) == {}


def test_birthday_coupon_on_the_day_once_a_year_late_and_repeated(shops):
    runtime, api, key = shops
    on_time = sign_up(api, key, "u-1", birthday="1990-03-10")
    missed = sign_up(api, key, "u-2", birthday="1985-03-05")
    too_late = sign_up(api, key, "u-3", birthday="1980-02-10")
    sign_up(api, key, "u-4")  # no birthday
    clock.set_now(local(2026, 3, 1, 9))
    assert run(runtime, "alpha", "birthday_coupons") is None
    clock.set_now(local(2026, 3, 4, 23, 59))
    run(runtime, "alpha", "birthday_coupons")
    assert "BIRTHDAY_50" not in coupons(runtime, missed)
    clock.set_now(local(2026, 3, 10, 0, 1))  # 9 March in UTC: the shop's calendar decides
    assert run(runtime, "alpha", "birthday_coupons") == "2 birthday coupon(s) issued for 2026"  # and the 5th, late
    assert run(runtime, "alpha", "birthday_coupons") is None  # twice: nothing
    clock.set_now(local(2026, 3, 31, 23))
    run(runtime, "alpha", "birthday_coupons")
    assert coupons(runtime, on_time).count("BIRTHDAY_50") == 1 and coupons(runtime, missed).count("BIRTHDAY_50") == 1
    assert "BIRTHDAY_50" not in coupons(runtime, too_late)  # February is over: not paid in March
    clock.set_now(local(2027, 3, 12, 8))  # a year later, after a gap of a year
    run(runtime, "alpha", "birthday_coupons")
    run(runtime, "alpha", "birthday_coupons")
    assert coupons(runtime, on_time).count("BIRTHDAY_50") == 2
    with runtime.db.read() as conn:
        years = conn.execute(select(PerksBirthdayCoupon.year).where(PerksBirthdayCoupon.member_id == on_time)
                             .order_by(PerksBirthdayCoupon.year)).scalars().all()
    assert years == [2026, 2027]
    perks = api(PERKS, {"id": on_time}, key)["member"]["perks"]
    assert perks["birthdayCouponYear"] == 2027 and perks["birthdayMonth"] is True and perks["birthdayPercent"] == 5


def test_29_february_is_paid_on_28_february_in_other_years(shops):
    runtime, api, key = shops
    leapling = sign_up(api, key, "u-1", birthday="2000-02-29")
    clock.set_now(local(2026, 2, 27, 23, 59))
    run(runtime, "alpha", "birthday_coupons")
    assert coupons(runtime, leapling) == ["WELCOME_10"]
    clock.set_now(local(2026, 2, 28, 0, 0))
    run(runtime, "alpha", "birthday_coupons")
    run(runtime, "alpha", "birthday_coupons")
    assert coupons(runtime, leapling).count("BIRTHDAY_50") == 1
    clock.set_now(local(2028, 2, 28, 12))  # a leap year: the birthday is the 29th
    run(runtime, "alpha", "birthday_coupons")
    assert coupons(runtime, leapling).count("BIRTHDAY_50") == 1
    clock.set_now(local(2028, 2, 29, 12))
    run(runtime, "alpha", "birthday_coupons")
    assert coupons(runtime, leapling).count("BIRTHDAY_50") == 2
    assert rules.birthday_in(date(2000, 2, 29), 2027) == date(2027, 2, 28)
    assert rules.birthday_in(date(2000, 2, 29), 2028) == date(2028, 2, 29)


def test_a_birthday_recorded_after_the_day_earns_no_coupon_that_year(shops):
    runtime, api, key = shops
    clock.set_now(local(2026, 3, 20, 10))
    late = sign_up(api, key, "u-1", birthday="1990-03-05")  # joins on the 20th, "born" on the 5th
    assert run(runtime, "alpha", "birthday_coupons").endswith("1 birthday(s) recorded after the day: none")
    assert "BIRTHDAY_50" not in coupons(runtime, late)
    clock.set_now(local(2027, 3, 5, 10))
    run(runtime, "alpha", "birthday_coupons")
    assert "BIRTHDAY_50" in coupons(runtime, late)


def test_a_birthday_changes_at_most_once_a_year(shops):
    runtime, api, key = shops
    clock.set_now(local(2026, 1, 10, 12))
    member_id = sign_up(api, key, "u-1", birthday="1990-03-10")

    def change(birthday: str) -> dict:
        return api(UPDATE, {"input": {"memberId": member_id, "birthday": birthday}}, key)["updateMember"]

    assert change("1990-07-10")["errors"] == []  # the first change of a recorded birthday
    clock.set_now(local(2026, 6, 1, 12))
    refused = change("1990-06-01")
    assert [(e["code"], e["field"]) for e in refused["errors"]] == [("BIRTHDAY_CHANGE_LIMIT", "birthday")]
    assert "2027-01-10" in refused["errors"][0]["message"]
    assert api(MEMBER, {"id": member_id}, key)["member"]["birthday"] == "1990-07-10"
    clock.set_now(local(2027, 1, 10, 12))  # 365 days on
    assert change("1990-06-01")["errors"] == []
    assert change("1990-06-02")["errors"][0]["code"] == "BIRTHDAY_CHANGE_LIMIT"


def test_setting_a_first_birthday_is_not_a_change(shops):
    runtime, api, key = shops
    member_id = sign_up(api, key, "u-1")
    shop = runtime.shop("alpha")
    first = update_member(runtime, shop, None, member_id=member_id, birthday=date(1990, 5, 1))
    assert first.errors == []
    with runtime.transaction(shop) as ctx:
        assert rules.birthday_change_veto(ctx, member_id, None) is None  # none before: never vetoed
    second = update_member(runtime, shop, None, member_id=member_id, birthday=date(1990, 5, 2))
    assert second.errors == []  # recording the first birthday started no clock: this is the first change
    third = update_member(runtime, shop, None, member_id=member_id, birthday=date(1990, 5, 3))
    assert [e.code for e in third.errors] == ["BIRTHDAY_CHANGE_LIMIT"]


# ---------------------------------------------------------------- 4. member day


def test_member_day_is_the_15th_in_the_shops_timezone(shops):
    runtime, api, key = shops
    member_id = sign_up(api, key, "u-1")
    pay(api, key, member_id, "o-1", 100)
    clock.set_now(local(2026, 5, 14, 23, 59))
    assert adjustments(runtime, "alpha", member_id, [SHOES, FRESH]) == {}
    assert api(PERKS, {"id": member_id}, key)["member"]["perks"]["nextMemberDay"] == "2026-05-15"
    clock.set_now(local(2026, 5, 15, 0, 0))  # 14 May in UTC
    assert adjustments(runtime, "alpha", member_id, [SHOES, FRESH]) == {"MEMBER_DAY": -750}
    assert adjustments(runtime, "alpha", None, [SHOES]) == {}  # members only
    assert api(PERKS, {"id": member_id}, key)["member"]["perks"]["memberDay"] is True
    clock.set_now(local(2026, 5, 16, 0, 0))
    assert adjustments(runtime, "alpha", member_id, [SHOES]) == {}
    assert api(PERKS, {"id": member_id}, key)["member"]["perks"]["nextMemberDay"] == "2026-06-15"
    s = PerksSettings(member_day=31)
    assert rules.is_member_day(s, date(2026, 2, 28)) and rules.next_member_day(s, date(2026, 3, 1)) == \
        date(2026, 3, 31)


def test_percent_perks_compete_in_one_group_never_exceed_a_line_and_only_read(shops):
    runtime, api, key = shops
    member_id = sign_up(api, key, "u-1", birthday="1990-05-02")
    clock.set_now(local(2026, 5, 15, 10))  # a first order, in the birthday month, on member day
    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        statements.append(statement.lstrip().split()[0].upper())

    event.listen(runtime.db.engine, "before_cursor_execute", record)
    try:
        found = adjustments(runtime, "alpha", member_id, [SHOES, FRESH, OrderLine("ONE", 1, 1)])
    finally:
        event.remove(runtime.db.engine, "before_cursor_execute", record)
    assert found == {"FIRST_ORDER": -4500, "BIRTHDAY_MONTH": -500, "MEMBER_DAY": -750}  # core keeps the largest
    assert set(statements) <= {"SELECT", "BEGIN", "COMMIT", "ROLLBACK"}, statements
    full = PerksSettings(first_order_percent=100)
    assert rules.percent_off((SHOES, OrderLine("ONE", 1, 1)), 10001, full.first_order_percent) == 10001
    assert rules.percent_off((SHOES,), 0, 30) == 0


# ---------------------------------------------------------------- 5. monthly coupon


def test_monthly_coupon_for_silver_and_above_once_a_month(shops):
    runtime, api, key = shops
    regular, silver, gold = (sign_up(api, key, f"u-{n}") for n in range(3))
    pay(api, key, silver, "s-1", 50000)
    pay(api, key, gold, "g-1", 200000)
    clock.set_now(local(2026, 5, 1, 0, 1))  # 30 April in UTC: May in Shanghai
    assert run(runtime, "alpha", "monthly_coupons") == "2 monthly coupon(s) issued for 2026-05"
    assert run(runtime, "alpha", "monthly_coupons") is None
    pay(api, key, regular, "r-1", 60000)  # silver mid-month: this month's coupon on the next run
    clock.set_now(local(2026, 5, 31, 23, 59))
    assert run(runtime, "alpha", "monthly_coupons") == "1 monthly coupon(s) issued for 2026-05"
    clock.set_now(local(2026, 7, 20, 12))  # June was missed entirely: July pays July, not June
    run(runtime, "alpha", "monthly_coupons")
    run(runtime, "alpha", "monthly_coupons")
    for member_id in (regular, silver, gold):
        assert coupons(runtime, member_id).count("SILVER_MONTHLY") == 2
    with runtime.db.read() as conn:
        months = conn.execute(select(PerksMonthlyCoupon.month, PerksMonthlyCoupon.tier_code)
                              .where(PerksMonthlyCoupon.member_id == gold)).all()
    assert sorted(months) == [("2026-05", "GOLD"), ("2026-07", "GOLD")]
    assert api(PERKS, {"id": gold}, key)["member"]["perks"]["monthlyCouponMonth"] == "2026-07"
    timer = [r.status for r in jobs.run_due(runtime, "alpha") if r.job == "perks.monthly_coupons"]
    assert timer == ["not due"]  # the hourly timer: it ran just now


def test_the_monthly_coupon_job_reads_every_members_tier_at_once(shops):
    runtime, api, key = shops
    members = [sign_up(api, key, f"u-{n}") for n in range(6)]
    for n, member_id in enumerate(members[:3]):
        pay(api, key, member_id, f"o-{n}", 50000)
    reads: list[str] = []

    def record(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("SELECT") and "tiering_member" in statement:
            reads.append(statement)

    clock.set_now(local(2026, 5, 1, 9))
    event.listen(runtime.db.engine, "before_cursor_execute", record)
    try:
        with runtime.transaction(runtime.shop("alpha")) as ctx:
            assert rules.monthly_coupons(ctx) == "3 monthly coupon(s) issued for 2026-05"
    finally:
        event.remove(runtime.db.engine, "before_cursor_execute", record)
    assert len(reads) == 1, reads  # one read for six members, not one each


# ---------------------------------------------------------------- a shop without tiering or referral


def test_perks_without_tiering_or_referral_keep_the_tier_rules_neutral(shops):
    runtime, api, _ = shops
    key = api.key("plain")
    member_id = sign_up(api, key, "u-1", birthday="1990-03-10")
    assert runtime.shop("plain").plugins == ("checkout", "kpis", "perks")  # the default plugins
    assert pay(api, key, member_id, "o-1", 600000) == [("COUPON_ISSUED", "first_order")]
    clock.set_now(local(2026, 3, 10, 9))
    assert adjustments(runtime, "plain", member_id, [SHOES, FRESH]) == {"BIRTHDAY_MONTH": -500}  # 5%: no tiers
    assert run(runtime, "plain", "birthday_coupons") == "1 birthday coupon(s) issued for 2026"
    result = run(runtime, "plain", "monthly_coupons")
    assert result == "no tiering in this shop: monthly tier coupons are neutral, none issued"
    assert coupons(runtime, member_id) == ["BIRTHDAY_50", "FIRST_ORDER_10", "WELCOME_10"]
    perks = api(PERKS, {"id": member_id}, key)["member"]["perks"]
    assert perks == {"firstOrderDiscount": False, "birthdayMonth": True, "birthdayPercent": 5,
                     "birthdayCouponYear": 2026, "memberDay": False, "nextMemberDay": "2026-03-15",
                     "monthlyCouponMonth": None}


def test_a_shop_may_switch_each_gift_off(make_runtime, make_api):
    off = ('welcome_coupon = ""\nfirst_order_discount = "none"\nfirst_order_coupon = ""\nbirthday_coupon = ""\n'
           "birthday_percent = 0\nmember_day_percent = 0\nmonthly_coupon_min_tier = \"GOLD\"\n")
    clock.set_now(local(2026, 3, 15, 10))
    runtime = make_runtime(shop("x", '"tiering", "perks"', off))
    api = make_api(runtime)
    key = api.key("x")
    member_id = sign_up(api, key, "u-1", birthday="1990-03-01")
    assert pay(api, key, member_id, "o-1", 60000) == []
    assert adjustments(runtime, "x", member_id, [SHOES]) == {}  # birthday month, member day: all at 0
    assert run(runtime, "x", "birthday_coupons") is None
    assert run(runtime, "x", "monthly_coupons") is None  # silver < gold
    assert coupons(runtime, member_id) == []
