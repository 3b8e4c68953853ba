"""The operator console at /admin in a real browser (Chromium through Playwright) against a real
`memberkit serve`: sign in with a staff key, see the KPI charts with data, find a member, adjust points and
see the ledger entry; a viewer sees the writes disabled; no Content-Security-Policy violation, no serious or
critical axe-core finding on any page; screenshots at 1280x800 and 390x844 (tests.browser.SCREENSHOTS).

End to end, run once: in the SQLite pass. Needs Chromium (`apt-get install -y chromium`, or
MEMBERKIT_CHROMIUM=/path/to/chrome) and Playwright (`pip install -e '.[test]'`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.browser import (
    AXE,
    DESKTOP,
    HOW_TO_GET_CHROMIUM,
    PHONE,
    SCREENSHOTS,
    chromium_fixture,  # noqa: F401  (the `chromium` fixture)
    create_key,
    run_once,
    serving,
)
from tests.conftest import SIGN_UP

sync_api = pytest.importorskip("playwright.sync_api", reason=HOW_TO_GET_CHROMIUM)
pytestmark = run_once


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The demo shop served (tests/browser.py) with three members (one has paid), 19 more who joined 3 to 58 days
    ago, and an operator's and a viewer's staff keys, made as an operator makes them."""
    with serving(tmp_path_factory.mktemp("console")) as served:
        staff = lambda role, label: create_key(served.env, "demo", "--kind", "staff", "--role", role,  # noqa: E731
                                               "--label", label)
        operator, viewer = staff("operator", "alice"), staff("viewer", "bob")
        ids = [served.gql(SIGN_UP, {"input": {"externalId": f"crm-{n}", "tags": ["vip"] if n == 1 else []}})
               ["signUpMember"]["member"]["id"] for n in range(3)]
        served.pay(ids[1], 25000)
        for n in range(1, 20):  # members brought over from an older system
            joined = (datetime.now(UTC) - timedelta(days=3 * n + (n >= 10))).isoformat()
            served.gql(SIGN_UP, {"input": {"externalId": f"old-{n}", "joinedAt": joined}})
        yield {"base": served.base, "operator": operator, "viewer": viewer, "member_id": ids[1]}


@pytest.fixture
def console(chromium, server):
    context = chromium.new_context(viewport=DESKTOP, base_url=server["base"])
    page = context.new_page()
    page.csp_violations = []
    page.on("console", lambda message: "Content Security Policy" in message.text
            and page.csp_violations.append(message.text))
    page.on("pageerror", lambda error: page.csp_violations.append(f"script error: {error}"))
    yield page
    context.close()
    assert page.csp_violations == []


def assert_accessible(page, name: str) -> None:
    """axe-core (evaluated through the debugger, which the page's CSP does not govern) finds nothing serious
    or critical."""
    page.evaluate(AXE.read_text())
    violations = page.evaluate("""async () => (await axe.run(document, {resultTypes: ['violations']}))
        .violations.filter(v => ['serious', 'critical'].includes(v.impact))
        .map(v => `${v.id} (${v.impact}): ${v.nodes.map(n => n.target.join(' ')).join(', ')}`)""")
    assert violations == [], f"{name}: {violations}"


def screenshots(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for size in (DESKTOP, PHONE):
        page.set_viewport_size(size)
        page.wait_for_timeout(300)  # the charts are drawn again at the new width
        page.screenshot(path=SCREENSHOTS / f"console-{name}-{size['width']}x{size['height']}.png", full_page=False)
    page.set_viewport_size(DESKTOP)


def sign_in(page, key: str) -> None:
    """By keyboard: the key field has the focus when the page opens, Enter submits."""
    page.goto("/admin")
    sync_api.expect(page.locator("#staff-key")).to_be_focused()
    page.keyboard.type(key)
    page.keyboard.press("Enter")
    sync_api.expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()


def test_the_page_is_served_with_a_strict_content_security_policy(server):
    response = httpx.get(server["base"] + "/admin")
    policy = response.headers["content-security-policy"]
    assert response.status_code == 200 and "script-src 'self'" in policy and "default-src 'none'" in policy
    assert "unsafe-inline" not in policy and "<script>" not in response.text  # the script is a file, never inline
    assert httpx.get(server["base"] + "/admin/assets/console.js").headers["content-type"].startswith("text/javascript")
    assert httpx.get(server["base"] + "/admin/assets/..%2F__init__.py").status_code == 404


def test_a_wrong_key_is_refused_with_the_servers_message(console, server):
    page = console
    page.goto("/admin")
    assert_accessible(page, "sign-in")
    page.get_by_label("Staff key").fill("mkst_not-a-key")
    page.get_by_role("button", name="Sign in").click()
    sync_api.expect(page.locator("#sign-in-error")).to_have_text(re.compile("authentication required"))
    screenshots(page, "sign-in")


def test_an_operator_signs_in_sees_the_kpis_finds_the_member_and_adjusts_points(console, server):
    page = console
    sign_in(page, server["operator"])
    chart = page.get_by_role("img", name=re.compile("New members per day"))
    sync_api.expect(chart).to_be_visible()
    assert int(chart.get_attribute("data-points")) >= 30  # one point a day of the last 30
    sync_api.expect(page.locator("#kpis .card").first.locator(".figure")).to_have_text(
        "12 against 10 in the previous period")  # the last 30 days (3 today, 9 before) against the 30 before
    sync_api.expect(page.get_by_role("img", name=re.compile("Members per tier"))).to_be_visible()
    assert_accessible(page, "dashboard")
    screenshots(page, "dashboard")

    page.get_by_role("link", name="Members").click()
    sync_api.expect(page.get_by_text("22 members match.")).to_be_visible()
    page.get_by_label("Any of these tags").fill("vip")
    page.get_by_role("button", name="Search").click()
    sync_api.expect(page.get_by_text("1 member matches.")).to_be_visible()
    assert_accessible(page, "members")
    page.get_by_label("Member id or external id").fill("crm-1")
    page.get_by_role("button", name="Find").click()
    sync_api.expect(page.get_by_role("heading", name="Member crm-1")).to_be_visible()
    balance = int(re.match(r"[\d,]+", page.locator("#points-balance").inner_text()).group().replace(",", ""))

    page.get_by_label("Points (negative to take back)").fill("50")
    page.get_by_label("Reason").first.fill("<b>goodwill</b>: late delivery")  # a text, never markup
    page.get_by_label("Reason").first.press("Enter")
    sync_api.expect(page.get_by_role("status").filter(has_text="Done: balance")).to_contain_text(f"{balance + 50}")
    entry = page.get_by_role("row").filter(has_text="late delivery").first
    sync_api.expect(entry).to_contain_text("+50")
    sync_api.expect(entry).to_contain_text("<b>goodwill</b>: late delivery")
    assert page.locator("#ledger-title ~ div b").count() == 0
    assert_accessible(page, "member")
    screenshots(page, "member")

    for name in ("Webhooks", "Jobs", "Audit log"):
        page.get_by_role("link", name=name).click()
        sync_api.expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()
        assert_accessible(page, name)
    sync_api.expect(page.get_by_role("row").filter(has_text="adjustPoints")).to_contain_text("alice (operator)")

    page.get_by_role("button", name="Sign out").click()
    sync_api.expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    refused = page.evaluate("""async () => (await fetch('/graphql', {method: 'POST', headers: {'content-type':
        'application/json'}, body: JSON.stringify({query: '{ shop { name } }'})})).status""")
    assert refused in (401, 403)  # the session is gone


def test_a_viewer_reads_the_member_but_the_writes_are_disabled(console, server):
    page = console
    sign_in(page, server["viewer"])
    page.goto(f"/admin#/member/{server['member_id']}")
    sign_in_again = page.locator("#staff-key")
    if sign_in_again.is_visible():  # a new page load forgets the CSRF token: sign in again
        page.keyboard.type(server["viewer"])
        page.keyboard.press("Enter")
    sync_api.expect(page.get_by_role("heading", name="Member crm-1")).to_be_visible()
    adjust = page.get_by_role("group", name="Adjust points")
    sync_api.expect(adjust.get_by_role("button", name="Adjust points")).to_be_disabled()
    sync_api.expect(adjust.get_by_label("Reason")).to_be_disabled()
    sync_api.expect(adjust).to_contain_text("Your role is viewer: only an operator adjusts points.")
    sync_api.expect(page.get_by_role("button", name="Set tier")).to_be_disabled()
    refused = page.evaluate("""async (memberId) => {
        // the cookie without the CSRF token does nothing (and a viewer's token would be refused the write)
        return (await fetch('/graphql', {method: 'POST', headers: {'content-type': 'application/json'},
          body: JSON.stringify({query: 'mutation($m: ID!) { adjustPoints(input: {memberId: $m, delta: 5, ' +
            'reason: "x", idempotencyKey: "k"}) { errors { code } } }', variables: {m: memberId}})})).status }""",
                            server["member_id"])
    assert refused == 403
