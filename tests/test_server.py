"""`memberkit serve` as a user runs it: a real server process, real HTTP, concurrent requests."""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import func, select

from memberkit.core.db import Database
from memberkit.core.models import Order
from tests.conftest import MEMBERKIT, ORDER_PAID, SIGN_UP, TEST_DATABASE_URL, TWO_SHOPS, memberkit_serve

PHONE, EMAIL = "13912345678", "secret.person@example.com"


@pytest.fixture
def server(tmp_path, settings_file, make_runtime):
    """A `memberkit serve` process: a new SQLite file (serve migrates it), or PostgreSQL after `migrate`."""
    config = settings_file(TWO_SHOPS)
    env = {**os.environ, "MEMBERKIT_CONFIG": str(config), "MEMBERKIT_SECRETS_FILE": str(tmp_path / "secret.key")}
    if TEST_DATABASE_URL:
        make_runtime(TWO_SHOPS)  # migrated and emptied
        env["MEMBERKIT_DATABASE_URL"] = TEST_DATABASE_URL
        workers = "2"
    else:
        env["MEMBERKIT_DATABASE_URL"] = f"sqlite:///{tmp_path}/new.db"
        workers = "1"
    with memberkit_serve(env, workers, tmp_path / "server.log") as base:

        def cli(*args: str) -> str:
            done = subprocess.run([MEMBERKIT, *args], env=env, capture_output=True, text=True, check=True)
            return done.stdout

        yield base, cli, env, tmp_path / "server.log"


def post(base: str, key: str, query: str, variables: dict) -> dict:
    response = httpx.post(base + "/graphql", json={"query": query, "variables": variables},
                          headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_serve_answers_health_and_graphql_without_logging_personal_data(server):
    base, cli, env, log = server
    assert httpx.get(base + "/healthz").json()["status"] == "ok"
    key = cli("keys", "create", "--shop", "alpha").strip().splitlines()[-1]
    signed = post(base, key, SIGN_UP, {"input": {"externalId": "u-1", "phone": PHONE, "email": EMAIL}})
    assert signed["signUpMember"]["errors"] == []
    unauthenticated = httpx.post(base + "/graphql", json={"query": "{ shop { slug } }"})
    assert unauthenticated.status_code == 401
    text = log.read_text()
    assert PHONE not in text and EMAIL not in text and key not in text


def test_concurrent_requests_record_each_order_once(server):
    base, cli, env, log = server
    key = cli("keys", "create", "--shop", "alpha").strip().splitlines()[-1]
    member_id = post(base, key, SIGN_UP, {"input": {"externalId": "u-1"}})["signUpMember"]["member"]["id"]

    def pay(n: int) -> dict:
        order = {"orderId": f"o-{n % 10}", "memberId": member_id, "total": 1000 + n % 10}
        return post(base, key, ORDER_PAID, {"input": order})["recordOrderPaid"]

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(pay, range(40)))  # each of 10 orders sent 4 times, all at once
    assert all(r["errors"] == [] for r in results)
    assert sum(not r["duplicate"] for r in results) == 10
    db = Database(env["MEMBERKIT_DATABASE_URL"])
    with db.read() as conn:
        assert conn.execute(select(func.count()).select_from(Order)).scalar() == 10
    db.dispose()
