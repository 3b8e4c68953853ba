"""Stored value under real concurrency (PostgreSQL): `memberkit serve --workers 2`, many HTTP connections.

Every change locks the member's account row first, so concurrent refunds of one top-up accept exactly what
is refundable and concurrent top-ups credit exactly what was paid in, principal and bonus apart, with no lot
below zero; 50 checkouts racing for one balance that affords 10 hold exactly 10.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import func, select

from memberkit.core.db import Database
from memberkit.plugins.stored_value.models import StoredValueAccount, StoredValueEntry, StoredValueLot
from tests import test_points_concurrency
from tests.conftest import ORDER_PAID, SIGN_UP, postgres_only
from tests.test_points_concurrency import gql

pytestmark = postgres_only()
demo_server = test_points_concurrency.demo_server  # the same server fixture

TOP_UP = """mutation($input: TopUpInput!) { recordTopUp(input: $input) { duplicate errors { code } } }"""
REFUND = """mutation($input: TopUpRefundInput!) { refundTopUp(input: $input) { duplicate errors { code } } }"""
START = """mutation($input: CheckoutInput!) { startCheckout(input: $input) {
  errors { code } checkout { id quote { storedValue { amount } } } } }"""
AT = "2026-03-10T02:00:00Z"


def check_ledger(db: Database, member_id: str):
    """principal and bonus are the sums of the open lots and of the entries; no lot below zero."""
    with db.read() as conn:
        account = conn.execute(select(StoredValueAccount.__table__)
                               .where(StoredValueAccount.member_id == member_id)).one()
        lots = conn.execute(select(StoredValueLot.__table__).where(StoredValueLot.member_id == member_id)).all()
        principal, bonus = conn.execute(select(func.coalesce(func.sum(StoredValueEntry.principal), 0),
                                               func.coalesce(func.sum(StoredValueEntry.bonus), 0))
                                        .where(StoredValueEntry.member_id == member_id)).one()
    assert all(0 <= lot.remaining <= lot.amount for lot in lots)
    for kind, held in (("principal", account.principal), ("bonus", account.bonus)):
        assert held == sum(lot.remaining for lot in lots if lot.kind == kind and lot.state == "open")
    assert (principal, bonus) == (account.principal, account.bonus)
    return account


def test_concurrent_refunds_of_a_top_up_accept_exactly_what_is_refundable(demo_server):
    base, key, db = demo_server
    with httpx.Client(base_url=base) as client:
        member_id = gql(client, SIGN_UP, {"input": {"externalId": "racer"}}, key)["signUpMember"]["member"]["id"]
        assert gql(client, TOP_UP, {"input": {"topUpId": "t-1", "memberId": member_id, "amount": 100000,
                                              "paidAt": AT}}, key)["recordTopUp"]["errors"] == []

    def refund(n: int) -> dict:
        with httpx.Client(base_url=base) as client:  # its own connection
            return gql(client, REFUND, {"input": {"refundId": f"r-{n}", "topUpId": "t-1", "amount": 10000,
                                                  "refundedAt": AT}}, key)["refundTopUp"]

    with ThreadPoolExecutor(max_workers=25) as pool:
        results = list(pool.map(refund, range(50)))
    won = [r for r in results if not r["errors"]]
    assert len(won) == 10  # 100,000 of principal affords ten refunds of 10,000
    assert all([e["code"] for e in r["errors"]] == ["INSUFFICIENT_BALANCE"] for r in results if r["errors"])
    account = check_ledger(db, member_id)
    assert (account.principal, account.bonus) == (0, 0)  # each took back 1,200 of the 12,000 bonus


def test_concurrent_top_ups_credit_principal_and_bonus_exactly(demo_server):
    base, key, db = demo_server
    with httpx.Client(base_url=base) as client:
        member_id = gql(client, SIGN_UP, {"input": {"externalId": "payer"}}, key)["signUpMember"]["member"]["id"]

    def top_up(n: int) -> dict:
        with httpx.Client(base_url=base) as client:
            return gql(client, TOP_UP, {"input": {"topUpId": f"t-{n % 20}", "memberId": member_id, "amount": 50000,
                                                  "paidAt": AT}}, key)["recordTopUp"]

    with ThreadPoolExecutor(max_workers=25) as pool:
        results = list(pool.map(top_up, range(40)))  # each of 20 top-ups sent twice
    assert all(r["errors"] == [] for r in results) and sum(r["duplicate"] for r in results) == 20
    account = check_ledger(db, member_id)
    assert (account.principal, account.bonus) == (20 * 50000, 20 * 5000)


def test_checkouts_racing_for_one_balance_hold_exactly_what_it_affords(demo_server):
    base, key, db = demo_server
    with httpx.Client(base_url=base) as client:
        member_id = gql(client, SIGN_UP, {"input": {"externalId": "spender"}}, key)["signUpMember"]["member"]["id"]
        assert gql(client, TOP_UP, {"input": {"topUpId": "t-1", "memberId": member_id, "amount": 100000,
                                              "paidAt": AT}}, key)["recordTopUp"]["errors"] == []
        # a first order paid already: no first-order gift, which one open checkout at a time may hold
        gql(client, ORDER_PAID, {"input": {"orderId": "o-first", "memberId": member_id, "total": 100}}, key)

    def start(n: int) -> dict:
        with httpx.Client(base_url=base) as client:
            return gql(client, START, {"input": {
                "memberId": member_id, "idempotencyKey": f"k-{n}", "storedValueToUse": 11200,
                "lines": [{"sku": "tee", "quantity": 1, "unitPrice": 20000}]}}, key)["startCheckout"]

    with ThreadPoolExecutor(max_workers=25) as pool:
        results = list(pool.map(start, range(50)))
    held = [r for r in results if not r["errors"]]
    assert len(held) == 10  # 100,000 + 12,000 of bonus affords ten holds of 11,200
    assert all(r["checkout"]["quote"]["storedValue"] == {"amount": 11200} for r in held)
    assert all([e["code"] for e in r["errors"]] == ["INSUFFICIENT_BALANCE"] for r in results if r["errors"])
    account = check_ledger(db, member_id)
    assert (account.principal, account.bonus, account.held) == (100000, 12000, 112000)
    with httpx.Client(base_url=base) as client:  # every hold captured: the balance is spent to the fen
        for n, r in enumerate(held):
            gql(client, ORDER_PAID, {"input": {"orderId": f"o-{n}", "memberId": member_id, "total": 20000,
                                               "checkoutId": r["checkout"]["id"]}}, key)
    account = check_ledger(db, member_id)
    assert (account.principal, account.bonus, account.held) == (0, 0, 0)
