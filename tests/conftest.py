"""Shared fixtures: a migrated database (SQLite always; PostgreSQL when MEMBERKIT_TEST_DATABASE_URL is
set), a runtime for a settings text, an HTTP client on the real app, and helpers to call GraphQL."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

os.environ.setdefault("MEMBERKIT_TOKEN_SECRETS", "test-token-secret-new,test-token-secret-old")
os.environ.setdefault("MEMBERKIT_PII_KEY", "test-pii-key")

from memberkit.core import clock  # noqa: E402
from memberkit.core import plugins as plugin_registry  # noqa: E402
from memberkit.core import settings as settings_module  # noqa: E402
from memberkit.core.db import Database  # noqa: E402
from memberkit.core.runtime import Runtime  # noqa: E402

from memberkit import migrate  # noqa: E402
from memberkit.server import create_app  # noqa: E402

TEST_DATABASE_URL = os.environ.get("MEMBERKIT_TEST_DATABASE_URL")
ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"

TWO_SHOPS = """
[shops.alpha]
name = "Alpha"
currency = "CNY"
timezone = "Asia/Shanghai"

[shops.alpha.coupons.TEN_OFF]
title = "10 off"
kind = "FIXED"
value = 1000
valid_days = 30

[shops.alpha.coupons.FIVE_PERCENT]
title = "5% off"
kind = "PERCENT"
value = 5
min_spend = 10000

[shops.beta]
name = "Beta"
currency = "EUR"
timezone = "Europe/Berlin"

[shops.beta.coupons.TEN_OFF]
title = "10 off"
kind = "FIXED"
value = 1000
"""


# The demo shop's four tiers (RULES.md section 1), for a test shop `{shop}` that enables tiering.
DEMO_TIERS = """
[shops.{shop}.settings.tiering]

[[shops.{shop}.settings.tiering.tiers]]
code = "REGULAR"
name = "Regular"
rank = 1

[[shops.{shop}.settings.tiering.tiers]]
code = "SILVER"
name = "Silver"
rank = 2
min_spend = 50000

[[shops.{shop}.settings.tiering.tiers]]
code = "GOLD"
name = "Gold"
rank = 3
min_spend = 200000

[[shops.{shop}.settings.tiering.tiers]]
code = "DIAMOND"
name = "Diamond"
rank = 4
min_spend = 500000
"""


def pytest_report_header(config):
    return f"memberkit database: {'PostgreSQL ' + TEST_DATABASE_URL if TEST_DATABASE_URL else 'SQLite'}"


def postgres_only(reason: str = "needs PostgreSQL (MEMBERKIT_TEST_DATABASE_URL)"):
    return pytest.mark.skipif(not TEST_DATABASE_URL, reason=reason)


@pytest.fixture
def settings_file(tmp_path):
    """Write a settings text to a file and return its path."""

    def write(body: str = TWO_SHOPS, name: str = "plugins.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(body))
        return path

    return write


def _reset_postgres(db: Database) -> None:
    with db.engine.begin() as conn:
        tables = [r[0] for r in conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename <> 'alembic_version'"))]
        if tables:
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))


_sqlite_templates: dict[tuple[str, ...], Path] = {}


@pytest.fixture
def make_runtime(tmp_path, settings_file, tmp_path_factory):
    """A Runtime on a freshly migrated, empty database for the given settings text."""
    made: list[Runtime] = []

    def make(body: str = TWO_SHOPS) -> Runtime:
        settings = settings_module.load(settings_file(body, f"plugins-{len(made)}.toml"))
        if TEST_DATABASE_URL:
            runtime = Runtime(settings, Database(TEST_DATABASE_URL))
            migrate.upgrade(runtime)
            if not made:
                _reset_postgres(runtime.db)
        else:
            plugin_set = tuple(sorted({p for s in settings.shops.values() for p in s.plugins}))
            template = _sqlite_templates.get(plugin_set)
            if template is None or not template.exists():
                template = tmp_path_factory.mktemp("template") / "memberkit.db"
                first = Runtime(settings, Database(f"sqlite:///{template}"))
                migrate.upgrade(first)
                first.db.dispose()
                _sqlite_templates[plugin_set] = template
            path = tmp_path / f"memberkit-{len(made)}.db"
            shutil.copy(template, path)
            runtime = Runtime(settings, Database(f"sqlite:///{path}"))
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        runtime.db.dispose()
    clock.set_now(None)
    plugin_registry.refresh()


@pytest.fixture
def runtime(make_runtime) -> Runtime:
    return make_runtime()


class Api:
    """A GraphQL client on the real ASGI app; `key` is the Authorization bearer, if any."""

    def __init__(self, client: TestClient, runtime: Runtime):
        self.client, self.runtime = client, runtime

    def post(self, query: str, variables: dict | None = None, key: str | None = None):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return self.client.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers)

    def __call__(self, query: str, variables: dict | None = None, key: str | None = None) -> dict:
        """Run a query that must succeed at the GraphQL level; return its data."""
        response = self.post(query, variables, key)
        body = response.json()
        assert response.status_code == 200 and not body.get("errors"), body
        return body["data"]

    def errors(self, query: str, variables: dict | None = None, key: str | None = None) -> list[dict]:
        """Run a query that must fail at the GraphQL level; return its errors."""
        body = self.post(query, variables, key).json()
        assert body.get("errors"), body
        return body["errors"]

    def key(self, shop: str, kind: str = "secret") -> str:
        from memberkit.core import auth

        with self.runtime.db.write() as conn:
            return auth.create_key(conn, shop, kind)[1]


@pytest.fixture
def make_api():
    clients: list[TestClient] = []

    def make(runtime: Runtime, development: bool = False) -> Api:
        client = TestClient(create_app(runtime, development=development, jobs_interval=0))
        client.__enter__()
        clients.append(client)
        return Api(client, runtime)

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def api(runtime, make_api) -> Api:
    return make_api(runtime)


SIGN_UP = """
mutation($input: SignUpMemberInput!) {
  signUpMember(input: $input) {
    duplicate member { id externalId tags birthday } effects { plugin kind description code }
    errors { code field message }
  }
}"""

ORDER_PAID = """
mutation($input: OrderPaidInput!) {
  recordOrderPaid(input: $input) {
    duplicate member { id } effects { plugin kind description code rule } errors { code field message }
  }
}"""

ORDER_REFUNDED = """
mutation($input: OrderRefundedInput!) {
  recordOrderRefunded(input: $input) {
    duplicate member { id } effects { plugin kind description code } errors { code field message }
  }
}"""

MEMBER = """
query($id: ID, $externalId: String) {
  member(id: $id, externalId: $externalId) {
    id externalId joinedAt birthday tags
    coupons(status: null) { code title kind value status source minSpend { amount currency } validUntil }
  }
}"""


def sign_up(api: Api, key: str, external_id: str, **fields) -> str:
    payload = api(SIGN_UP, {"input": {"externalId": external_id, **fields}}, key)["signUpMember"]
    assert not payload["errors"], payload
    return payload["member"]["id"]


MEMBERKIT = str(Path(sys.executable).parent / "memberkit")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def memberkit_serve(env: dict, workers: int, log_path: Path):
    """A real `memberkit serve --workers N` process, as a user runs it; yields its base URL once healthy."""
    port = free_port()
    with open(log_path, "w+") as log:
        process = subprocess.Popen([MEMBERKIT, "serve", "--port", str(port), "--workers", str(workers),
                                    "--jobs-interval", "0"], env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            process.kill()
            pytest.fail("server did not start: " + log_path.read_text())
        try:
            yield base
        finally:
            process.terminate()
            process.wait(timeout=30)
