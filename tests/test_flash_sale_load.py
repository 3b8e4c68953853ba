"""Flash sales under real concurrency (PostgreSQL): `memberkit serve --workers 4`, 600 reservations fired at
once over HTTP by 200 members at a sale of 100 units with a limit of 3. Never oversold, nobody past the limit,
every refusal with a code; after releases and the expiry job the stock adds up again."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, insert, select

from memberkit import jobs
from memberkit.core import clock
from memberkit.core.models import Member
from memberkit.plugins.flash_sale.models import FlashSaleMember, FlashSaleReservation, FlashSaleSale
from memberkit.schema import auth
from tests.conftest import TEST_DATABASE_URL, memberkit_serve, postgres_only

pytestmark = postgres_only()

SETTINGS = """
[shops.alpha]
name = "Alpha"
currency = "CNY"
timezone = "Asia/Shanghai"
plugins = ["flash_sale"]

[shops.alpha.settings.flash_sale]
hold_minutes = 15
"""
CREATE = """mutation($input: FlashSaleInput!) { createFlashSale(input: $input) { flashSale { id } errors { code } } }"""
RESERVE = """mutation($input: ReserveFlashSaleInput!) { reserveFlashSale(input: $input) {
  duplicate reservation { id quantity status } errors { code message } } }"""
RELEASE = """mutation($id: ID!) { releaseFlashReservation(id: $id) { reservation { status } errors { code } } }"""
MEMBERS, STOCK, LIMIT, ATTEMPTS = 200, 100, 3, 600


@pytest.fixture
def server(tmp_path, settings_file, make_runtime):
    config = settings_file(SETTINGS)
    runtime = make_runtime(SETTINGS)  # migrated and emptied
    env = {**os.environ, "MEMBERKIT_CONFIG": str(config), "MEMBERKIT_SECRETS_FILE": str(tmp_path / "secret.key"),
           "MEMBERKIT_DATABASE_URL": TEST_DATABASE_URL}
    with memberkit_serve(env, 4, tmp_path / "server.log") as base:
        with runtime.db.write() as conn:
            key = auth.create_key(conn, "alpha", "secret")[1]
        yield base, key, runtime


def gql(client: httpx.Client, query: str, variables: dict, token: str) -> dict:
    response = client.post("/graphql", json={"query": query, "variables": variables},
                           headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert not body.get("errors"), body
    return body["data"]


def check_stock(runtime, sale_id: str) -> tuple[int, int, int]:
    with runtime.db.read() as conn:
        sale = conn.execute(select(FlashSaleSale.stock, FlashSaleSale.held, FlashSaleSale.sold)
                            .where(FlashSaleSale.id == sale_id)).one()
        held = conn.execute(select(func.coalesce(func.sum(FlashSaleReservation.quantity), 0)).where(
            FlashSaleReservation.sale_id == sale_id, FlashSaleReservation.status == "HELD")).scalar()
        per_member = conn.execute(select(FlashSaleMember.member_id, FlashSaleMember.held, FlashSaleMember.bought)
                                  .where(FlashSaleMember.sale_id == sale_id)).all()
        by_reservations = dict(conn.execute(
            select(FlashSaleReservation.member_id, func.sum(FlashSaleReservation.quantity))
            .where(FlashSaleReservation.sale_id == sale_id, FlashSaleReservation.status == "HELD")
            .group_by(FlashSaleReservation.member_id)).all())
    assert sale.held + sale.sold <= sale.stock and sale.held == held
    assert all(m.held + m.bought <= LIMIT for m in per_member)
    assert {m.member_id: m.held for m in per_member if m.held} == by_reservations
    return sale.stock, sale.held, sale.sold


def test_600_concurrent_reservations_never_oversell(server):
    base, key, runtime = server
    now = clock.now()
    members = [f"mem_load{n:020d}" for n in range(MEMBERS)]
    with runtime.db.write() as conn:  # members straight into core's table: fast, and not what is measured
        conn.execute(insert(Member), [{"id": m, "shop": "alpha", "external_id": m, "joined_at": now, "tags": [],
                                       "created_at": now} for m in members])
    tokens = [auth.mint_member_token("alpha", m, 3600, "key_load_test")[0] for m in members]
    with httpx.Client(base_url=base) as client:
        sale = gql(client, CREATE, {"input": {
            "sku": "FLASH-1", "title": "Tea set", "price": 8910, "startsAt": (now - timedelta(minutes=1)).isoformat(),
            "endsAt": (now + timedelta(hours=2)).isoformat(), "stock": STOCK, "perMemberLimit": LIMIT,
            "membersOnly": True}}, key)["createFlashSale"]
    assert sale["errors"] == []
    sale_id = sale["flashSale"]["id"]

    local = __import__("threading").local()

    def reserve(n: int) -> tuple[int, dict]:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=base)
        member = n % MEMBERS
        quantity = 1 + n % 2  # 1 or 2 units: some members reach the limit, some go past it
        payload = gql(client, RESERVE, {"input": {"saleId": sale_id, "quantity": quantity,
                                                  "idempotencyKey": f"k-{n}"}}, tokens[member])
        return member, payload["reserveFlashSale"]

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(reserve, range(ATTEMPTS)))
    elapsed = time.monotonic() - started

    won = [(m, r) for m, r in results if not r["errors"]]
    lost = [r for _, r in results if r["errors"]]
    assert sum(r["reservation"]["quantity"] for _, r in won) == STOCK  # exactly the stock, not one unit more
    assert all(len(r["errors"]) == 1 and r["errors"][0]["code"] in {"SOLD_OUT", "LIMIT_EXCEEDED"} and
               r["reservation"] is None for r in lost)
    per_member: dict[int, int] = {}
    for member, r in won:
        per_member[member] = per_member.get(member, 0) + r["reservation"]["quantity"]
    assert max(per_member.values()) <= LIMIT
    assert check_stock(runtime, sale_id) == (STOCK, STOCK, 0)
    assert elapsed < 40, f"{ATTEMPTS} reservations took {elapsed:.1f}s"

    # Release a few over HTTP, expire the rest with the job (run here, against the same database, later).
    with httpx.Client(base_url=base) as client:
        for member, r in won[:10]:
            released = gql(client, RELEASE, {"id": r["reservation"]["id"]}, tokens[member])
            assert released["releaseFlashReservation"]["reservation"]["status"] == "RELEASED"
    released_units = sum(r["reservation"]["quantity"] for _, r in won[:10])
    assert check_stock(runtime, sale_id) == (STOCK, STOCK - released_units, 0)
    with clock.frozen(now + timedelta(minutes=16)):
        runs = [r for r in jobs.run_due(runtime, "alpha", force=True) if r.job == "flash_sale.expire_reservations"]
        again = [r for r in jobs.run_due(runtime, "alpha", force=True) if r.job == "flash_sale.expire_reservations"]
    assert runs[0].result == f"{len(won) - 10} reservations expired, {STOCK - released_units} units returned"
    assert again[0].result is None  # nothing left to expire
    stock_, held, sold = check_stock(runtime, sale_id)
    assert (held, sold) == (0, 0) and stock_ - held - sold == STOCK  # held + sold + remaining == stock
