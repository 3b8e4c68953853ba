"""memberkit.testing: a pytest plugin for testing memberkit plugins (memberkit's own and third parties').

Installed with memberkit (entry point ``pytest11``), so its fixtures are there in any test run:

``memberkit(settings, plugins=())``
    A running programme for a ``plugins.toml`` text: migrated database, GraphQL clients acting as the
    integrator, a storefront and a member, helpers to sign up, pay and refund, and the clock.
``make_runtime(settings)`` / ``make_api(runtime)``
    The two halves of it, for tests that need the runtime or the HTTP client alone.
``memberkit_clock``
    The clock every hook reads (``ctx.now``), set by the test and reset after it.
``add_plugin(target)``
    Enable a plugin object or module for this test without installing it (a ``Plugin``, or what holds one).

The database is a fresh SQLite file per runtime, or, where ``MEMBERKIT_TEST_DATABASE_URL`` names a
PostgreSQL database, that database, emptied at the start of each test. ``postgres_only()`` marks a test
that needs PostgreSQL (for real concurrency); it is skipped, with the reason, elsewhere.
"""

from __future__ import annotations

import os
import shutil
import textwrap
import warnings
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

with warnings.catch_warnings():  # starlette asks for httpx2; its TestClient works on httpx as it is
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from memberkit import config as settings_module
from memberkit import jobs, migrate
from memberkit.core import clock
from memberkit.core import plugins as plugin_registry
from memberkit.core.db import Database
from memberkit.core.runtime import Runtime
from memberkit.schema import auth
from memberkit.server import create_app

TEST_DATABASE_URL = os.environ.get("MEMBERKIT_TEST_DATABASE_URL")

SIGN_UP = """
mutation($input: SignUpMemberInput!) {
  signUpMember(input: $input) {
    duplicate member { id externalId tags birthday } effects { plugin kind description code rule }
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
    duplicate member { id } effects { plugin kind description code rule } errors { code field message }
  }
}"""

SIGN_IN_MEMBER = """
mutation($memberId: ID!, $ttl: Int) {
  createMemberToken(memberId: $memberId, ttlSeconds: $ttl) { token errors { code } }
}"""


def pytest_configure(config) -> None:
    # Fixed secrets for tests, so keyed hashes and tokens are reproducible and no secrets file is written.
    os.environ.setdefault("MEMBERKIT_TOKEN_SECRETS", "test-token-secret-new,test-token-secret-old")
    os.environ.setdefault("MEMBERKIT_PII_KEY", "test-pii-key")
    os.environ.setdefault("MEMBERKIT_WEBHOOK_KEYS", "test-webhook-key-new,test-webhook-key-old")
    os.environ.setdefault("MEMBERKIT_ENV", "test")  # webhooks may go to a receiver on 127.0.0.1
    config.addinivalue_line("markers", "postgres: needs PostgreSQL (MEMBERKIT_TEST_DATABASE_URL)")


def pytest_report_header(config):
    return f"memberkit database: {'PostgreSQL ' + TEST_DATABASE_URL if TEST_DATABASE_URL else 'SQLite'}"


def postgres_only(reason: str = "needs PostgreSQL (MEMBERKIT_TEST_DATABASE_URL)"):
    return pytest.mark.skipif(not TEST_DATABASE_URL, reason=reason)


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
        """A new key of `shop`: "secret" (the integrator's) or "publishable" (a storefront's)."""
        with self.runtime.db.write() as conn:
            return auth.create_key(conn, shop, kind)[1]

    def token(self, key: str, member_id: str, ttl: int = 3600) -> str:
        """A member token minted with the integrator's `key`, as a storefront gets one."""
        payload = self(SIGN_IN_MEMBER, {"memberId": member_id, "ttl": ttl}, key)["createMemberToken"]
        assert payload["errors"] == [], payload
        return payload["token"]

    def sign_up(self, key: str, external_id: str, **fields) -> str:
        """Sign a member up (``signUpMember``) and return their id; refusals fail the test."""
        payload = self(SIGN_UP, {"input": {"externalId": external_id, **fields}}, key)["signUpMember"]
        assert not payload["errors"], payload
        return payload["member"]["id"]

    def pay(self, key: str, member_id: str, order_id: str, total: int, lines: list[dict] | None = None,
            **fields) -> dict:
        """Record a paid order (``recordOrderPaid``); returns its payload (effects, errors, duplicate)."""
        variables = {"orderId": order_id, "memberId": member_id, "total": total, **fields}
        if lines is not None:
            variables["lines"] = lines
        return self(ORDER_PAID, {"input": variables}, key)["recordOrderPaid"]

    def refund(self, key: str, order_id: str, refund_id: str, amount: int, **fields) -> dict:
        """Record a refund (``recordOrderRefunded``); returns its payload."""
        variables = {"orderId": order_id, "refundId": refund_id, "amount": amount, **fields}
        return self(ORDER_REFUNDED, {"input": variables}, key)["recordOrderRefunded"]


class Client:
    """A GraphQL client with one credential: ``client(query, variables)`` returns data, ``.errors`` errors."""

    def __init__(self, api: Api, key: str):
        self.api, self.key = api, key

    def __call__(self, query: str, variables: dict | None = None) -> dict:
        return self.api(query, variables, self.key)

    def errors(self, query: str, variables: dict | None = None) -> list[dict]:
        return self.api.errors(query, variables, self.key)


class Programme:
    """A shop's programme under test: its runtime, clients by role, and the events a platform sends."""

    def __init__(self, runtime: Runtime, api: Api, clock_: MemberkitClock):
        self.runtime, self.api, self.clock = runtime, api, clock_
        self._keys: dict[tuple[str, str], str] = {}

    def _key(self, shop: str, kind: str) -> str:
        if (shop, kind) not in self._keys:
            self._keys[shop, kind] = self.api.key(shop, kind)
        return self._keys[shop, kind]

    def integrator(self, shop: str) -> Client:
        """The platform's integration: the shop's secret key."""
        return Client(self.api, self._key(shop, "secret"))

    def storefront(self, shop: str) -> Client:
        """A storefront without a signed-in member: the shop's publishable key."""
        return Client(self.api, self._key(shop, "publishable"))

    def member(self, shop: str, member_id: str) -> Client:
        """A storefront acting for one member: a member token minted by the integrator."""
        return Client(self.api, self.api.token(self._key(shop, "secret"), member_id))

    def sign_up(self, shop: str, external_id: str, **fields) -> str:
        return self.api.sign_up(self._key(shop, "secret"), external_id, **fields)

    def pay(self, shop: str, member_id: str, order_id: str, total: int, **fields) -> dict:
        return self.api.pay(self._key(shop, "secret"), member_id, order_id, total, **fields)

    def refund(self, shop: str, order_id: str, refund_id: str, amount: int, **fields) -> dict:
        return self.api.refund(self._key(shop, "secret"), order_id, refund_id, amount, **fields)

    def run_jobs(self, shop: str | None = None, force: bool = False) -> dict[str, Any]:
        """Run the due jobs (all with `force`), then the queued one-off jobs, as `memberkit jobs run` does;
        returns the runs by job name (a one-off job's by its kind)."""
        return {run.job: run for run in jobs.run_due(self.runtime, shop, force) + jobs.run_queued(self.runtime, shop)}


class MemberkitClock:
    """The clock hooks read: ``set(moment)`` stops it there, ``advance(**timedelta)`` moves it on."""

    def set(self, moment: datetime | None) -> None:
        clock.set_now(moment)

    def advance(self, **delta: float) -> datetime:
        moment = clock.now() + timedelta(**delta)
        clock.set_now(moment)
        return moment

    def now(self) -> datetime:
        return clock.now()


@pytest.fixture
def memberkit_clock():
    yield MemberkitClock()
    clock.set_now(None)


@pytest.fixture
def add_plugin(monkeypatch) -> Callable[[Any], plugin_registry.Plugin]:
    """Enable a plugin for this test by its declaration (or the module or object that holds one)."""

    def add(target: Any) -> plugin_registry.Plugin:
        plugin = plugin_registry.resolve(target)
        monkeypatch.setitem(plugin_registry.added, plugin.name, plugin)  # undone after the test
        return plugin

    return add


@pytest.fixture
def settings_file(tmp_path) -> Callable[..., Path]:
    """Write a settings text to a file and return its path."""

    def write(body: str, name: str = "plugins.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(body))
        return path

    return write


def reset_postgres(db: Database) -> None:
    """Empty every table of the PostgreSQL test database (its migrations stay applied)."""
    with db.engine.begin() as conn:
        tables = [r[0] for r in conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename <> 'alembic_version'"))]
        if tables:
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))


_sqlite_templates: dict[tuple[str, ...], Path] = {}


@pytest.fixture
def make_runtime(tmp_path, settings_file, tmp_path_factory) -> Callable[[str], Runtime]:
    """A Runtime on a freshly migrated, empty database for a settings text."""
    made: list[Runtime] = []

    def make(body: str) -> Runtime:
        settings = settings_module.load(settings_file(body, f"plugins-{len(made)}.toml"))
        if TEST_DATABASE_URL:
            runtime = Runtime(settings, Database(TEST_DATABASE_URL))
            migrate.upgrade(runtime)
            if not made:
                reset_postgres(runtime.db)
        else:  # a migrated file per plugin set, copied for each runtime
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
def make_api() -> Callable[..., Api]:
    """An HTTP client on the real app (jobs timer and plugins' services off: a test runs them itself) for a
    runtime."""
    clients: list[TestClient] = []

    def make(runtime: Runtime, development: bool = False) -> Api:
        client = TestClient(create_app(runtime, development=development, jobs_interval=0, services=False))
        client.__enter__()
        clients.append(client)
        return Api(client, runtime)

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def memberkit(make_runtime, make_api, add_plugin, memberkit_clock) -> Callable[..., Programme]:
    """``memberkit(settings_text, plugins=())``: the programme of those settings, running (see Programme);
    `plugins` are enabled for the test without being installed."""

    def start(settings: str, plugins: tuple | list = ()) -> Programme:
        for target in plugins:
            add_plugin(target)
        runtime = make_runtime(settings)
        return Programme(runtime, make_api(runtime), memberkit_clock)

    return start
