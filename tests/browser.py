"""Browser tests' kit, shared by the pages' tests (import `chromium_fixture` and `served_fixture` into a test
module to use the `chromium` and `served` fixtures): a real `memberkit serve` on a free port with a fresh SQLite file
and the repository's plugins.toml, an API client holding its secret key, a Chromium driven by Playwright, the
axe-core check and the screenshots (MEMBERKIT_SCREENSHOTS=docs/screenshots writes the README's).

Chromium: Debian's (`apt-get install -y chromium`, which .ci/run does), or any build named by
MEMBERKIT_CHROMIUM; without one the browser tests skip, saying so. They run once, in the SQLite pass."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.conftest import MEMBERKIT, ROOT, TEST_DATABASE_URL, memberkit_serve

# Screenshots go to a temporary folder, so a test run changes no committed file; to refresh the README's:
# MEMBERKIT_SCREENSHOTS=docs/screenshots pytest tests/test_member_centre_page.py tests/test_console_page.py
SCREENSHOTS = Path(os.environ.get("MEMBERKIT_SCREENSHOTS") or Path(tempfile.gettempdir()) / "memberkit-screenshots")
AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
PHONE, DESKTOP = {"width": 390, "height": 844}, {"width": 1280, "height": 800}
HOW_TO_GET_CHROMIUM = ("no Chromium for the browser tests: `apt-get install -y chromium` (Debian/Ubuntu), or set "
                       "MEMBERKIT_CHROMIUM to a Chromium executable; and `pip install -e '.[test]'` for Playwright")

run_once = pytest.mark.skipif(bool(TEST_DATABASE_URL), reason="end to end, run once: in the SQLite pass")

SIGN_UP = """mutation($input: SignUpMemberInput!) { signUpMember(input: $input) { member { id } errors { code } } }"""
ORDER_PAID = """mutation($input: OrderPaidInput!) { recordOrderPaid(input: $input) { errors { code message } } }"""
MINT = """mutation($id: ID!) { createMemberToken(memberId: $id, ttlSeconds: 900) { token errors { code } } }"""
CREATE_SALE = """mutation($input: FlashSaleInput!) { createFlashSale(input: $input) {
  flashSale { id } errors { code message } } }"""


def chromium_executable() -> str | None:
    named = os.environ.get("MEMBERKIT_CHROMIUM")
    if named:
        return named
    return next(filter(None, (shutil.which(name) for name in ("chromium", "chromium-browser"))), None)


@dataclass
class Served:
    """A running `memberkit serve` and the integrator's side of it (the secret key), as a storefront has."""

    base: str
    slug: str
    client: httpx.Client
    env: dict  # the server's environment: `create_key(served.env, ...)` makes more keys (a staff key, say)

    def gql(self, query: str, variables: dict | None = None) -> dict:
        response = self.client.post("/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
        assert response.status_code == 200, response.text
        body = response.json()
        assert not body.get("errors"), body
        return body["data"]

    def sign_up(self, external_id: str, birthday: str | None = None) -> str:
        payload = self.gql(SIGN_UP, {"input": {"externalId": external_id, "birthday": birthday}})["signUpMember"]
        assert payload["errors"] == [], payload
        return payload["member"]["id"]

    def pay(self, member_id: str, total: int) -> None:
        payload = self.gql(ORDER_PAID, {"input": {"orderId": f"o-{uuid.uuid4().hex[:12]}", "memberId": member_id,
                                                  "total": total}})["recordOrderPaid"]
        assert payload["errors"] == [], payload

    def member_token(self, member_id: str) -> str:
        payload = self.gql(MINT, {"id": member_id})["createMemberToken"]
        assert payload["errors"] == [], payload
        return payload["token"]

    def flash_sale(self, title: str, starts_at: datetime, ends_at: datetime, stock: int = 10) -> str:
        payload = self.gql(CREATE_SALE, {"input": {
            "sku": "FLASH-1", "title": title, "price": 8900, "startsAt": starts_at.isoformat(),
            "endsAt": ends_at.isoformat(), "stock": stock, "perMemberLimit": 1, "membersOnly": True,
        }})["createFlashSale"]
        assert payload["errors"] == [], payload
        return payload["flashSale"]["id"]


@contextmanager
def serving(folder: Path, settings: Path = ROOT / "plugins.toml", shop: str = "demo") -> Iterator[Served]:
    """`memberkit serve` on a fresh SQLite file in `folder` with a settings file (the repository's by default)."""
    env = {**os.environ, "MEMBERKIT_CONFIG": str(settings), "MEMBERKIT_DATABASE_URL": f"sqlite:///{folder / 'mk.db'}",
           "MEMBERKIT_SECRETS_FILE": str(folder / "secret.key"), "MEMBERKIT_ENV": "test"}
    env.pop("MEMBERKIT_TEST_DATABASE_URL", None)
    with memberkit_serve(env, 1, folder / "server.log") as base:  # (serve migrates the new SQLite file first)
        key = create_key(env, shop)
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as client:
            yield Served(base, shop, client, env)


@pytest.fixture(scope="module", name="served")
def served_fixture(tmp_path_factory) -> Iterator[Served]:
    """The demo shop of the repository's plugins.toml, served for a module's tests."""
    if TEST_DATABASE_URL:
        pytest.skip("end to end, run once: in the SQLite pass")
    with serving(tmp_path_factory.mktemp("served")) as server:
        yield server


def create_key(env: dict, shop: str, *options: str) -> str:
    """A key made as an operator makes one, `memberkit keys create` (e.g. "--kind", "staff", "--role", "operator"):
    the last line it prints."""
    made = subprocess.run([MEMBERKIT, "keys", "create", "--shop", shop, *options], env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    return made.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module", name="chromium")
def chromium_fixture():
    """A headless Chromium (Debian's), or a skip that says how to get one."""
    executable = chromium_executable()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(HOW_TO_GET_CHROMIUM)
    if not executable or not Path(executable).exists():
        pytest.skip(HOW_TO_GET_CHROMIUM)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def open_page(chromium, url: str, viewport: dict = PHONE, locale: str = "zh-CN"):
    """A fresh browser context at `viewport` showing `url`; content-security-policy violations and script
    errors are collected on page.problems, so a test can assert there are none."""
    context = chromium.new_context(viewport=viewport, locale=locale, timezone_id="Asia/Shanghai")
    page = context.new_page()
    page.problems = []
    page.on("pageerror", lambda error: page.problems.append(f"script error: {error}"))
    page.on("console", lambda message: page.problems.append(message.text)
            if message.type == "error" else None)
    page.goto(url)
    return page


def serious_accessibility_violations(page) -> list[str]:
    """axe-core (vendored under tests/vendor, for the tests only) run in the page: its serious and critical
    violations, each with the elements it found them on."""
    page.evaluate(AXE.read_text())  # through the devtools protocol, as the page's CSP forbids inline scripts
    result = page.evaluate("() => axe.run(document, { resultTypes: ['violations'] })")
    return [f"{v['impact']}: {v['id']} ({v['help']}) at {[n['target'] for n in v['nodes']][:5]}"
            for v in result["violations"] if v["impact"] in ("serious", "critical")]


def screenshot(page, name: str) -> Path:
    """The page as it is, into SCREENSHOTS/NAME.png (the README shows those under docs/screenshots/)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


def now() -> datetime:
    return datetime.now(UTC)
