"""The member centre page, /member?shop=demo#token=..., in a real Chromium against a real `memberkit serve`: what
a member sees change as they pay, redeem and reserve, in the shop's language, under a strict CSP, with every
action reachable by keyboard and no serious accessibility violation (axe-core). Run once, in the SQLite pass."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pytest

from tests.browser import (  # noqa: F401  (the fixtures chromium and served)
    DESKTOP,
    PHONE,
    ROOT,
    chromium_fixture,
    now,
    open_page,
    run_once,
    screenshot,
    serious_accessibility_violations,
    served_fixture,
    serving,
)

pytestmark = run_once


def centre(chromium, served, member_id: str, viewport: dict = PHONE):
    """The member centre as the storefront opens it, loaded."""
    page = open_page(chromium, f"{served.base}/member?shop={served.slug}#token={served.member_token(member_id)}",
                     viewport)
    page.wait_for_selector("#app[aria-busy=false]")
    return page


def reload(page) -> None:
    page.reload()
    page.wait_for_selector("#app[aria-busy=false]")


def says(locator, expected: str) -> None:
    """The element comes to say exactly `expected` (the page answers a click after a round trip)."""
    locator.filter(has_text=expected).wait_for(timeout=10_000)
    assert locator.inner_text() == expected


def text(page, selector: str) -> str:
    return page.locator(selector).inner_text()


# ---------------------------------------------------------------- the tier and its progress


def test_the_tier_card_and_its_progress_sentence_follow_what_the_member_pays(chromium, served):
    member = served.sign_up("tier-ann")
    page = centre(chromium, served, member)
    assert "#token=" not in page.url  # out of the address bar (and of history) once read
    assert text(page, "#tier-name") == "普通会员"
    assert text(page, "#tier-sentence") == "您距离升级银卡会员仅差500元"
    assert page.locator("#tier-progress").get_attribute("value") == "0"

    served.pay(member, 40000)  # 400 yuan
    reload(page)  # the token stays for the tab's session: a reload needs no new link
    assert text(page, "#tier-name") == "普通会员"
    assert text(page, "#tier-sentence") == "您距离升级银卡会员仅差100元"
    assert page.locator("#tier-progress").get_attribute("value") == "80"
    assert text(page, "#points-balance") == "400"

    served.pay(member, 20000)
    reload(page)
    assert text(page, "#tier-name") == "银卡会员"
    assert text(page, "#tier-sentence") == "您距离升级金卡会员仅差1400元"
    upgrade = page.locator("#upgrade li.tier.current")
    assert upgrade.locator("h3").inner_text().startswith("银卡会员")
    assert "one exclusive coupon each month" in upgrade.inner_text()
    assert page.locator("#upgrade li.tier").count() == 4
    history = text(page, "#points-history")
    assert history.count("获得") == 2 and "+400" in history and "+200" in history
    assert page.problems == []


def test_an_english_shop_says_it_in_english(chromium, tmp_path):
    settings = tmp_path / "plugins.toml"
    settings.write_text((ROOT / "plugins.toml").read_text().replace(
        'locale = "zh-CN"             #', 'locale = "en"             #', 1))
    with serving(tmp_path, settings) as english:
        member = english.sign_up("en-bo")
        english.pay(member, 40000)
        page = centre(chromium, english, member)
        assert page.locator("html").get_attribute("lang") == "en"
        assert text(page, "#tier-name") == "Regular"
        assert text(page, "#tier-sentence") == "100 yuan from Silver"
        assert text(page, "#points h2") == "Points"
        assert page.problems == []


# ---------------------------------------------------------------- the points mall


def test_redeeming_asks_first_refuses_a_shortfall_and_puts_the_coupon_in_the_wallet(chromium, served):
    member = served.sign_up("mall-cy")
    served.pay(member, 60000)  # 600 points
    page = centre(chromium, served, member)
    gifts = ["10 yuan off, no minimum (welcome gift)", "10 yuan off, no minimum (first order)"]
    assert page.locator("#coupons-usable .coupon-title").all_inner_texts() == gifts
    condition, validity = page.locator("#coupons-usable li").first.inner_text().split("\n")[1:]
    assert condition == "无门槛" and re.fullmatch(r"有效期至\d{4}年\d{1,2}月\d{1,2}日", validity)

    expensive = page.locator("#mall li", has_text="50 off orders of 300")
    expensive.get_by_role("button", name="兑换").click()
    dialog = page.locator("dialog#confirm")
    assert dialog.is_visible() and "使用1000积分兑换“50 off orders of 300”？" in dialog.inner_text()
    dialog.get_by_role("button", name="确认").click()
    says(page.get_by_role("alert"), "积分不足：需要1000积分，您现有600积分")
    assert text(page, "#points-balance") == "600"

    cheap = page.locator("#mall li", has_text="10-yuan no-threshold coupon")
    cheap.get_by_role("button", name="兑换").click()
    dialog.get_by_role("button", name="取消").click()  # changing one's mind changes nothing
    assert not dialog.is_visible() and text(page, "#points-balance") == "600"

    cheap.get_by_role("button", name="兑换").focus()
    page.keyboard.press("Enter")  # by keyboard: the dialog takes the focus, Tab reaches its confirm button
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "confirm-ok"
    page.keyboard.press("Enter")
    page.get_by_role("status").filter(has_text="兑换成功").wait_for()
    assert text(page, "#points-balance") == "100"
    assert page.locator("#coupons-usable .coupon-title").all_inner_texts() == [
        *gifts, "10 yuan off, no minimum (500 points)"]
    assert "使用 · 10-yuan no-threshold coupon" in text(page, "#points-history")
    assert page.problems == []


# ---------------------------------------------------------------- flash sales and the calendar


def test_a_flash_sale_counts_down_and_a_reservation_is_held_then_the_limit_refused(chromium, served):
    running = served.flash_sale("<b>Sneakers</b> at 89", now() - timedelta(minutes=1), now() + timedelta(hours=2))
    later = served.flash_sale("Friday flash", now() + timedelta(days=2), now() + timedelta(days=2, hours=2))
    member = served.sign_up("flash-di")
    page = centre(chromium, served, member)
    active = page.locator(f"#sale-{running}")
    assert active.locator(".sale-title").inner_text() == "<b>Sneakers</b> at 89"  # the integrator's text, as text
    assert page.locator("#flash b").count() == 0
    assert re.fullmatch(r"距结束 0?1:5\d:\d\d", active.locator(".countdown").inner_text())
    assert re.fullmatch(r"距开始 1天 23:5\d:\d\d", page.locator(f"#sale-{later} .countdown").inner_text())
    assert page.locator(f"#sale-{later} button").is_disabled()
    first = active.locator(".countdown").inner_text()
    page.wait_for_timeout(1500)
    assert active.locator(".countdown").inner_text() != first  # it counts down, second by second

    active.get_by_role("button", name="立即预约").click()
    page.get_by_role("status").filter(has_text="已为您保留1件").wait_for()
    held = text(page, "#reservations li")
    assert re.fullmatch(re.escape("<b>Sneakers</b> at 89 × 1 · 保留剩余 ") + r"00:1[45]:\d\d", held)
    assert "剩余9件" in page.locator(f"#sale-{running}").inner_text()

    page.locator(f"#sale-{running}").get_by_role("button", name="立即预约").click()  # a second unit: over the limit
    says(page.get_by_role("alert"), "超出每人限购数量（1件）")

    calendar = text(page, "#calendar-entries")
    assert "秒杀" in calendar and "Friday flash" in calendar and "会员日" in calendar
    assert page.problems == []


def test_the_birthday_month_is_on_the_calendar(chromium, served):
    today = now() + timedelta(hours=8)  # the shop's day, Asia/Shanghai
    member = served.sign_up("birthday-ed", birthday=f"1990-{today.month:02d}-{min(today.day, 28):02d}")
    page = centre(chromium, served, member)
    birthday = page.locator("#calendar-entries li.birthday_month")
    assert birthday.count() == 1  # one line for the month, not one a day
    assert "生日月" in birthday.inner_text()


def test_the_referral_code_and_its_share_link(chromium, served):
    member = served.sign_up("referral-fu")
    page = centre(chromium, served, member)
    code = text(page, "#referral-code")
    assert re.fullmatch(r"[A-Z0-9]{4,}", code)
    assert page.locator("#referral a").get_attribute("href") == f"https://shop.example/r/{code}"
    assert page.locator("#referral").get_by_role("button", name="分享邀请链接").is_visible()


# ---------------------------------------------------------------- the page itself


def test_every_action_is_a_button_or_link_the_keyboard_reaches(chromium, served):
    served.flash_sale("Keyboard sale", now() - timedelta(minutes=1), now() + timedelta(hours=1))
    member = served.sign_up("keys-gu")
    page = centre(chromium, served, member)
    actions = "main button:not([disabled]), main a[href]"
    count = page.locator(actions).count()
    assert count >= 5
    reached = set()
    for _ in range(count + 5):
        page.keyboard.press("Tab")
        reached.add(page.evaluate(f"[...document.querySelectorAll({actions!r})].indexOf(document.activeElement)"))
    assert reached - {-1} == set(range(count))
    assert page.locator("main [onclick], main div[tabindex], main span[tabindex]").count() == 0


def test_no_serious_accessibility_violation_and_the_screenshots(chromium, served):
    served.flash_sale("周五会员秒杀", now() - timedelta(minutes=1), now() + timedelta(hours=2))
    member = served.sign_up("look-hu", birthday="1992-03-08")
    served.pay(member, 40000)
    for viewport, name in ((PHONE, "member-centre-390"), (DESKTOP, "member-centre-1280")):
        page = centre(chromium, served, member, viewport)
        assert serious_accessibility_violations(page) == []
        assert page.problems == []
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= viewport["width"], "nothing wider than the screen"
        assert screenshot(page, name).stat().st_size > 10_000
        page.context.close()


def test_the_page_and_its_files_carry_a_strict_content_security_policy(served):
    page = httpx.get(f"{served.base}/member?shop=demo")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy and "unsafe" not in policy
    assert "<script>" not in page.text and "style=" not in page.text  # nothing inline for the policy to forbid
    for asset in ("member.js", "member.css"):
        served_asset = httpx.get(f"{served.base}/member/{asset}")
        assert served_asset.status_code == 200 and served_asset.headers["content-security-policy"] == policy
    assert "innerHTML" not in httpx.get(f"{served.base}/member/member.js").text


@pytest.mark.parametrize("path", ["/member", "/member?shop=nowhere", "/member/index.html", "/member/..%2Fmember.py"])
def test_no_page_for_a_shop_without_the_member_centre_nor_for_other_files(served, path):
    refused = httpx.get(served.base + path)
    assert refused.status_code == 404 and "import" not in refused.text
    assert path.startswith("/member/..") or "member_centre = true" in refused.text or "no file" in refused.text
