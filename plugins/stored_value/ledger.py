"""The stored-value ledger's operations. Every write locks the member's account row first (one upsert), then
touches lots and top-ups, so concurrent top-ups, spends, refunds and expiries of one member run one after
another and no lot goes below zero.

Rounding (no fen is created or lost): a proportional split of `amount` over principal P and bonus B takes
``amount * P // (P + B)`` from the principal and the rest from the bonus (never more than B, as amount <= P + B);
a top-up refund's bonus is cumulative, ``bonus * refunded_so_far // amount`` (floor), so the parts of partial
refunds add up to exactly the bonus once the whole principal is refunded.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import bindparam, select

from memberkit.plugin import Context, Effect, EffectKind, PaidOrder, Prepared, Refund, Refused, money, upsert
from memberkit.plugins.stored_value.models import (
    StoredValueAccount,
    StoredValueEntry,
    StoredValueHold,
    StoredValueLot,
    StoredValueOrder,
    StoredValueTopUp,
)
from memberkit.plugins.stored_value.settings import NAME, settings_of

NEVER = datetime(9999, 12, 31, tzinfo=UTC)
ACCOUNTS, ENTRIES, LOTS, TOP_UPS = (StoredValueAccount.__table__, StoredValueEntry.__table__,
                                    StoredValueLot.__table__, StoredValueTopUp.__table__)
HOLDS, ORDERS = StoredValueHold.__table__, StoredValueOrder.__table__
EVENT_TYPE = "stored_value.changed"
# The liability part (ctx.count) each kind of entry moves, with the sign that makes it positive.
PARTS = {"TOP_UP": ("Issued", 1), "TOP_UP_REFUND": ("Reversed", -1), "SPEND": ("Spent", -1),
         "RETURN": ("Returned", 1), "EXPIRE": ("Expired", -1)}
FIGURES = tuple(f"storedValue{kind}{part}" for kind in ("Principal", "Bonus")
                for part in ("Issued", "Returned", "Adjusted", "Spent", "Expired", "Reversed"))
MAX_AMOUNT = 10**12  # minor units: a top-up beyond this is a mistake, not money

_LOCK = Prepared(upsert(ACCOUNTS, values={"member_id": bindparam("m"), "shop": bindparam("shop")},
                        update={"shop": ACCOUNTS.c.shop},
                        returning=(ACCOUNTS.c.principal, ACCOUNTS.c.bonus, ACCOUNTS.c.held)))
_DUE_BONUS = Prepared(select(LOTS.c.id, LOTS.c.remaining, LOTS.c.top_up_id).where(
    LOTS.c.member_id == bindparam("m"), LOTS.c.state == "open", LOTS.c.kind == "bonus",
    LOTS.c.expires_at <= bindparam("now")).order_by(LOTS.c.expires_at, LOTS.c.id))


def bonus_expiry(ctx: Context, paid_at: datetime) -> datetime:
    """`bonus_valid_months` after the top-up, on the same local day and time (the month's last day where
    that month is shorter)."""
    months = settings_of(ctx).bonus_valid_months
    if months is None:
        return NEVER
    local = ctx.shop.local(paid_at)
    index = local.year * 12 + local.month - 1 + months
    year, month = divmod(index, 12)
    day = min(local.day, calendar.monthrange(year, month + 1)[1])
    return local.replace(year=year, month=month + 1, day=day).astimezone(UTC)


# ---------------------------------------------------------------- locking and expiry


@dataclass
class Locked:
    principal: int
    bonus: int
    held: int

    @property
    def balance(self) -> int:
        return self.principal + self.bonus - self.held


def lock(ctx: Context, member_id: str) -> Locked:
    """Lock the member's account (creating it) and expire the bonus lots that are due."""
    row = _LOCK.first(ctx.conn, {"m": member_id, "shop": ctx.shop.slug})
    locked = Locked(row.principal, row.bonus, row.held)
    due = _DUE_BONUS.all(ctx.conn, {"m": member_id, "now": ctx.now})
    for lot in due:
        ctx.conn.execute(LOTS.update().where(LOTS.c.id == lot.id).values(
            remaining=0, expired=LOTS.c.expired + lot.remaining, state="closed"))
        if lot.remaining:
            _entry(ctx, member_id, 0, -lot.remaining, "EXPIRE", "expiry", lot.top_up_id)
    gone = sum(lot.remaining for lot in due)
    if gone:
        ctx.conn.execute(ACCOUNTS.update().where(ACCOUNTS.c.member_id == member_id)
                         .values(bonus=ACCOUNTS.c.bonus - gone))
        locked.bonus -= gone
    return locked


def expire_bonuses(ctx: Context, limit: int = 500) -> str | None:
    """The job: expire every due bonus lot of the shop, member by member. A rerun finds nothing due."""
    members = ctx.conn.execute(select(LOTS.c.member_id).where(
        LOTS.c.shop == ctx.shop.slug, LOTS.c.state == "open", LOTS.c.kind == "bonus",
        LOTS.c.expires_at <= ctx.now).distinct().limit(limit)).scalars().all()
    for member_id in members:
        lock(ctx, member_id)
    return f"{len(members)} member(s) had bonus expire" if members else None


def _entry(ctx: Context, member_id: str, principal: int, bonus: int, reason: str, rule: str,
           reference: str | None) -> int:
    """One ledger entry, its figures and its outbound event (amounts and ids only, no personal data)."""
    entry_id = ctx.conn.execute(ENTRIES.insert().returning(ENTRIES.c.id).values(
        shop=ctx.shop.slug, member_id=member_id, principal=principal, bonus=bonus, reason=reason, rule=rule,
        reference=reference, event_id=ctx.event_id, created_at=ctx.now)).scalar_one()
    part, sign = PARTS[reason]
    ctx.count(f"storedValuePrincipal{part}", sign * principal)
    ctx.count(f"storedValueBonus{part}", sign * bonus)
    ctx.emit(EVENT_TYPE, member_id, principal=principal, bonus=bonus, reason=reason, rule=rule,
             reference=reference, entryId=entry_id)
    return entry_id


def _take(ctx: Context, lots, amount: int) -> list[list[int]]:
    """Take up to `amount` from `lots` in their order; returns [lot id, taken] of each lot taken from."""
    taken: list[list[int]] = []
    for lot in lots:
        take = min(lot.remaining, amount - sum(t for _, t in taken))
        if take <= 0:
            break
        ctx.conn.execute(LOTS.update().where(LOTS.c.id == lot.id).values(
            remaining=LOTS.c.remaining - take, state="closed" if take == lot.remaining else "open"))
        taken.append([lot.id, take])
    return taken


def _open_lots(ctx: Context, member_id: str, kind: str):
    """Principal oldest top-up first; bonus soonest to expire first."""
    return ctx.conn.execute(select(LOTS.c.id, LOTS.c.remaining).where(
        LOTS.c.member_id == member_id, LOTS.c.state == "open", LOTS.c.kind == kind)
        .order_by(LOTS.c.expires_at, LOTS.c.id)).all()


# ---------------------------------------------------------------- top-ups


def _check_amount(amount: int) -> None:
    if amount <= 0:
        raise Refused("NEGATIVE_AMOUNT", f"amount is {amount}: expected a positive amount in minor units", "amount")
    if amount > MAX_AMOUNT:
        raise Refused("INVALID_AMOUNT", f"amount is {amount}: expected at most {MAX_AMOUNT} minor units", "amount")


def top_up(ctx: Context, member_id: str, top_up_id: str, amount: int, paid_at: datetime) -> list[Effect]:
    """Credit the principal and the bonus of the largest rule reached, as two lots of the top-up."""
    _check_amount(amount)
    rule = settings_of(ctx).rule_for(amount)
    bonus = rule.bonus if rule else 0
    rule_name = f"bonus:{rule.at_least}" if rule else "none"
    lock(ctx, member_id)  # the caller's event is keyed on (shop, topUpId), as the top-up row is: never twice
    ctx.conn.execute(TOP_UPS.insert().values(shop=ctx.shop.slug, top_up_id=top_up_id, member_id=member_id,
                                             amount=amount, bonus=bonus, rule=rule_name, paid_at=paid_at))
    entry_id = _entry(ctx, member_id, amount, bonus, "TOP_UP", rule_name, top_up_id)
    lots = [{"kind": "principal", "amount": amount, "expires_at": NEVER}]
    if bonus:
        lots.append({"kind": "bonus", "amount": bonus, "expires_at": bonus_expiry(ctx, paid_at)})
    ctx.conn.execute(LOTS.insert(), [{**lot, "shop": ctx.shop.slug, "member_id": member_id, "top_up_id": top_up_id,
                                      "remaining": lot["amount"], "expired": 0, "state": "open"} for lot in lots])
    ctx.conn.execute(ACCOUNTS.update().where(ACCOUNTS.c.member_id == member_id).values(
        principal=ACCOUNTS.c.principal + amount, bonus=ACCOUNTS.c.bonus + bonus))
    effects = [Effect(NAME, "STORED_VALUE_TOPPED_UP", f"principal +{money(amount)} (top-up {top_up_id})",
                      rule="principal")]
    if rule:
        effects.append(Effect(NAME, "STORED_VALUE_BONUS", f"bonus +{money(bonus)} (top-ups of {money(rule.at_least)}"
                              f" or more, entry {entry_id})", rule=rule_name))
    return effects


# ---------------------------------------------------------------- refunds of top-ups


@dataclass(frozen=True)
class TopUpState:
    """One top-up and what is left of it: `amount` and `bonus` paid in and given, `refunded` principal and
    `taken_back` bonus so far, `principal_left` and `bonus_left` in its lots, `bonus_spent_unrecovered`: bonus
    spent by purchases that no refund has yet charged to the principal."""

    amount: int
    bonus: int
    refunded: int
    taken_back: int
    principal_left: int
    bonus_left: int
    bonus_spent_unrecovered: int

    def bonus_due(self, x: int) -> int:
        """The bonus a refund of `x` more principal takes back: cumulative floor, exact at the full refund."""
        return self.bonus * (self.refunded + x) // self.amount - self.taken_back

    def charge(self, x: int) -> int:
        """The spent bonus a refund of `x` takes back out of the principal (what the bonus lot cannot give;
        of the rest, bonus that lapsed unspent is not charged)."""
        return min(max(self.bonus_due(x) - self.bonus_left, 0), self.bonus_spent_unrecovered)

    def refundable(self) -> int:
        """The most principal a refund accepts now: the largest x with x + charge(x) <= principal_left,
        i.e. the unspent principal less the spent bonus the refund would have to take back. charge is
        non-decreasing in x, so a binary search finds it exactly."""
        low, high = 0, min(self.principal_left, self.amount - self.refunded)
        while low < high:
            mid = (low + high + 1) // 2
            if mid + self.charge(mid) <= self.principal_left:
                low = mid
            else:
                high = mid - 1
        return low


_LOT_COLUMNS = (LOTS.c.top_up_id, LOTS.c.kind, LOTS.c.remaining, LOTS.c.expired, LOTS.c.expires_at, LOTS.c.state)


def _top_up_state(ctx: Context, top_up, lots=None) -> TopUpState:
    """The top-up's state from its lots (read here unless given); a bonus lot due but not yet expired by a
    write or the job counts as expired."""
    if lots is None:
        lots = ctx.conn.execute(select(*_LOT_COLUMNS).where(
            LOTS.c.shop == ctx.shop.slug, LOTS.c.top_up_id == top_up.top_up_id)).all()
    kinds = {lot.kind: lot for lot in lots}
    bonus_lot = kinds.get("bonus")
    bonus_left = expired = 0
    if bonus_lot is not None:
        lapsed = bonus_lot.state == "open" and bonus_lot.expires_at <= ctx.now
        bonus_left = 0 if lapsed else bonus_lot.remaining
        expired = bonus_lot.expired + (bonus_lot.remaining if lapsed else 0)
    spent = top_up.bonus - bonus_left - expired - top_up.bonus_from_lot
    return TopUpState(top_up.amount, top_up.bonus, top_up.refunded, top_up.bonus_taken_back,
                      kinds["principal"].remaining, bonus_left, spent - top_up.bonus_charged)


_TOP_UP_COLUMNS = (TOP_UPS.c.top_up_id, TOP_UPS.c.member_id, TOP_UPS.c.amount, TOP_UPS.c.bonus, TOP_UPS.c.refunded,
                   TOP_UPS.c.bonus_taken_back, TOP_UPS.c.bonus_from_lot, TOP_UPS.c.bonus_charged)


def refund_top_up(ctx: Context, refund_id: str, top_up_id: str, amount: int) -> tuple[str, list[Effect]]:
    """Accept giving back `amount` of the top-up's principal (at most what is refundable), taking back the
    top-up's bonus in proportion: from its bonus lot first, then, for bonus already spent, out of the
    principal. Returns the member and the effects."""
    _check_amount(amount)
    top_up = ctx.conn.execute(select(*_TOP_UP_COLUMNS).where(
        TOP_UPS.c.shop == ctx.shop.slug, TOP_UPS.c.top_up_id == top_up_id)).first()
    if top_up is None:
        raise Refused("TOP_UP_NOT_FOUND", f"no top-up {top_up_id!r} in this shop", "topUpId")
    member_id = top_up.member_id
    lock(ctx, member_id)
    top_up = ctx.conn.execute(select(*_TOP_UP_COLUMNS).where(
        TOP_UPS.c.shop == ctx.shop.slug, TOP_UPS.c.top_up_id == top_up_id)).first()  # as of the lock
    state = _top_up_state(ctx, top_up)
    refundable = state.refundable()
    if amount > refundable:
        raise Refused("INSUFFICIENT_BALANCE", f"amount is {amount}: top-up {top_up_id} has {refundable} refundable "
                      "(unspent principal less the spent bonus a refund takes back)", "amount")
    due = state.bonus_due(amount)
    from_lot = min(due, state.bonus_left)
    charged = state.charge(amount)
    forgiven = due - from_lot - charged
    ctx.conn.execute(TOP_UPS.update().where(TOP_UPS.c.shop == ctx.shop.slug, TOP_UPS.c.top_up_id == top_up_id)
                     .values(refunded=TOP_UPS.c.refunded + amount, bonus_taken_back=TOP_UPS.c.bonus_taken_back + due,
                             bonus_from_lot=TOP_UPS.c.bonus_from_lot + from_lot,
                             bonus_charged=TOP_UPS.c.bonus_charged + charged))
    for kind, take in (("principal", amount + charged), ("bonus", from_lot)):
        if take:
            _take(ctx, ctx.conn.execute(select(LOTS.c.id, LOTS.c.remaining).where(
                LOTS.c.shop == ctx.shop.slug, LOTS.c.top_up_id == top_up_id, LOTS.c.kind == kind)).all(), take)
    ctx.conn.execute(ACCOUNTS.update().where(ACCOUNTS.c.member_id == member_id).values(
        principal=ACCOUNTS.c.principal - amount - charged, bonus=ACCOUNTS.c.bonus - from_lot))
    _entry(ctx, member_id, -(amount + charged), -from_lot, "TOP_UP_REFUND", "refund", refund_id)
    effects = [Effect(NAME, "STORED_VALUE_REFUNDED", f"principal -{money(amount)}: cash the platform returns "
                      f"(top-up {top_up_id})", rule="refund")]
    if from_lot:
        effects.append(Effect(NAME, "STORED_VALUE_BONUS_REVERSED", f"bonus -{money(from_lot)} taken back in "
                              "proportion", rule="refund"))
    if charged:
        effects.append(Effect(NAME, "STORED_VALUE_BONUS_CHARGED", f"principal -{money(charged)} kept for bonus "
                              "already spent", rule="refund"))
    if forgiven:
        effects.append(Effect(NAME, "STORED_VALUE_BONUS_LAPSED", f"{money(forgiven)} of the bonus to take back had "
                              "already expired", rule="refund"))
    return member_id, effects


# ---------------------------------------------------------------- spending


def split(settings, principal: int, bonus: int, amount: int) -> tuple[int, int]:
    """(principal, bonus) parts of spending `amount` <= principal + bonus, in the shop's order."""
    if settings.spend_order == "bonus_first":
        from_bonus = min(amount, bonus)
        return amount - from_bonus, from_bonus
    if settings.spend_order == "principal_first":
        from_principal = min(amount, principal)
        return from_principal, amount - from_principal
    from_principal = amount * principal // (principal + bonus) if principal + bonus else 0
    return from_principal, amount - from_principal


def _spend(ctx: Context, member_id: str, locked: Locked, amount: int, released: int = 0) -> dict[str, list]:
    """Take `amount` <= the balance from the lots, principal and bonus in the shop's order, and `released`
    (a hold being captured) out of ``held``; returns the lots taken from, by kind."""
    from_principal, from_bonus = split(settings_of(ctx), locked.principal, locked.bonus, amount)
    taken = {kind: _take(ctx, _open_lots(ctx, member_id, kind), part)
             for kind, part in (("principal", from_principal), ("bonus", from_bonus))}
    ctx.conn.execute(ACCOUNTS.update().where(ACCOUNTS.c.member_id == member_id).values(
        principal=ACCOUNTS.c.principal - from_principal, bonus=ACCOUNTS.c.bonus - from_bonus,
        held=ACCOUNTS.c.held - released))
    return taken


def _sums(taken: dict[str, list]) -> tuple[int, int]:
    return sum(t for _, t in taken["principal"]), sum(t for _, t in taken["bonus"])


def spend(ctx: Context, member_id: str, amount: int, reference: str, rule: str = "order") -> tuple[int, int]:
    """Spend `amount` of the balance, principal and bonus in the shop's order; refused with
    INSUFFICIENT_BALANCE beyond the balance. Returns the (principal, bonus) taken."""
    _check_amount(amount)
    locked = lock(ctx, member_id)
    if amount > locked.balance:
        raise Refused("INSUFFICIENT_BALANCE", f"amount is {amount}: the balance is {locked.balance}", "amount")
    from_principal, from_bonus = _sums(_spend(ctx, member_id, locked, amount))
    _entry(ctx, member_id, -from_principal, -from_bonus, "SPEND", rule, reference)
    return from_principal, from_bonus


# ---------------------------------------------------------------- checkouts and their orders


def hold(ctx: Context, member_id: str, checkout_id: str, amount: int) -> None:
    """Hold `amount` for a checkout: counted in ``held`` (out of the balance, still in the lots) under the
    account's lock, so checkouts racing for the last of a balance run one after another and never hold more
    than it. Refuses with INSUFFICIENT_BALANCE."""
    locked = lock(ctx, member_id)
    if amount > locked.balance:
        raise Refused("INSUFFICIENT_BALANCE", f"storedValueToUse is {amount}: the balance is "
                      f"{max(locked.balance, 0)} (what other checkouts hold is not available)", "storedValueToUse")
    ctx.conn.execute(ACCOUNTS.update().where(ACCOUNTS.c.member_id == member_id)
                     .values(held=ACCOUNTS.c.held + amount))
    ctx.conn.execute(HOLDS.insert().values(checkout_id=checkout_id, shop=ctx.shop.slug, member_id=member_id,
                                           amount=amount, status="HELD", created_at=ctx.now))


def release_hold(ctx: Context, checkout_id: str) -> None:
    """Give a checkout's hold back to the balance (HELD -> RELEASED, one conditional UPDATE); the row stays,
    so an order paying the checkout late can still capture what is there then."""
    row = ctx.conn.execute(
        HOLDS.update().where(HOLDS.c.checkout_id == checkout_id, HOLDS.c.shop == ctx.shop.slug,
                             HOLDS.c.status == "HELD")
        .values(status="RELEASED", settled_at=ctx.now).returning(HOLDS.c.member_id, HOLDS.c.amount)).first()
    if row is not None:
        ctx.conn.execute(ACCOUNTS.update().where(ACCOUNTS.c.member_id == row.member_id)
                         .values(held=ACCOUNTS.c.held - row.amount))


def capture(ctx: Context, checkout_id: str, order: PaidOrder) -> tuple[PaidOrder, list[Effect]]:
    """The order paying `checkout_id` spends what the checkout held for its member (one read where it held
    nothing). A hold given back meanwhile (the checkout lapsed or was released) captures what the balance has
    now, and a CONFLICT STORED_VALUE_SHORTFALL says what the platform must still collect. The lots taken are
    kept per order for its refunds; the order comes back with what it paid in stored value and in bonus."""
    row = ctx.conn.execute(select(HOLDS.c.amount, HOLDS.c.status).where(
        HOLDS.c.checkout_id == checkout_id, HOLDS.c.shop == ctx.shop.slug, HOLDS.c.member_id == order.member_id,
        HOLDS.c.status.in_(("HELD", "RELEASED"))).with_for_update()).first()
    if row is None:
        return order, []
    locked = lock(ctx, order.member_id)
    released = row.amount if row.status == "HELD" else 0
    locked.held -= released
    ctx.conn.execute(HOLDS.update().where(HOLDS.c.checkout_id == checkout_id).values(
        status="CAPTURED", settled_at=ctx.now, order_id=order.order_id))
    amount = max(min(row.amount, locked.balance), 0)
    taken = _spend(ctx, order.member_id, locked, amount, released)
    principal, bonus = _sums(taken)
    effects = []
    if amount:
        ctx.conn.execute(ORDERS.insert().values(
            shop=ctx.shop.slug, order_id=order.order_id, member_id=order.member_id, total=order.total,
            principal=principal, bonus=bonus, lots=taken, returned_principal=0, returned_bonus=0))
        _entry(ctx, order.member_id, -principal, -bonus, "SPEND", "order", order.order_id)
        effects.append(Effect(NAME, "STORED_VALUE_SPENT", f"stored value -{money(amount)} (principal "
                              f"{money(principal)}, bonus {money(bonus)}; checkout {checkout_id})", rule="order"))
    if amount < row.amount:
        effects.append(Effect(NAME, EffectKind.CONFLICT, f"{money(row.amount - amount)} of the "
                              f"{money(row.amount)} the checkout meant to take from the balance was no longer "
                              "there: the platform must still collect it", code="STORED_VALUE_SHORTFALL",
                              rule="order"))
    return replace(order, stored_value=amount, stored_value_bonus=bonus), effects


def _fill(lots: list[list[int]], amount: int) -> list[int]:
    """`amount` spread over `lots` ([id, taken]) in the order they were taken, each up to what it gave."""
    parts = []
    for _, taken in lots:
        parts.append(min(taken, amount))
        amount -= parts[-1]
    return parts


def return_for_refund(ctx: Context, refund: Refund) -> list[Effect]:
    """A refund of an order that spent stored value returns its share of what is refunded: cumulative, so
    partial refunds add up to exactly what the order took, principal and bonus in its parts, to the lots it
    took them from (a bonus lot past its expiry lapses again). The rest of the refund is cash."""
    row = ctx.conn.execute(select(ORDERS).where(ORDERS.c.shop == ctx.shop.slug,
                                                ORDERS.c.order_id == refund.order.order_id)).first()
    if row is None:
        return []
    lock(ctx, row.member_id)
    taken = row.principal + row.bonus
    target = taken * min(refund.refunded_total, row.total) // row.total if row.total else taken
    principal = row.principal * target // taken
    parts = {"principal": (row.returned_principal, principal), "bonus": (row.returned_bonus, target - principal)}
    for kind, (before, after) in parts.items():
        for (lot_id, _), old, new in zip(row.lots[kind], _fill(row.lots[kind], before),
                                         _fill(row.lots[kind], after), strict=True):
            if new > old:
                ctx.conn.execute(LOTS.update().where(LOTS.c.id == lot_id).values(
                    remaining=LOTS.c.remaining + (new - old), state="open"))
    back_principal, back_bonus = principal - row.returned_principal, target - principal - row.returned_bonus
    cash = refund.amount - back_principal - back_bonus
    effects = [Effect(NAME, "STORED_VALUE_CASH_REFUND", f"{money(cash)} of the refund is cash the platform "
                      "returns", rule="refund")]
    if back_principal or back_bonus:
        ctx.conn.execute(ORDERS.update().where(ORDERS.c.shop == ctx.shop.slug,
                                               ORDERS.c.order_id == row.order_id)
                         .values(returned_principal=principal, returned_bonus=target - principal))
        ctx.conn.execute(ACCOUNTS.update().where(ACCOUNTS.c.member_id == row.member_id).values(
            principal=ACCOUNTS.c.principal + back_principal, bonus=ACCOUNTS.c.bonus + back_bonus))
        _entry(ctx, row.member_id, back_principal, back_bonus, "RETURN", "refund", refund.refund_id)
        effects.insert(0, Effect(NAME, "STORED_VALUE_RETURNED", f"stored value +{money(back_principal + back_bonus)}"
                                 f" back to the balance (principal {money(back_principal)}, bonus "
                                 f"{money(back_bonus)}; order {row.order_id})", rule="refund"))
    return effects


# ---------------------------------------------------------------- reads (never write)


@dataclass(frozen=True)
class AccountView:
    principal: int
    bonus: int
    held: int
    refundable: int

    @property
    def balance(self) -> int:
        return self.principal + self.bonus - self.held


def account_view(ctx: Context, member_id: str) -> AccountView | None:
    """The account as of now: bonus lots due but not yet expired by a write or the job count as expired."""
    row = ctx.conn.execute(select(ACCOUNTS.c.principal, ACCOUNTS.c.bonus, ACCOUNTS.c.held).where(
        ACCOUNTS.c.member_id == member_id, ACCOUNTS.c.shop == ctx.shop.slug)).first()
    if row is None:
        return AccountView(0, 0, 0, 0)
    lapsed = sum(lot.remaining for lot in _DUE_BONUS.all(ctx.conn, {"m": member_id, "now": ctx.now}))
    top_ups = ctx.conn.execute(select(*_TOP_UP_COLUMNS).where(
        TOP_UPS.c.shop == ctx.shop.slug, TOP_UPS.c.member_id == member_id,
        TOP_UPS.c.refunded < TOP_UPS.c.amount)).all()
    lots: dict[str, list] = {}
    for lot in ctx.conn.execute(select(*_LOT_COLUMNS).where(  # one read for every top-up's lots
            LOTS.c.member_id == member_id, LOTS.c.top_up_id.in_([t.top_up_id for t in top_ups]))):
        lots.setdefault(lot.top_up_id, []).append(lot)
    refundable = sum(_top_up_state(ctx, t, lots[t.top_up_id]).refundable() for t in top_ups)
    return AccountView(row.principal, row.bonus - lapsed, row.held, refundable)


_HISTORY_PAGE = (select(ENTRIES.c.id, ENTRIES.c.principal, ENTRIES.c.bonus, ENTRIES.c.reason, ENTRIES.c.rule,
                        ENTRIES.c.reference, ENTRIES.c.created_at)
                 .where(ENTRIES.c.member_id == bindparam("m"), ENTRIES.c.shop == bindparam("shop"))
                 .order_by(ENTRIES.c.id.desc()).limit(bindparam("n")))
_HISTORY = Prepared(_HISTORY_PAGE)
_HISTORY_BEFORE = Prepared(_HISTORY_PAGE.where(ENTRIES.c.id < bindparam("before")))


def history(ctx: Context, member_id: str, first: int, before_id: int | None):
    """Newest first, keyset-paged on (member_id, id)."""
    params = {"m": member_id, "shop": ctx.shop.slug, "n": first + 1}
    if before_id is None:
        return _HISTORY.all(ctx.conn, params)
    return _HISTORY_BEFORE.all(ctx.conn, {**params, "before": before_id})
