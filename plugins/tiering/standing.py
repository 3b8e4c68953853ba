"""A member's standing: what their spend earns, which tier they hold, and every change of it.

Two tiers are kept per member (``tiering_member``): ``tier_code``, the tier qualification gave (an order
raises it at once; a refund corrects it; evaluation lowers it one step after the grace period), and
``override_code``, a tier set by hand or bought, which wins while it stands: until its expiry passes, or
until qualification raises ``tier_code`` above it. The effective tier is the one other plugins and the
storefront see; each change of it is a row of ``tiering_history`` with its reason.
"""

from __future__ import annotations

import calendar
import enum
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, func, insert, select, update

from memberkit.plugin import Context, Effect, Prepared, TierInfo, among, upsert
from memberkit.plugins.tiering.models import TierChange, TierMember, TierOrder
from memberkit.plugins.tiering.settings import NAME, TieringSettings, TierSettings, settings_of

MEMBERS, ORDERS, HISTORY = TierMember.__table__, TierOrder.__table__, TierChange.__table__


class TierChangeReason(str, enum.Enum):
    """Why a tier changed: stored in the history, served by GraphQL, sent in ``tier.changed`` and told to
    other plugins by ``tier_changed`` as the member's name (ORDER, ...)."""

    ORDER = "order"
    REFUND = "refund"
    EVALUATION = "evaluation"
    MANUAL = "manual"
    PAID_UPGRADE = "paid_upgrade"
    IMPORTED = "imported"


TIER_MEMBERS = "tierMembers:"  # a level per tier, counted as members enter (+1) and leave (-1) it


def by_code(s: TieringSettings, code: str | None) -> TierSettings | None:
    return next((t for t in s.tiers if t.code == code), None) if code else None


def tier_info(tier: TierSettings) -> TierInfo:
    return TierInfo(tier.code, tier.name, tier.rank, tier.points_multiplier_permille, tier.discount_percent,
                    tuple(tier.benefits))


def next_tier(s: TieringSettings, tier: TierSettings) -> TierSettings | None:
    return next((t for t in s.tiers if t.rank > tier.rank), None)  # tiers are kept in rank order


def lower_tier(s: TieringSettings, tier: TierSettings) -> TierSettings:
    lower = [t for t in s.tiers if t.rank < tier.rank]
    return lower[-1] if lower else tier


def qualifies(s: TieringSettings, tier: TierSettings, spend: int, orders: int) -> bool:
    by_spend, by_orders = spend >= tier.min_spend, orders >= tier.min_orders
    if s.qualify_by == "spend":
        return by_spend
    if s.qualify_by == "orders":
        return by_orders
    if s.qualify_by == "spend_and_orders":
        return by_spend and by_orders
    # spend_or_orders: a threshold of 0 means the tier is not reached that way (unless it needs nothing)
    if not tier.min_spend and not tier.min_orders:
        return True
    return bool(tier.min_spend and by_spend) or bool(tier.min_orders and by_orders)


def earned(s: TieringSettings, spend: int, orders: int) -> TierSettings:
    """The highest tier the spend and orders reach (the lowest tier needs nothing)."""
    return [t for t in s.tiers if qualifies(s, t, spend, orders)][-1]


# ---------------------------------------------------------------- windows


def add_months(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def window_start(ctx: Context, s: TieringSettings) -> datetime | None:
    """Start of the rolling window: midnight, in the shop's timezone, N months before today. None: lifetime."""
    if not s.window_months:
        return None
    today = ctx.shop.local(ctx.now).replace(hour=0, minute=0, second=0, microsecond=0)
    start = add_months(today, -s.window_months)
    return start.replace(tzinfo=today.tzinfo).astimezone(UTC)


def _window_query(ctx: Context, start: datetime):
    return (select(ORDERS.c.member_id,
                   func.coalesce(func.sum(ORDERS.c.total - ORDERS.c.refunded), 0),
                   func.coalesce(func.sum(case((ORDERS.c.refunded < ORDERS.c.total, 1), else_=0)), 0))
            .where(ORDERS.c.shop == ctx.shop.slug, ORDERS.c.paid_at >= start)
            .group_by(ORDERS.c.member_id))


def qualifying(ctx: Context, s: TieringSettings, member_id: str, row: Any | None) -> tuple[int, int]:
    """Qualifying (spend, orders) of a member, net of refunds, over the shop's window."""
    start = window_start(ctx, s)
    if start is None:
        return (row.spend, row.orders) if row is not None else (0, 0)
    found = ctx.conn.execute(_window_query(ctx, start).where(ORDERS.c.member_id == member_id)).first()
    return (int(found[1]), int(found[2])) if found else (0, 0)


def window_totals(ctx: Context, s: TieringSettings) -> dict[str, tuple[int, int]] | None:
    """Every member's (spend, orders) in the window, in one query; None for a lifetime window."""
    start = window_start(ctx, s)
    if start is None:
        return None
    return {r[0]: (int(r[1]), int(r[2])) for r in ctx.conn.execute(_window_query(ctx, start))}


# ---------------------------------------------------------------- state


@dataclass(frozen=True)
class State:
    tier_code: str
    override_code: str | None = None
    override_until: datetime | None = None
    override_reason: str | None = None
    grace_since: datetime | None = None
    refund_pending: bool = False

    @classmethod
    def of(cls, row: Any) -> State:
        return cls(row.tier_code, row.override_code, row.override_until, row.override_reason, row.grace_since,
                   row.refund_pending)

    def values(self) -> dict[str, Any]:
        return dict(self.__dict__)


def override_stands(s: TieringSettings, state: State, now: datetime) -> TierSettings | None:
    tier = by_code(s, state.override_code)
    if tier is None or (state.override_until is not None and state.override_until <= now):
        return None
    return tier


def standing_tier(s: TieringSettings, state: State, row: Any | None = None) -> TierSettings:
    """The qualified tier; a tier the shop no longer offers reads as what the lifetime counters earn."""
    tier = by_code(s, state.tier_code)
    if tier is None:
        tier = earned(s, row.spend, row.orders) if row is not None else s.tiers[0]
    return tier


def effective(s: TieringSettings, state: State, now: datetime, row: Any | None = None) -> TierSettings:
    return override_stands(s, state, now) or standing_tier(s, state, row)


def current(s: TieringSettings, row: Any | None, now: datetime) -> TierSettings:
    """The tier a member's stored row gives now (the effective one); the lowest for a member without a row."""
    return effective(s, State.of(row), now, row) if row is not None else s.tiers[0]


_COLUMNS = [MEMBERS.c[name] for name in ("member_id", "tier_code", "spend", "orders", "override_code",
                                         "override_until", "override_reason", "grace_since", "refund_pending",
                                         "updated_at")]


# The statements of every order, compiled once per dialect and run at driver level.
_LOAD = Prepared(select(*_COLUMNS).where(MEMBERS.c.shop == bindparam("p_shop"),
                                         MEMBERS.c.member_id == bindparam("p_member")))


_LOCK = Prepared(upsert(MEMBERS, update=lambda excluded: {
    "spend": MEMBERS.c.spend + excluded.spend, "orders": MEMBERS.c.orders + excluded.orders,
    "updated_at": excluded.updated_at}, returning=tuple(_COLUMNS)))
ADD_ORDER = Prepared(ORDERS.insert())


# What the effective tier is made of (see tier_of): many members' tiers are read from these columns only.
_TIER_COLUMNS = [MEMBERS.c[name] for name in ("member_id", "tier_code", "spend", "orders", "override_code",
                                              "override_until")]


def load_rows(ctx: Context, member_ids: list[str], chunk: int = 1000) -> dict[str, Any]:
    """Many members' rows as far as their tiers go, a chunk of ids per statement; members without a row are
    absent."""
    rows: dict[str, Any] = {}
    for start in range(0, len(member_ids), chunk):
        rows.update((row.member_id, row) for row in ctx.conn.execute(select(*_TIER_COLUMNS).where(
            MEMBERS.c.shop == ctx.shop.slug, among(ctx.conn, MEMBERS.c.member_id, member_ids[start:start + chunk])))
            .all())
    return rows


def tier_of(s: TieringSettings, row: Any | None, now: datetime) -> TierSettings:
    """What current() gives, for a row of load_rows."""
    if row is None:
        return s.tiers[0]
    return effective(s, State(row.tier_code, row.override_code, row.override_until), now, row)


def load_row(ctx: Context, member_id: str):
    return _LOAD.first(ctx.conn, {"p_shop": ctx.shop.slug, "p_member": member_id})


def lock_row(ctx: Context, member_id: str, spend: int = 0, orders: int = 0):
    """Add `spend` and `orders` to the member's counters (creating the row at the lowest tier) and return
    it, locked for this transaction: one upsert, so two first orders of a member cannot both insert."""
    return _LOCK.first(ctx.conn, {
        "member_id": member_id, "shop": ctx.shop.slug, "tier_code": settings_of(ctx).tiers[0].code, "spend": spend,
        "orders": orders, "refund_pending": False, "updated_at": ctx.now})


def save(ctx: Context, member_id: str, old: State, new: State, expected_updated_at: datetime | None = None) -> bool:
    """Write what changed of a member's state; with `expected_updated_at`, only if nobody wrote meanwhile."""
    changed = {k: v for k, v in new.values().items() if getattr(old, k) != v}
    if not changed:
        return True
    query = update(MEMBERS).where(MEMBERS.c.shop == ctx.shop.slug, MEMBERS.c.member_id == member_id)
    if expected_updated_at is not None:
        query = query.where(MEMBERS.c.updated_at == expected_updated_at)
    return ctx.conn.execute(query.values(updated_at=ctx.now, **changed)).rowcount == 1


def record(ctx: Context, member_id: str, before: TierSettings | None, after: TierSettings,
           reason: TierChangeReason, reference: str | None, note: str, rule: str) -> Effect:
    """Store one tier change in the history, tell other plugins and the platform, and say it as an effect."""
    changed = before is None or before.code != after.code
    if changed:
        count_change(ctx, member_id, before, after)
    ctx.conn.execute(insert(HISTORY).values(
        shop=ctx.shop.slug, member_id=member_id, from_code=before.code if before else None, to_code=after.code,
        reason=reason.value, reference=reference, note=note[:500], created_at=ctx.now))
    if changed:
        ctx.hook.tier_changed(ctx=ctx, member_id=member_id, before=tier_info(before) if before else None,
                              after=tier_info(after), reason=reason.name)
        ctx.emit("tier.changed", member_id, **{"from": before.code if before else None}, to=after.code,
                 fromRank=before.rank if before else None, toRank=after.rank,
                 direction="UP" if before is None or after.rank > before.rank else "DOWN",
                 reason=reason.name, reference=reference, rule=rule)
    kind = "TIER_CHANGED" if changed else "TIER_SET"
    return Effect(NAME, kind, f"tier {before.code if before else '-'} -> {after.code}" + (f" ({note})" if note else ""),
                  rule=rule)


def count_change(ctx: Context, member_id: str, before: TierSettings | None, after: TierSettings) -> None:
    """The kpis plugin's figures: a level per tier (tierMembers:CODE) and the moves up and down, from the tier
    last recorded (history), which is the one last counted: a bought or hand-set tier that lapsed is still
    the member's recorded tier until a change records the lapse, whatever `before` the caller computed."""
    recorded = ctx.conn.execute(select(HISTORY.c.to_code).where(
        HISTORY.c.shop == ctx.shop.slug, HISTORY.c.member_id == member_id).order_by(HISTORY.c.id.desc()).limit(1)
    ).scalar() or (before.code if before else None)
    if recorded is not None:  # (a tier since removed from the settings still leaves its count)
        ctx.count(TIER_MEMBERS + recorded, -1)
        was = next((tier for tier in settings_of(ctx).tiers if tier.code == recorded), before)
        if was is not None and after.rank != was.rank:
            ctx.count("tierUpgrades" if after.rank > was.rank else "tierDowngrades")
    ctx.count(TIER_MEMBERS + after.code)


def raise_standing(s: TieringSettings, state: State, target: TierSettings, now: datetime) -> State:
    """Qualification reached `target`: raise the standing tier to it (never lower), end a grace period the
    member no longer needs, and end an override that the new standing tier outranks."""
    standing = by_code(s, state.tier_code)
    if standing is None or target.rank > standing.rank:
        state = replace(state, tier_code=target.code)
        override = by_code(s, state.override_code)
        if state.override_code and (override is None or target.rank > override.rank):
            state = replace(state, override_code=None, override_until=None, override_reason=None)
    if state.grace_since is not None and target.rank >= by_code(s, state.tier_code).rank:
        state = replace(state, grace_since=None)
    return state


def threshold_rule(s: TieringSettings, tier: TierSettings) -> str:
    parts = {"spend": [f"min_spend {tier.min_spend}"], "orders": [f"min_orders {tier.min_orders}"]}
    needs = {"spend": parts["spend"], "orders": parts["orders"],
             "spend_and_orders": parts["spend"] + ["and"] + parts["orders"],
             "spend_or_orders": parts["spend"] + ["or"] + parts["orders"]}[s.qualify_by]
    window = f"{s.window_months} months" if s.window_months else "lifetime"
    return f"tiers.{tier.code}: {' '.join(needs)} ({window})"


def upgrade_expiry(ctx: Context, s: TieringSettings) -> datetime | None:
    if not s.upgrade_valid_months:
        return None
    return add_months(ctx.shop.local(ctx.now), s.upgrade_valid_months).astimezone(UTC)


def grace_ends(s: TieringSettings, state: State) -> datetime | None:
    if state.grace_since is None or not s.grace_days:
        return None
    return state.grace_since + timedelta(days=s.grace_days)
