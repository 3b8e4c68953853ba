"""The points ledger under random sequences of events: after every step the account agrees with its lots and
its entries, a repeated event changes nothing, and refunds take back exactly what the refunded money earned.

Invariant (plugins/points/ledger.py), per member:
  balance == sum(remaining of open lots) - debt,  pending == sum(remaining of pending lots),
  0 <= remaining <= amount for every lot, debt >= 0, shortfall >= 0,
  balance >= 0 and debt == 0 unless the shop allows a negative balance (then shortfall == 0),
  debt > 0 only while no open lot has points left (a debt is what was taken beyond the open lots),
and the entries add up:
  sum(delta of all entries) == balance + pending   (a shortfall is not an entry: it was never taken),
  lifetime_earned == sum of the positive entries.
Refunds, per order (granted = its EARN entries, taken = -its REFUND entries):
  target = granted if fully refunded else granted * refunded // total,
  taken == target where a negative balance is allowed; else sum(taken) + shortfall == sum(target).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select, text
from sqlmodel import SQLModel

from memberkit import jobs
from memberkit.core import clock, intake, members, orders
from memberkit.core.types import Redemption
from memberkit.plugins.points import ledger
from memberkit.plugins.points.models import PointsAccount, PointsEntry, PointsLot
from memberkit.testing import reset_postgres
from tests.conftest import ROOT, TEST_DATABASE_URL

DEMO = (ROOT / "plugins.toml").read_text()
START = datetime(2025, 1, 15, 4, 0, tzinfo=UTC)
ACCOUNTS, ENTRIES, LOTS = PointsAccount.__table__, PointsEntry.__table__, PointsLot.__table__


def demo_settings(allow_negative: bool, pending_days: int) -> str:
    body = DEMO.replace("allow_negative_balance = false", f"allow_negative_balance = {str(allow_negative).lower()}")
    body = body.replace("pending_days = 0", f"pending_days = {pending_days}")
    assert body.count(f"allow_negative_balance = {str(allow_negative).lower()}") == 1
    assert body.count(f"pending_days = {pending_days}") == 1
    return body


# ---------------------------------------------------------------- operations

MEMBER = st.integers(0, 1)
pay = st.tuples(st.just("pay"), MEMBER, st.sampled_from([0, 99, 4999, 12800, 50000, 100000, 999900, 1500000]),
                st.sampled_from([0, 0, 0, 100, 700, 5000]))
refund = st.tuples(st.just("refund"), st.integers(0, 50), st.sampled_from(["full", 10, 33, 50, 90]))
redeem = st.tuples(st.just("redeem"), MEMBER, st.sampled_from([500, 1000, 1, 2999]))
adjust = st.tuples(st.just("adjust"), MEMBER, st.sampled_from([-5000, -700, -100, -1, 1, 250, 3000]))
advance = st.tuples(st.just("advance"), st.sampled_from([0, 1, 8, 31, 200, 365, 400]))
repeat = st.tuples(st.just("repeat"), st.integers(0, 50))
OPERATIONS = st.lists(st.one_of(pay, pay, refund, redeem, adjust, advance, repeat), min_size=1, max_size=25)


@dataclass
class Model:
    members: list[str]
    orders: list[tuple[str, int]] = field(default_factory=list)  # (order id, total) of orders with total > 0
    refunded: dict[str, int] = field(default_factory=dict)
    done: list = field(default_factory=list)  # callables that replay an event that succeeded exactly
    serial: int = 0

    def next_id(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}-{self.serial}"


def adjust_event(runtime, shop, member_id: str, delta: int, key: str):
    """What the adjustPoints mutation runs (plugins/points/graphql.py), as one event."""

    def handle(ctx):
        if delta > 0:
            locked = ledger.lock(ctx, member_id)
            ledger.earn(ctx, member_id, delta, "ADJUST", "manual", locked, actor="test", note="hand")
        elif ledger.settings_of(ctx).allow_negative_balance:
            ledger.take_back(ctx, member_id, -delta, "ADJUST", "manual", None, "test", "hand")
        else:
            ledger.spend(ctx, member_id, -delta, "ADJUST", "manual", actor="test", note="hand")
        return intake.EventResult(member_id)

    return intake.run_event(runtime, shop, "points.adjust", key, {"member_id": member_id, "delta": delta}, handle)


def redeem_event(runtime, shop, member_id: str, cost: int, key: str):
    """A reward through the `redemption` hook, as one event (refused: rolled back)."""

    def handle(ctx):
        spent = ctx.hook.redemption(ctx=ctx, member_id=member_id,
                                    redemption=Redemption("points", cost, "reward", key)).spent
        assert spent == cost
        return intake.EventResult(member_id, data={"spent": spent})

    return intake.run_event(runtime, shop, "points.redeem_reward", key, {"cost": cost}, handle)


# ---------------------------------------------------------------- checks


def snapshot(runtime) -> tuple:
    with runtime.db.read() as conn:
        return (
            sorted(tuple(r) for r in conn.execute(select(ACCOUNTS))),
            sorted(tuple(r) for r in conn.execute(select(LOTS))),
            conn.execute(select(func.count(), func.coalesce(func.max(ENTRIES.c.id), 0)).select_from(ENTRIES)).one(),
        )


def check_invariant(runtime, shop, model: Model, allow_negative: bool) -> None:
    with runtime.db.read() as conn:
        for member_id in model.members:
            account = conn.execute(select(ACCOUNTS).where(ACCOUNTS.c.member_id == member_id)).first()
            lots = conn.execute(select(LOTS).where(LOTS.c.member_id == member_id)).all()
            entries = conn.execute(select(ENTRIES.c.delta).where(ENTRIES.c.member_id == member_id)).scalars().all()
            if account is None:
                assert not lots and not entries
                continue
            open_ = sum(lot.remaining for lot in lots if lot.state == "open")
            pending = sum(lot.remaining for lot in lots if lot.state == "pending")
            where = f"member {member_id}: {account._asdict()}"
            assert all(0 <= lot.remaining <= lot.amount for lot in lots), where
            assert {lot.state for lot in lots} <= {"open", "pending", "closed"}, where
            assert account.balance == open_ - account.debt, where
            assert account.pending == pending, where
            assert account.debt >= 0 and account.shortfall >= 0, where
            assert account.debt == 0 or open_ == 0, f"debt owed while open lots hold points: {where}"
            if allow_negative:
                assert account.shortfall == 0, where
            else:
                assert account.balance >= 0 and account.debt == 0, where
            assert sum(entries) == account.balance + account.pending, where
            assert account.lifetime_earned == sum(d for d in entries if d > 0), where
            # next_due_at never lies later than a lot's maturing or expiry: writes trust it to skip the look
            due = [lot.expires_at for lot in lots if lot.state == "open"] + \
                [lot.available_at for lot in lots if lot.state == "pending"]
            assert account.next_due_at is None or not due or account.next_due_at <= min(due), where

        # Refunds: each order gave back what its refunded money earned; a shortfall is what was not there.
        shortfall = conn.execute(select(func.coalesce(func.sum(ACCOUNTS.c.shortfall), 0))).scalar()
        targets = taken_total = 0
        for order_id, total in model.orders:
            granted, taken = conn.execute(select(
                func.coalesce(func.sum(ENTRIES.c.delta).filter(ENTRIES.c.reason == "EARN"), 0),
                func.coalesce(-func.sum(ENTRIES.c.delta).filter(ENTRIES.c.reason == "REFUND"), 0))
                .where(ENTRIES.c.order_id == order_id)).one()
            refunded = model.refunded.get(order_id, 0)
            target = granted if refunded >= total else granted * refunded // total
            assert 0 <= taken <= target, (order_id, total, refunded, granted, taken)
            if allow_negative:
                assert taken == target, (order_id, total, refunded, granted, taken)
            targets, taken_total = targets + target, taken_total + taken
        assert taken_total + shortfall == targets, (taken_total, shortfall, targets)


# ---------------------------------------------------------------- the test


def reset(runtime) -> None:
    if TEST_DATABASE_URL:
        reset_postgres(runtime.db)
        return
    with runtime.db.write() as conn:
        present = {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))}
        for table in reversed(SQLModel.metadata.sorted_tables):
            if table.name in present and table.name != "alembic_version":
                conn.execute(delete(table))


@pytest.fixture(params=[False, True], ids=["shortfall", "negative-allowed"])
def points_runtime(request, make_runtime):
    allow_negative = request.param
    # The negative variant also holds purchase points pending for a week, so lots mature under the job.
    runtime = make_runtime(demo_settings(allow_negative, 7 if allow_negative else 0))
    return runtime, allow_negative


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(operations=OPERATIONS)
def test_random_ledger_sequences_keep_the_invariant(points_runtime, operations):
    runtime, allow_negative = points_runtime
    shop = runtime.shop("demo")
    reset(runtime)
    clock.set_now(START)
    signed_up = [members.sign_up_member(runtime, shop, None, external_id=f"m-{n}").member_id for n in range(2)]
    model = Model(signed_up)
    check_invariant(runtime, shop, model, allow_negative)
    try:
        for op in operations:
            step(runtime, shop, model, op, allow_negative)
            check_invariant(runtime, shop, model, allow_negative)
    finally:
        clock.set_now(None)


def step(runtime, shop, model: Model, op: tuple, allow_negative: bool) -> None:
    kind = op[0]
    if kind == "pay":
        _, who, total, points = op
        order_id = model.next_id("o")
        args = dict(order_id=order_id, member_id=model.members[who], total=total, points_redeemed=points or None)
        before = available(runtime, shop, model.members[who])
        result = orders.record_order_paid(runtime, shop, None, **args)
        assert not result.errors, result
        if total:
            model.orders.append((order_id, total))
        if points:
            spent = sum(int(e.description.split()[1].removeprefix("-"))
                        for e in result.effects if e.kind == "POINTS_SPENT")
            missing = [e for e in result.effects if e.kind == "CONFLICT"]
            assert spent == min(points, max(before, 0))
            assert bool(missing) == (spent < points)
            if missing:
                assert missing[0].code == "INSUFFICIENT_POINTS"
                assert missing[0].description.startswith(f"{points - spent} of {points} points")
        model.done.append(lambda: orders.record_order_paid(runtime, shop, None, **args))
    elif kind == "refund":
        _, pick, portion = op
        if not model.orders:
            return
        order_id, total = model.orders[pick % len(model.orders)]
        left = total - model.refunded.get(order_id, 0)
        amount = left if portion == "full" else max(1, left * portion // 100)
        args = dict(order_id=order_id, refund_id=model.next_id("r"), amount=max(amount, 1))
        result = orders.record_order_refunded(runtime, shop, None, **args)
        if left == 0:
            assert [e.code for e in result.errors] == ["REFUND_EXCEEDS_ORDER"]
            return
        assert not result.errors, result
        model.refunded[order_id] = model.refunded.get(order_id, 0) + amount
        shortfalls = [e for e in result.effects if e.kind == "POINTS_SHORTFALL"]
        assert not (allow_negative and shortfalls)
        model.done.append(lambda: orders.record_order_refunded(runtime, shop, None, **args))
    elif kind == "redeem":
        _, who, cost = op
        member_id, key = model.members[who], model.next_id("redeem")
        before = available(runtime, shop, member_id)
        result = redeem_event(runtime, shop, member_id, cost, key)
        if before >= cost:
            assert not result.errors and result.data["spent"] == cost
            model.done.append(lambda: redeem_event(runtime, shop, member_id, cost, key))
        else:
            assert [e.code for e in result.errors] == ["INSUFFICIENT_POINTS"]
    elif kind == "adjust":
        _, who, delta = op
        member_id, key = model.members[who], model.next_id("adj")
        before = available(runtime, shop, member_id)
        result = adjust_event(runtime, shop, member_id, delta, key)
        if delta < 0 and not allow_negative and before < -delta:
            assert [e.code for e in result.errors] == ["INSUFFICIENT_POINTS"]
        else:
            assert not result.errors, result
            model.done.append(lambda: adjust_event(runtime, shop, member_id, delta, key))
    elif kind == "advance":
        clock.set_now(clock.now() + timedelta(days=op[1]))
        # What a read shows before the job must be what the account holds after it.
        views = [available_view(runtime, shop, m) for m in model.members]
        runs = jobs.run_due(runtime, "demo", force=True)
        assert all(r.status == "done" for r in runs), runs
        assert [available_view(runtime, shop, m) for m in model.members] == views
        with runtime.db.read() as conn:
            now = clock.now()
            assert not conn.execute(select(LOTS.c.id).where(
                ((LOTS.c.state == "open") & (LOTS.c.expires_at <= now))
                | ((LOTS.c.state == "pending") & (LOTS.c.available_at <= now)))).first()
    elif kind == "repeat":
        if not model.done:
            return
        before = snapshot(runtime)
        result = model.done[op[1] % len(model.done)]()
        assert result.duplicate and not result.errors, result
        assert snapshot(runtime) == before


def available_view(runtime, shop, member_id: str) -> tuple[int, int]:
    with runtime.reading(shop) as ctx:
        view = ledger.account_view(ctx, member_id)
    return view.balance, view.pending


def available(runtime, shop, member_id: str) -> int:
    return available_view(runtime, shop, member_id)[0]
