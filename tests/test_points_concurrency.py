"""Points under real concurrency (PostgreSQL): `memberkit serve --workers 2`, many HTTP connections at once.

A redemption never spends points twice and never drives a balance below zero, whatever the concurrency
(RULES.md section 2): concurrent rewards succeed exactly as often as the balance covers, and concurrent
points-as-cash orders never spend more than there is, each reporting what was missing as a CONFLICT.
"""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import func, select

from memberkit.core.db import Database
from memberkit.core.models import Coupon
from memberkit.plugins.points.models import PointsAccount, PointsEntry, PointsLot
from memberkit.plugins.webhooks.models import WebhookEvent
from tests.conftest import MEMBERKIT, ORDER_PAID, ROOT, SIGN_UP, TEST_DATABASE_URL, memberkit_serve, postgres_only

pytestmark = postgres_only()

DEMO = (ROOT / "plugins.toml").read_text()
ADJUST = """mutation($input: AdjustPointsInput!) { adjustPoints(input: $input) { errors { code message } } }"""
SESSION = """mutation($id: ID!) {
  createMemberToken(memberId: $id, ttlSeconds: 3600) { token errors { code } } }"""
REDEEM = """mutation($input: RedeemRewardInput!) { redeemReward(input: $input) {
  pointsSpent duplicate coupon { code } errors { code message } } }"""
COST = 500  # reward coupon-10 of the demo shop


@pytest.fixture
def demo_server(tmp_path, settings_file, make_runtime):
    """`memberkit serve --workers 2` on the demo shop, on the test PostgreSQL database (migrated, emptied)."""
    config = settings_file(DEMO)
    make_runtime(DEMO)
    env = {**os.environ, "MEMBERKIT_CONFIG": str(config), "MEMBERKIT_SECRETS_FILE": str(tmp_path / "secret.key"),
           "MEMBERKIT_DATABASE_URL": TEST_DATABASE_URL}
    with memberkit_serve(env, 2, tmp_path / "server.log") as base:
        key = subprocess.run([MEMBERKIT, "keys", "create", "--shop", "demo"], env=env, capture_output=True, text=True,
                             check=True).stdout.strip().splitlines()[-1]
        db = Database(TEST_DATABASE_URL)
        yield base, key, db
        db.dispose()


def gql(client: httpx.Client, query: str, variables: dict, token: str) -> dict:
    response = client.post("/graphql", json={"query": query, "variables": variables},
                           headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert not body.get("errors"), body
    return body["data"]


def member_with_points(base: str, key: str, external_id: str, lots: list[int]) -> str:
    """A member whose balance is several lots (one manual adjustment each)."""
    with httpx.Client(base_url=base) as client:
        member_id = gql(client, SIGN_UP, {"input": {"externalId": external_id}}, key)["signUpMember"]["member"]["id"]
        for n, points in enumerate(lots):
            payload = gql(client, ADJUST, {"input": {"memberId": member_id, "delta": points, "reason": "seed",
                                                     "idempotencyKey": f"{external_id}-seed-{n}"}}, key)
            assert payload["adjustPoints"]["errors"] == []
    return member_id


def check_ledger(db: Database, member_id: str) -> PointsAccount:
    with db.read() as conn:
        account = conn.execute(select(PointsAccount.__table__).where(PointsAccount.member_id == member_id)).one()
        lots = conn.execute(select(PointsLot.__table__).where(PointsLot.member_id == member_id)).all()
        deltas = conn.execute(select(func.coalesce(func.sum(PointsEntry.delta), 0))
                              .where(PointsEntry.member_id == member_id)).scalar()
    assert all(0 <= lot.remaining <= lot.amount for lot in lots)
    assert account.balance == sum(lot.remaining for lot in lots if lot.state == "open") - account.debt
    assert account.pending == sum(lot.remaining for lot in lots if lot.state == "pending")
    assert account.balance >= 0 and account.debt == 0
    assert deltas == account.balance + account.pending
    return account


def test_concurrent_rewards_spend_exactly_what_the_balance_covers(demo_server):
    base, key, db = demo_server
    lots = [1200, 3000, 750, 4000, 2373, 1100]  # 12,423 points: 24 rewards of 500, 423 left
    balance = sum(lots)
    member_id = member_with_points(base, key, "racer", lots)
    with httpx.Client(base_url=base) as client:
        token = gql(client, SESSION, {"id": member_id}, key)["createMemberToken"]["token"]
    attempts = 60

    def redeem(n: int) -> dict:
        with httpx.Client(base_url=base) as client:  # its own connection
            return gql(client, REDEEM, {"input": {"rewardId": "coupon-10", "idempotencyKey": f"r-{n}"}},
                       token)["redeemReward"]

    with ThreadPoolExecutor(max_workers=25) as pool:
        results = list(pool.map(redeem, range(attempts)))

    won = [r for r in results if not r["errors"]]
    lost = [r for r in results if r["errors"]]
    assert len(won) == balance // COST
    assert all(r["pointsSpent"] == COST and r["coupon"] and not r["duplicate"] for r in won)
    assert all([e["code"] for e in r["errors"]] == ["INSUFFICIENT_POINTS"] and r["coupon"] is None for r in lost)
    assert len({r["coupon"]["code"] for r in won}) == len(won)
    account = check_ledger(db, member_id)
    assert account.balance == balance - len(won) * COST == balance % COST
    with db.read() as conn:
        coupons = conn.execute(select(func.count()).select_from(Coupon).where(Coupon.member_id == member_id)).scalar()
        spends = conn.execute(select(func.count()).select_from(PointsEntry).where(
            PointsEntry.member_id == member_id, PointsEntry.reason == "SPEND")).scalar()
    assert spends == len(won)
    # The sign-up may give a welcome coupon in some shops: count what the rewards issued.
    with db.read() as conn:
        reward_coupons = conn.execute(select(func.count()).select_from(Coupon).where(
            Coupon.member_id == member_id, Coupon.source == "points:reward:coupon-10")).scalar()
    assert reward_coupons == len(won) <= coupons

    # Every outbound event of the member has its own sequence number, in commit order, with no gap.
    with db.read() as conn:
        sequences = conn.execute(select(WebhookEvent.sequence).where(WebhookEvent.member_id == member_id)
                                 .order_by(WebhookEvent.id)).scalars().all()
    assert sorted(sequences) == list(range(1, len(sequences) + 1)) and len(sequences) > 2 * len(won)

    # A retry of a won redemption is a duplicate and spends nothing more.
    again = redeem(results.index(won[0]))
    assert again["duplicate"] and again["errors"] == []
    assert check_ledger(db, member_id).balance == balance % COST


def test_concurrent_points_as_cash_orders_never_spend_more_than_the_balance(demo_server):
    base, key, db = demo_server
    lots = [2000, 1500, 1777]
    balance = sum(lots)  # 5,277
    member_id = member_with_points(base, key, "cash", lots)
    orders, redeemed = 50, 300  # 15,000 points asked for, 5,277 there

    def pay(n: int) -> dict:
        with httpx.Client(base_url=base) as client:
            # 0.99 yuan: earns nothing, so only spending changes the balance
            order = {"orderId": f"cash-{n}", "memberId": member_id, "total": 99, "pointsRedeemed": redeemed}
            return gql(client, ORDER_PAID, {"input": order}, key)["recordOrderPaid"]

    with ThreadPoolExecutor(max_workers=25) as pool:
        results = list(pool.map(pay, range(orders)))

    assert all(r["errors"] == [] and not r["duplicate"] for r in results)
    spent_total = 0
    for r in results:
        spent = sum(int(e["description"].split()[1].removeprefix("-"))
                    for e in r["effects"] if e["kind"] == "POINTS_SPENT")
        conflicts = [e for e in r["effects"] if e["kind"] == "CONFLICT"]
        assert 0 <= spent <= redeemed
        if spent < redeemed:
            assert [e["code"] for e in conflicts] == ["INSUFFICIENT_POINTS"]
            assert conflicts[0]["description"].startswith(f"{redeemed - spent} of {redeemed} points")
        else:
            assert conflicts == []
        spent_total += spent
    assert spent_total == min(balance, orders * redeemed)  # all that was there, and not one point more
    account = check_ledger(db, member_id)
    assert account.balance == balance - spent_total == 0
    with db.read() as conn:
        entries = conn.execute(select(func.coalesce(-func.sum(PointsEntry.delta), 0)).where(
            PointsEntry.member_id == member_id, PointsEntry.reason == "SPEND")).scalar()
    assert entries == spent_total
