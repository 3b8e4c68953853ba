"""Random sequences of top-ups, spends, top-up refunds and time passing, against a model of the lots:
the balance is the sum of the lots, principal and bonus are each conserved (what came in is what is held,
spent, refunded, taken back or expired), and the account matches the model to the fen."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from memberkit.core import clock, intake, members
from memberkit.plugins.stored_value import ledger
from memberkit.plugins.stored_value.ledger import ACCOUNTS, ENTRIES, LOTS, TopUpState
from tests.conftest import ROOT
from tests.test_points_ledger import reset

DEMO = (ROOT / "plugins.toml").read_text()
START = datetime(2026, 3, 10, 4, 0, tzinfo=UTC)  # day 10: a year later is the same local day
RULES = [(200000, 30000), (100000, 12000), (50000, 5000)]


@dataclass
class Lot:
    kind: str
    top_up: str
    remaining: int
    expires_at: datetime | None  # None: principal, never


@dataclass
class TopUp:
    amount: int
    bonus: int
    refunded: int = 0
    taken_back: int = 0
    from_lot: int = 0
    charged: int = 0


@dataclass
class Model:
    lots: list[Lot] = field(default_factory=list)
    top_ups: dict[str, TopUp] = field(default_factory=dict)
    came_in: list[int] = field(default_factory=lambda: [0, 0])  # principal, bonus
    went_out: list[int] = field(default_factory=lambda: [0, 0])
    spent_bonus: dict[str, int] = field(default_factory=dict)  # by purchases, per top-up

    def expire(self, now: datetime) -> None:
        for lot in self.lots:
            if lot.expires_at is not None and lot.expires_at <= now and lot.remaining:
                self.went_out[1] += lot.remaining
                lot.remaining = 0

    def held(self, kind: str) -> int:
        return sum(lot.remaining for lot in self.lots if lot.kind == kind)

    def take(self, kind: str, amount: int) -> None:
        lots = [lot for lot in self.lots if lot.kind == kind]
        if kind == "bonus":
            lots.sort(key=lambda lot: lot.expires_at)  # stable: creation order among equal expiries
        for lot in lots:
            take = min(lot.remaining, amount)
            lot.remaining -= take
            amount -= take
        assert amount == 0

    def state(self, top_up_id: str) -> TopUpState:
        t = self.top_ups[top_up_id]
        lots = {lot.kind: lot for lot in self.lots if lot.top_up == top_up_id}
        bonus_left = lots["bonus"].remaining if "bonus" in lots else 0
        return TopUpState(t.amount, t.bonus, t.refunded, t.taken_back, lots["principal"].remaining, bonus_left,
                          self.spent_bonus.get(top_up_id, 0) - t.charged)


OPERATIONS = st.lists(st.one_of(
    st.tuples(st.just("top_up"), st.sampled_from([1, 333, 49999, 50000, 77777, 100000, 150001, 200000])),
    st.tuples(st.just("spend"), st.integers(1, 120000)),
    st.tuples(st.just("refund"), st.integers(0, 10), st.integers(1, 100)),
    st.tuples(st.just("advance"), st.integers(1, 200)),
), max_size=14)


def event(runtime, kind: str, key: str, handle):
    return intake.run_event(runtime, runtime.shop("demo"), kind, key, {}, handle)


@pytest.fixture
def runtime(make_runtime):
    return make_runtime(DEMO)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(operations=OPERATIONS)
def test_random_sequences_keep_principal_and_bonus_exact(runtime, operations):
    reset(runtime)
    clock.set_now(START)
    try:
        member_id = members.sign_up_member(runtime, runtime.shop("demo"), None, external_id="m-1").member_id
        model, serial = Model(), 0
        for op in operations:
            serial += 1
            model.expire(clock.now())
            if op[0] == "top_up":
                amount = op[1]
                bonus = next((b for at_least, b in RULES if amount >= at_least), 0)
                result = event(runtime, "t", f"t-{serial}", lambda ctx, n=serial, a=amount: intake.EventResult(
                    member_id, ledger.top_up(ctx, member_id, f"t-{n}", a, ctx.now)))
                assert not result.errors
                model.top_ups[f"t-{serial}"] = TopUp(amount, bonus)
                model.lots.append(Lot("principal", f"t-{serial}", amount, None))
                if bonus:
                    now = clock.now()
                    model.lots.append(Lot("bonus", f"t-{serial}", bonus, now.replace(year=now.year + 1)))
                model.came_in[0] += amount
                model.came_in[1] += bonus
            elif op[0] == "spend":
                principal, bonus = model.held("principal"), model.held("bonus")
                amount = op[1]
                result = event(runtime, "s", f"s-{serial}", lambda ctx, a=amount: intake.EventResult(
                    member_id, data={"taken": ledger.spend(ctx, member_id, a, "order")}))
                if amount > principal + bonus:
                    assert [e.code for e in result.errors] == ["INSUFFICIENT_BALANCE"]
                    continue
                from_principal = amount * principal // (principal + bonus)
                assert tuple(result.data["taken"]) == (from_principal, amount - from_principal)
                before = {lot.top_up: lot.remaining for lot in model.lots if lot.kind == "bonus"}
                model.take("principal", from_principal)
                model.take("bonus", amount - from_principal)
                for lot in model.lots:
                    if lot.kind == "bonus":
                        model.spent_bonus[lot.top_up] = model.spent_bonus.get(lot.top_up, 0) + \
                            before[lot.top_up] - lot.remaining
                model.went_out[0] += from_principal
                model.went_out[1] += amount - from_principal
            elif op[0] == "refund":
                if not model.top_ups:
                    continue
                top_up_id = sorted(model.top_ups)[op[1] % len(model.top_ups)]
                state = model.state(top_up_id)
                amount = max(1, (state.refundable() or state.principal_left + 1) * op[2] // 100)
                result = event(runtime, "r", f"r-{serial}", lambda ctx, n=serial, t=top_up_id, a=amount:
                               intake.EventResult(*ledger.refund_top_up(ctx, f"r-{n}", t, a)))
                if amount > state.refundable():
                    assert [e.code for e in result.errors] == ["INSUFFICIENT_BALANCE"]
                    continue
                assert not result.errors
                due = state.bonus_due(amount)
                from_lot, charged = min(due, state.bonus_left), state.charge(amount)
                t = model.top_ups[top_up_id]
                t.refunded += amount
                t.taken_back += due
                t.from_lot += from_lot
                t.charged += charged
                for lot in model.lots:
                    if lot.top_up == top_up_id:
                        lot.remaining -= amount + charged if lot.kind == "principal" else from_lot
                model.went_out[0] += amount + charged
                model.went_out[1] += from_lot
            else:
                clock.set_now(clock.now() + timedelta(days=op[1]))
                model.expire(clock.now())
            check(runtime, member_id, model)
    finally:
        clock.set_now(None)


def check(runtime, member_id: str, model: Model) -> None:
    with runtime.db.write() as conn:  # settle due lots as any write would, then compare
        ledger.lock(runtime.context(runtime.shop("demo"), conn), member_id)
    with runtime.db.read() as conn:
        account = conn.execute(select(ACCOUNTS).where(ACCOUNTS.c.member_id == member_id)).one()
        lots = conn.execute(select(LOTS).where(LOTS.c.member_id == member_id)).all()
        entries = conn.execute(select(func.coalesce(func.sum(ENTRIES.c.principal), 0),
                                      func.coalesce(func.sum(ENTRIES.c.bonus), 0))
                               .where(ENTRIES.c.member_id == member_id)).one()
    assert all(0 <= lot.remaining <= lot.amount for lot in lots)
    for n, kind in enumerate(("principal", "bonus")):
        in_lots = sum(lot.remaining for lot in lots if lot.kind == kind and lot.state == "open")
        assert getattr(account, kind) == in_lots == model.held(kind) == entries[n]
        assert model.came_in[n] - model.went_out[n] == in_lots  # conservation
