"""The referral plugin (RULES.md section 3): codes, rewards at sign-up or on the first order, the bonus for
every third friend, withdrawal on a full refund, every abuse case, repeats, and shops that never mix.

alpha runs the demo shop's referral numbers (20 yuan each, a 50-yuan bonus every third friend, 20 rewards a
referrer a month) with referral as its only plugin: no perks, no points, no tiers. beta rewards on the
friend's first order, in another currency and timezone, with a cap of 2.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, insert, select
from typer.testing import CliRunner

from memberkit import config as settings_module
from memberkit import jobs
from memberkit.cli import app
from memberkit.core import clock
from memberkit.core.members import sign_up_member
from memberkit.core.models import Member, MemberPersonal
from memberkit.core.orders import record_order_paid
from memberkit.core.wallet import CODE_ALPHABET
from memberkit.plugins.referral.models import ReferralCode, ReferralFriend, ReferralMonth
from tests.conftest import ORDER_PAID, ORDER_REFUNDED, ROOT, postgres_only

COUPONS = """
[shops.{shop}.coupons.REFERRAL_20]
title = "20 yuan off, no minimum (referral)"
kind = "FIXED"
value = 2000
valid_days = 30

[shops.{shop}.coupons.REFERRAL_BONUS_50]
title = "50 yuan off, no minimum (third friend)"
kind = "FIXED"
value = 5000
valid_days = 60
"""

DEMO_REFERRAL = """
friend_coupon = "REFERRAL_20"
referrer_coupon = "REFERRAL_20"
bonus_every = 3
bonus_coupon = "REFERRAL_BONUS_50"
monthly_cap = 20
share_url_template = "https://shop.example/r/{code}"
"""


def shop(slug: str, settings: str = DEMO_REFERRAL, currency: str = "CNY", zone: str = "Asia/Shanghai",
         coupons: str = COUPONS) -> str:
    return (f'[shops.{slug}]\nname = "{slug}"\ncurrency = "{currency}"\ntimezone = "{zone}"\n'
            f'plugins = ["referral"]\n' + coupons.format(shop=slug) + f"\n[shops.{slug}.settings.referral]\n"
            + settings + "\n")


BETA = DEMO_REFERRAL.replace("monthly_cap = 20", "monthly_cap = 2") + 'reward_on = "first_order"\n'
SETTINGS_TEXT = shop("alpha") + shop("beta", BETA, currency="EUR", zone="Europe/Berlin")

SIGN_UP = """
mutation($input: SignUpMemberInput!) { signUpMember(input: $input) {
  duplicate member { id } effects { plugin kind description code rule } errors { code field message } } }"""

REFERRAL = """
query($id: ID) { member(id: $id) {
  referral { code invited rewarded bonuses shareLink }
  coupons(status: null) { title value status source }
} }"""


@pytest.fixture
def shops(make_runtime, make_api):
    runtime = make_runtime(SETTINGS_TEXT)
    api = make_api(runtime)
    return runtime, api, api.key("alpha"), api.key("beta")


def join(api, key, external_id: str, code: str | None = None, phone: str | None = None,
         email: str | None = None) -> tuple[str, list[dict]]:
    """Sign up; returns the member id and referral's effects as (kind, code, rule)."""
    fields = {"referralCode": code, "phone": phone, "email": email}
    payload = api(SIGN_UP, {"input": {"externalId": external_id, **{k: v for k, v in fields.items() if v}}},
                  key)["signUpMember"]
    assert payload["errors"] == [] and payload["member"], payload
    return payload["member"]["id"], [e for e in payload["effects"] if e["plugin"] == "referral"]


def kinds(effects: list[dict]) -> list[tuple[str, str | None]]:
    return [(e["kind"], e["code"]) for e in effects]


def view(api, key, member_id: str) -> dict:
    return api(REFERRAL, {"id": member_id}, key)["member"]


def code_of(api, key, member_id: str) -> str:
    return view(api, key, member_id)["referral"]["code"]


def coupons(api, key, member_id: str, status: str | None = None) -> list[tuple[int, str]]:
    """(value, source) of the member's referral coupons, optionally of one status."""
    return sorted((c["value"], c["source"]) for c in view(api, key, member_id)["coupons"]
                  if c["source"].startswith("referral:") and (status is None or c["status"] == status))


def counts(api, key, member_id: str) -> tuple[int, int, int]:
    r = view(api, key, member_id)["referral"]
    return r["invited"], r["rewarded"], r["bonuses"]


def referrer_with_code(api, key, external_id: str = "ref", phone: str = "13800000000") -> tuple[str, str]:
    member_id, _ = join(api, key, external_id, phone=phone, email=f"{external_id}@example.com")
    return member_id, code_of(api, key, member_id)


FRIEND20 = (2000, "referral:friend_coupon")
REFERRER20 = (2000, "referral:referrer_coupon")
BONUS50 = (5000, "referral:bonus_every")


# ---------------------------------------------------------------- settings


def test_demo_shop_runs_the_referral_numbers_of_the_rules():
    demo = settings_module.load(ROOT / "plugins.toml").shop("demo")
    assert demo.plugins.index("referral") == demo.plugins.index("tiering") + 1
    s = demo.settings_for("referral")
    assert (s.reward_on, s.friend_coupon, s.referrer_coupon, s.bonus_every, s.bonus_coupon) == (
        "signup", "REFERRAL_20", "REFERRAL_20", 3, "REFERRAL_BONUS_50")
    assert demo.coupons["REFERRAL_20"].value == 2000 and demo.coupons["REFERRAL_20"].min_spend == 0
    assert demo.coupons["REFERRAL_BONUS_50"].value == 5000 and s.monthly_cap > 0


@pytest.mark.parametrize("settings, key, reason", [
    ("bonus_every = 3", None, "set friend_coupon or referrer_coupon"),
    ('friend_coupon = "REFERRAL_20"\nbonus_every = 3', None, "bonus_every = 3 needs a bonus_coupon"),
    ('friend_coupon = "REFERRAL_20"\nbonus_coupon = "REFERRAL_BONUS_50"', None, "bonus_coupon needs bonus_every"),
    ('friend_coupon = "REFERRAL_20"\nshare_url_template = "https://x.example/r/"', "share_url_template", "with {code}"),
    ('friend_coupon = "REFERRAL_20"\nshare_url_template = "https://x.example/{shop}/{code}"', "share_url_template",
     "no other {...}"),
    ('friend_coupon = "REFERRAL_20"\nreward_on = "first_purchase"', "reward_on", "'signup' or 'first_order'"),
    ('friend_coupon = "REFERRAL_20"\nmonthly_cap = -1', "monthly_cap", "greater than or equal to 0"),
    ('friend_coupon = "REFERRAL_20"\nmontly_cap = 5', "montly_cap", "unknown setting (check its spelling)"),
    ('friend_coupon = "REFERRAL_2O"', "friend_coupon", "unknown coupon template 'REFERRAL_2O'"),
])
def test_bad_settings_are_refused_with_the_key_and_the_reason(tmp_path, settings, key, reason):
    path = tmp_path / "plugins.toml"
    path.write_text(shop("x", settings))
    with pytest.raises(settings_module.SettingsError) as refused:
        settings_module.load(path)
    [problem] = refused.value.problems
    assert (problem.shop, problem.plugin, problem.key) == ("x", "referral", key) and reason in problem.message
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 1 and "plugin 'referral'" in result.output


# ---------------------------------------------------------------- 1. codes


def test_every_member_gets_a_short_random_code_unique_in_the_shop(shops):
    runtime, api, alpha, _ = shops
    members = [join(api, alpha, f"u-{n}")[0] for n in range(12)]
    codes = [view(api, alpha, m)["referral"] for m in members]
    assert len({c["code"] for c in codes}) == 12
    for member_id, summary in zip(members, codes, strict=True):
        assert re.fullmatch(f"[{CODE_ALPHABET}]{{8}}", summary["code"])  # no 0/O, 1/I: read aloud and typed
        assert summary["code"].lower() not in member_id.lower()
        assert summary == {"code": summary["code"], "invited": 0, "rewarded": 0, "bonuses": 0,
                           "shareLink": f"https://shop.example/r/{summary['code']}"}


def test_a_code_is_read_case_insensitively_with_spaces_and_dashes(shops):
    runtime, api, alpha, _ = shops
    referrer, code = referrer_with_code(api, alpha)
    typed = f" {code[:4].lower()}-{code[4:].lower()} "
    _, effects = join(api, alpha, "friend", typed, phone="13900000001")
    assert kinds(effects) == [("COUPON_ISSUED", None), ("COUPON_ISSUED", None)]
    assert counts(api, alpha, referrer) == (1, 1, 0)


def test_members_who_joined_before_referral_get_a_code_from_the_job_and_reads_never_write(shops):
    runtime, api, alpha, _ = shops
    with runtime.db.write() as conn:  # two members from before the shop enabled referral
        for n in (1, 2):
            conn.execute(insert(Member).values(id=f"mem_old{n}", shop="alpha", external_id=f"old-{n}",
                                               joined_at=datetime(2024, 1, 1, tzinfo=UTC), tags=[],
                                               created_at=datetime(2024, 1, 1, tzinfo=UTC)))
            conn.execute(insert(MemberPersonal).values(member_id=f"mem_old{n}", shop="alpha"))
    assert view(api, alpha, "mem_old1")["referral"] is None  # null until the job, and the read wrote nothing
    with runtime.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(ReferralCode)).scalar() == 0
    runs = [r for r in jobs.run_due(runtime, "alpha", force=True) if r.job.startswith("referral.")]
    assert [(r.job, r.status, r.result) for r in runs] == [("referral.assign_codes", "done",
                                                            "2 referral code(s) assigned")]
    first = code_of(api, alpha, "mem_old1")
    assert jobs.run_due(runtime, "alpha", force=True)[-1].result is None  # idempotent
    assert code_of(api, alpha, "mem_old1") == first
    _, effects = join(api, alpha, "friend", first, phone="13900000001")
    assert counts(api, alpha, "mem_old1") == (1, 1, 0) and len(effects) == 2


# ---------------------------------------------------------------- 2. rewards


def test_a_friend_signing_up_with_the_code_gives_both_a_20_yuan_coupon(shops):
    runtime, api, alpha, _ = shops
    referrer, code = referrer_with_code(api, alpha)
    friend, effects = join(api, alpha, "friend", code, phone="13900000001")
    assert [(e["kind"], e["rule"]) for e in effects] == [("COUPON_ISSUED", "referral.friend_coupon"),
                                                         ("COUPON_ISSUED", "referral.referrer_coupon")]
    assert coupons(api, alpha, friend) == [FRIEND20] and coupons(api, alpha, referrer) == [REFERRER20]
    coupon = next(c for c in view(api, alpha, friend)["coupons"])
    assert coupon == {"title": "20 yuan off, no minimum (referral)", "value": 2000, "status": "AVAILABLE",
                      "source": "referral:friend_coupon"}
    assert counts(api, alpha, referrer) == (1, 1, 0) and counts(api, alpha, friend) == (0, 0, 0)


def test_every_third_friend_earns_the_referrer_an_extra_50_yuan_coupon(shops):
    runtime, api, alpha, _ = shops
    referrer, code = referrer_with_code(api, alpha)
    rules = [[e["rule"] for e in join(api, alpha, f"f-{n}", code, phone=f"1390000000{n}")[1]] for n in range(7)]
    assert [r.count("referral.bonus_every") for r in rules] == [0, 0, 1, 0, 0, 1, 0]
    assert coupons(api, alpha, referrer) == [REFERRER20] * 7 + [BONUS50] * 2
    assert counts(api, alpha, referrer) == (7, 7, 2)


def test_a_signup_without_a_code_rewards_nobody(shops):
    runtime, api, alpha, _ = shops
    member_id, effects = join(api, alpha, "u-1", phone="13900000001")
    assert effects == [] and coupons(api, alpha, member_id) == []


def test_first_order_mode_rewards_when_the_friends_first_order_is_paid_once(shops):
    runtime, api, _, beta = shops
    referrer, code = referrer_with_code(api, beta)
    friend, effects = join(api, beta, "friend", code, email="friend@example.com")
    assert kinds(effects) == [("REFERRAL_PENDING", None)]
    assert coupons(api, beta, friend) == [] and coupons(api, beta, referrer) == []
    assert counts(api, beta, referrer) == (1, 0, 0)
    assert order_effects(api, beta, friend, "o-1", 5000) == [("COUPON_ISSUED", None), ("COUPON_ISSUED", None)]
    assert coupons(api, beta, friend) == [FRIEND20] and coupons(api, beta, referrer) == [REFERRER20]
    assert order_effects(api, beta, friend, "o-2", 5000) == []  # only the first order
    assert order_effects(api, beta, referrer, "o-3", 5000) == []  # the referrer's own orders pay nothing
    assert counts(api, beta, referrer) == (1, 1, 0)


def order_effects(api, key, member_id: str, order_id: str, total: int, **more) -> list[tuple[str, str | None]]:
    payload = api(ORDER_PAID, {"input": {"orderId": order_id, "memberId": member_id, "total": total, **more}},
                  key)["recordOrderPaid"]
    assert payload["errors"] == [], payload
    return [(e["kind"], e["code"]) for e in payload["effects"] if e["plugin"] == "referral"]


def refund_effects(api, key, order_id: str, refund_id: str, amount: int) -> list[tuple[str, str | None]]:
    payload = api(ORDER_REFUNDED, {"input": {"orderId": order_id, "refundId": refund_id, "amount": amount}},
                  key)["recordOrderRefunded"]
    assert payload["errors"] == [], payload
    return [(e["kind"], e["code"]) for e in payload["effects"] if e["plugin"] == "referral"]


def test_a_fully_refunded_first_order_withdraws_the_unused_referral_coupons(shops):
    runtime, api, _, beta = shops
    referrer, code = referrer_with_code(api, beta)
    friend, _ = join(api, beta, "friend", code, phone="13900000001")
    order_effects(api, beta, friend, "o-1", 5000)
    assert refund_effects(api, beta, "o-1", "r-1", 1000) == []  # a partial refund takes nothing back
    # The referrer spent their coupon meanwhile: it cannot be withdrawn, and the payload says so.
    spent_code = coupon_codes(runtime, referrer)[0]
    order_effects(api, beta, referrer, "o-ref", 9000, couponCodes=[spent_code])
    assert refund_effects(api, beta, "o-1", "r-2", 4000) == [
        ("COUPON_WITHDRAWN", None), ("CONFLICT", "REFERRAL_COUPON_ALREADY_USED")]
    assert coupons(api, beta, friend, "WITHDRAWN") == [FRIEND20]
    assert coupons(api, beta, referrer, "USED") == [REFERRER20]
    assert counts(api, beta, referrer) == (1, 0, 0)  # the friend's reward no longer stands
    assert order_effects(api, beta, friend, "o-2", 5000) == []  # and a later order does not pay it again
    with runtime.db.read() as conn:
        assert conn.execute(select(ReferralFriend.status)).scalars().all() == ["WITHDRAWN"]


def coupon_codes(runtime, member_id: str) -> list[str]:
    from memberkit.core.models import Coupon

    with runtime.db.read() as conn:
        return conn.execute(select(Coupon.code).where(Coupon.member_id == member_id)
                            .order_by(Coupon.issued_at, Coupon.id)).scalars().all()


def test_a_withdrawn_bonus_is_earned_again_but_a_used_one_is_never_paid_twice(shops):
    """Bonuses follow the friends whose reward stands: one per full group of three."""
    runtime, api, _, beta = shops
    referrer, code = referrer_with_code(api, beta)
    with clock.frozen(datetime(2026, 3, 10, tzinfo=UTC)):
        friends = [join(api, beta, f"f-{n}", code, phone=f"1390000000{n}")[0] for n in range(5)]
    for month, friend in zip((3, 3, 4, 4, 5), friends, strict=True):  # a cap of 2 a month in beta
        with clock.frozen(datetime(2026, month, 15, tzinfo=UTC)):
            order_effects(api, beta, friend, f"o-{friend}", 3000)
    assert counts(api, beta, referrer) == (5, 5, 1)
    with clock.frozen(datetime(2026, 5, 20, tzinfo=UTC)):
        # The third friend's order (which paid the bonus) is refunded: the unused bonus comes back...
        assert refund_effects(api, beta, f"o-{friends[2]}", "r-1", 3000) == [("COUPON_WITHDRAWN", None)] * 3
        assert counts(api, beta, referrer) == (5, 4, 0)
        # ... so the next friend completes the group of three again and earns it again.
        friend, _ = join(api, beta, "f-5", code, phone="13900000005")
        assert order_effects(api, beta, friend, "o-f5", 3000) == [("COUPON_ISSUED", None)] * 3
        assert counts(api, beta, referrer) == (6, 5, 1)
        friend, _ = join(api, beta, "f-6", code, phone="13900000006")
    with clock.frozen(datetime(2026, 6, 1, tzinfo=UTC)):
        assert order_effects(api, beta, friend, "o-f6", 3000) == [("COUPON_ISSUED", None)] * 3  # sixth: bonus
        assert counts(api, beta, referrer) == (7, 6, 2)
        order_effects(api, beta, referrer, "o-bonus", 9000, couponCodes=[latest_bonus(runtime, referrer)])
        assert refund_effects(api, beta, "o-f6", "r-2", 3000) == [
            ("COUPON_WITHDRAWN", None), ("COUPON_WITHDRAWN", None), ("CONFLICT", "REFERRAL_COUPON_ALREADY_USED")]
        assert counts(api, beta, referrer) == (7, 5, 2)  # the used bonus still counts
        friend, _ = join(api, beta, "f-7", code, phone="13900000007")
        assert order_effects(api, beta, friend, "o-f7", 3000) == [("COUPON_ISSUED", None)] * 2  # no bonus again
        assert counts(api, beta, referrer) == (8, 6, 2)
        bonuses = [c["status"] for c in view(api, beta, referrer)["coupons"]
                   if c["source"] == "referral:bonus_every"]
        assert sorted(bonuses) == ["AVAILABLE", "USED", "WITHDRAWN"]


def latest_bonus(runtime, member_id: str) -> str:
    from memberkit.core.models import Coupon

    with runtime.db.read() as conn:
        return conn.execute(select(Coupon.code).where(Coupon.member_id == member_id,
                                                      Coupon.source == "referral:bonus_every")
                            .order_by(Coupon.issued_at.desc())).scalars().first()


def test_concurrent_first_orders_of_a_friend_pay_the_reward_once(shops):
    runtime, api, _, beta = shops
    referrer, code = referrer_with_code(api, beta)
    friend, _ = join(api, beta, "friend", code, phone="13900000001")
    shop = runtime.shop("beta")

    def order(n: int):
        return record_order_paid(runtime, shop, None, order_id=f"o-{n}", member_id=friend, total=5000)

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(order, range(6)))
    assert all(not r.errors for r in results)
    assert sum(e.plugin == "referral" for r in results for e in r.effects) == 2
    assert coupons(api, beta, friend) == [FRIEND20] and coupons(api, beta, referrer) == [REFERRER20]
    with runtime.db.read() as conn:
        assert conn.execute(select(ReferralFriend.order_id)).scalars().all()[0] in {f"o-{n}" for n in range(6)}


# ---------------------------------------------------------------- 3. abuse


def test_an_unknown_code_keeps_the_signup_and_says_why_no_reward(shops):
    runtime, api, alpha, _ = shops
    referrer, code = referrer_with_code(api, alpha)
    friend, effects = join(api, alpha, "friend", "ZZZZ2222", phone="13900000001")
    assert [(e["kind"], e["code"], e["rule"]) for e in effects] == [
        ("NO_REWARD", "REFERRAL_CODE_UNKNOWN", "referral.code")]
    assert view(api, alpha, friend)["referral"]["code"]  # the member exists, with a code of their own
    assert coupons(api, alpha, friend) == [] and counts(api, alpha, referrer) == (0, 0, 0)
    for n, typed in enumerate(("- -", code + "X" * 300)):
        _, effects = join(api, alpha, f"typo-{n}", typed, phone=f"1390000001{n}")
        assert kinds(effects) == [("NO_REWARD", "REFERRAL_CODE_UNKNOWN")] and len(effects[0]["description"]) < 80


def test_a_code_of_another_shop_is_unknown_here_and_shops_never_mix(shops):
    runtime, api, alpha, beta = shops
    in_alpha, alpha_code = referrer_with_code(api, alpha)
    in_beta, beta_code = referrer_with_code(api, beta)  # same phone and email, in another shop
    friend, effects = join(api, beta, "friend", alpha_code, phone="13900000001")
    assert kinds(effects) == [("NO_REWARD", "REFERRAL_CODE_UNKNOWN")]
    # Hashes of one shop are not compared with another's: the same person is new in alpha.
    _, effects = join(api, alpha, "friend", alpha_code, phone="13900000001")
    assert kinds(effects) == [("COUPON_ISSUED", None)] * 2
    assert counts(api, alpha, in_alpha) == (1, 1, 0) and counts(api, beta, in_beta) == (0, 0, 0)
    assert api(REFERRAL, {"id": in_beta}, alpha)["member"] is None  # a member of beta is not in alpha
    assert coupons(api, beta, friend) == []
    with runtime.db.read() as conn:
        assert sorted(conn.execute(select(ReferralCode.shop)).scalars()) == ["alpha", "alpha", "beta", "beta"]


def test_a_friend_with_the_referrers_own_phone_or_email_is_a_self_referral(shops):
    runtime, api, alpha, _ = shops
    referrer, code = referrer_with_code(api, alpha, phone="138-0000-0000")
    for n, contact in enumerate(({"phone": "+8613800000000".replace("+86", "")}, {"email": " REF@example.com"},
                                 {"phone": "13900000001", "email": "ref@example.com"})):
        friend, effects = join(api, alpha, f"me-{n}", code, **contact)
        assert [(e["kind"], e["code"], e["rule"]) for e in effects] == [
            ("NO_REWARD", "SELF_REFERRAL", "referral.self_referral")]
        assert coupons(api, alpha, friend) == []
    assert coupons(api, alpha, referrer) == [] and counts(api, alpha, referrer) == (3, 0, 0)
    with runtime.db.read() as conn:
        rows = conn.execute(select(ReferralFriend.status, ReferralFriend.reason)).all()
    assert rows == [("REFUSED", "SELF_REFERRAL")] * 3


def test_a_chain_that_comes_back_to_the_referrer_is_a_self_referral(shops):
    """A invites B; A signs up again with B's code: B would be rewarded for A, and A for themselves."""
    runtime, api, alpha, _ = shops
    a, a_code = referrer_with_code(api, alpha, "a", phone="13800000000")
    b, effects = join(api, alpha, "b", a_code, phone="13900000001")
    c, effects = join(api, alpha, "c", code_of(api, alpha, b), phone="13900000002")
    assert kinds(effects) == [("COUPON_ISSUED", None)] * 2  # a real chain is fine
    _, effects = join(api, alpha, "a-again", code_of(api, alpha, c), phone="13800000000")
    assert kinds(effects) == [("NO_REWARD", "SELF_REFERRAL")] and "chain" in effects[0]["description"]
    assert counts(api, alpha, c) == (1, 0, 0)


def test_one_person_signing_up_twice_with_a_code_is_rewarded_once(shops):
    runtime, api, alpha, _ = shops
    referrer, code = referrer_with_code(api, alpha)
    other, other_code = referrer_with_code(api, alpha, "other", phone="13700000000")
    _, effects = join(api, alpha, "friend", code, phone="13900000001")
    assert kinds(effects) == [("COUPON_ISSUED", None)] * 2
    for n, (which, contact) in enumerate(((code, {"phone": "139 0000 0001"}),
                                          (other_code, {"phone": "13900000001"}),
                                          (code, {"email": "other@example.com"}))):
        again, effects = join(api, alpha, f"again-{n}", which, **contact)
        assert [(e["kind"], e["code"], e["rule"]) for e in effects] == [
            ("NO_REWARD", "SAME_CONTACT", "referral.same_contact")]
        assert coupons(api, alpha, again) == []
    assert counts(api, alpha, referrer) == (3, 1, 0) and counts(api, alpha, other) == (1, 0, 0)


def test_a_friend_without_phone_or_email_gets_no_reward_unless_the_shop_allows_it(make_runtime, make_api):
    runtime = make_runtime(shop("alpha") + shop("open", DEMO_REFERRAL + "require_contact = false\n"))
    api = make_api(runtime)
    for slug, expected in (("alpha", [("NO_REWARD", "CONTACT_REQUIRED")]), ("open", [("COUPON_ISSUED", None)] * 2)):
        key = api.key(slug)
        _, code = referrer_with_code(api, key)
        assert kinds(join(api, key, "friend", code)[1]) == expected


def test_the_monthly_cap_counts_calendar_months_in_the_shops_timezone(shops):
    runtime, api, alpha, _ = shops
    referrer, code = referrer_with_code(api, alpha)
    # 20 friends in March (Asia/Shanghai): 31 March 15:59 UTC is 23:59 in Shanghai, still March.
    with clock.frozen(datetime(2026, 3, 31, 15, 59, tzinfo=UTC)):
        for n in range(20):
            assert len(join(api, alpha, f"f-{n}", code, phone=f"139000000{n:02}")[1]) in (2, 3)
        late, effects = join(api, alpha, "f-late", code, phone="13900000099")
        assert [(e["kind"], e["code"], e["rule"]) for e in effects] == [
            ("NO_REWARD", "MONTHLY_CAP_REACHED", "referral.monthly_cap")]
        assert "2026-03" in effects[0]["description"]
    assert coupons(api, alpha, late) == []
    assert counts(api, alpha, referrer) == (21, 20, 6)
    with clock.frozen(datetime(2026, 3, 31, 16, 0, tzinfo=UTC)):  # midnight, 1 April in Shanghai
        _, effects = join(api, alpha, "f-april", code, phone="13900000100")
        assert kinds(effects) == [("COUPON_ISSUED", None)] * 3  # the 21st friend rewarded: a bonus too
    with runtime.db.read() as conn:
        months = conn.execute(select(ReferralMonth.month, ReferralMonth.rewarded).order_by(ReferralMonth.month))
        assert months.all() == [("2026-03", 20), ("2026-04", 1)]
    with runtime.db.read() as conn:
        assert conn.execute(select(ReferralFriend.status).where(ReferralFriend.reason == "MONTHLY_CAP_REACHED")
                            ).scalars().all() == ["REFUSED"]


def test_first_order_mode_applies_the_cap_when_the_reward_is_paid(shops):
    runtime, api, _, beta = shops
    referrer, code = referrer_with_code(api, beta)
    friends = [join(api, beta, f"f-{n}", code, phone=f"1390000000{n}")[0] for n in range(3)]
    with clock.frozen(datetime(2026, 3, 5, tzinfo=UTC)):
        assert order_effects(api, beta, friends[0], "o-0", 1000) == [("COUPON_ISSUED", None)] * 2
        assert order_effects(api, beta, friends[1], "o-1", 1000) == [("COUPON_ISSUED", None)] * 2
        assert order_effects(api, beta, friends[2], "o-2", 1000) == [("NO_REWARD", "MONTHLY_CAP_REACHED")]
        assert order_effects(api, beta, friends[2], "o-3", 1000) == []  # refused once, for good
    assert counts(api, beta, referrer) == (3, 2, 0)


# ---------------------------------------------------------------- 4. repeats


def test_a_retried_signup_is_a_duplicate_and_rewards_nothing_again(shops):
    runtime, api, alpha, _ = shops
    referrer, code = referrer_with_code(api, alpha)
    request = {"input": {"externalId": "friend", "referralCode": code, "phone": "13900000001"}}
    first = api(SIGN_UP, request, alpha)["signUpMember"]
    again = api(SIGN_UP, request, alpha)["signUpMember"]
    assert (first["duplicate"], again["duplicate"]) == (False, True)
    assert again["effects"] == first["effects"] and again["member"]["id"] == first["member"]["id"]
    assert coupons(api, alpha, referrer) == [REFERRER20] and coupons(api, alpha, first["member"]["id"]) == [FRIEND20]
    assert counts(api, alpha, referrer) == (1, 1, 0)
    other = api(SIGN_UP, {"input": {**request["input"], "phone": "13900000002"}}, alpha)["signUpMember"]
    assert [e["code"] for e in other["errors"]] == ["IDEMPOTENCY_CONFLICT"]


# ---------------------------------------------------------------- 5. the demo shop, concurrency


def test_the_demo_shop_rewards_a_friend_next_to_its_other_plugins(make_runtime, make_api):
    runtime = make_runtime((ROOT / "plugins.toml").read_text())
    api = make_api(runtime)
    key = api.key("demo")
    referrer, code = referrer_with_code(api, key)
    assert view(api, key, referrer)["referral"]["shareLink"] == f"https://shop.example/r/{code}"
    friend, effects = join(api, key, "friend", code, phone="13900000001")
    assert kinds(effects) == [("COUPON_ISSUED", None)] * 2
    assert coupons(api, key, friend) == [FRIEND20] and coupons(api, key, referrer) == [REFERRER20]


@postgres_only()
def test_concurrent_signups_with_one_code_past_the_monthly_cap_pay_exactly_the_cap(shops):
    runtime, api, alpha, _ = shops
    referrer, code = referrer_with_code(api, alpha)
    shop = runtime.shop("alpha")

    def friend(n: int):
        return sign_up_member(runtime, shop, None, external_id=f"f-{n}", phone=f"139000{n:05}", referral_code=code)

    with clock.frozen(datetime(2026, 3, 10, tzinfo=UTC)), ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(friend, range(40)))
    assert all(not r.errors for r in results)
    refused = [e.code for r in results for e in r.effects if e.kind == "NO_REWARD"]
    assert refused == ["MONTHLY_CAP_REACHED"] * 20
    assert coupons(api, alpha, referrer) == [REFERRER20] * 20 + [BONUS50] * 6
    assert counts(api, alpha, referrer) == (40, 20, 6)
    with runtime.db.read() as conn:
        assert conn.execute(select(ReferralMonth.rewarded)).scalars().all() == [20]
        statuses = conn.execute(select(ReferralFriend.status, func.count()).group_by(ReferralFriend.status)).all()
    assert sorted(statuses) == [("REFUSED", 20), ("REWARDED", 20)]
