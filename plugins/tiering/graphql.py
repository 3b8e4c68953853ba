"""tiering's part of the schema: Member.tier, Member.tierProgress, Member.tierHistory, and the integrator's
setMemberTier and recordTierUpgrade."""

from datetime import datetime
from typing import Optional

import strawberry

from memberkit.plugin import (
    LOCALES,
    MAX_INT,
    BigInt,
    Context,
    EventResult,
    Money,
    StaffWrite,
    VisibleError,
    event_mutation,
    input_values,
)
from memberkit.plugins.tiering import actions
from memberkit.plugins.tiering import standing as st
from memberkit.plugins.tiering.models import TierChange as TierChangeRow
from memberkit.plugins.tiering.settings import TierSettings, settings_of

MAX_HISTORY = 100


@strawberry.type(description="A tier of the shop's programme; benefits are texts the storefront shows.")
class Tier:
    code: str
    name: str
    rank: int
    benefits: list[str]
    settings: strawberry.Private[TierSettings]

    @strawberry.field(description="The tier's name in `locale` (zh-CN or en; the shop's locale by default): the "
                                  "settings' name for that locale, else `name`.")
    def local_name(self, info: strawberry.Info, locale: Optional[str] = None) -> str:
        if locale is None:
            locale = info.context.shop.locale
        elif locale not in LOCALES:
            error = VisibleError(f"localName: locale {locale!r} is not one memberkit ships messages for: "
                                 f"expected one of {', '.join(LOCALES)}")
            error.extensions.update(code="INVALID_LOCALE", field="locale")
            raise error
        return self.settings.local_name(locale)

    @classmethod
    def of(cls, tier: TierSettings) -> "Tier":
        return cls(code=tier.code, name=tier.name, rank=tier.rank, benefits=list(tier.benefits), settings=tier)


@strawberry.type(description="Where the member stands: their tier, the next one, and what is left to reach it "
                             "(spendToNext null at the top tier or when spend does not count).")
class TierProgress:
    current: Tier
    next: Optional[Tier]
    qualifying_spend: Money = strawberry.field(
        description=f"at most {MAX_INT} (Int's limit): qualifyingSpendTotal is exact beyond it")
    qualifying_spend_total: BigInt = strawberry.field(description="the qualifying spend, exact, in minor units")
    spend_to_next: Optional[Money]
    qualifying_orders: int
    orders_to_next: Optional[int]
    window_start: Optional[datetime] = strawberry.field(description="null: lifetime spend counts")
    downgrade_at: Optional[datetime] = strawberry.field(
        description="when the member goes down one step unless they qualify again (a grace period runs)")
    set_until: Optional[datetime] = strawberry.field(description="when a tier set by hand or bought ends")


TierChangeReason = strawberry.enum(st.TierChangeReason, name="TierChangeReason",
                                   description="Why a tier changed; the same in tier.changed events.")


@strawberry.type(description="One change of the member's tier and why.")
class TierChange:
    from_code: Optional[str]
    to_code: str
    reason: TierChangeReason
    reference: Optional[str]
    note: str
    created_at: datetime


@strawberry.input
class SetMemberTierInput:
    member_id: strawberry.ID
    tier_code: str
    reason: str
    expires_at: Optional[datetime] = None
    idempotency_key: Optional[str] = None


@strawberry.input
class RecordTierUpgradeInput:
    member_id: strawberry.ID
    tier_code: str
    amount_paid: int
    idempotency_key: str
    points_used: Optional[int] = 0


# ---------------------------------------------------------------- reads


def tier_of(ctx: Context, member_id: str) -> Tier:
    s = settings_of(ctx)
    row = st.load_row(ctx, member_id)
    return Tier.of(st.current(s, row, ctx.now))


def progress_of(ctx: Context, member_id: str) -> TierProgress:
    s = settings_of(ctx)
    row = st.load_row(ctx, member_id)
    state = st.State.of(row) if row is not None else st.State(s.tiers[0].code)
    current = st.effective(s, state, ctx.now, row)
    following = st.next_tier(s, current)
    spend, orders = st.qualifying(ctx, s, member_id, row)
    currency = ctx.shop.currency
    spend_to_next = orders_to_next = None
    if following is not None and s.qualify_by != "orders" and following.min_spend:
        spend_to_next = Money(amount=max(0, following.min_spend - spend), currency=currency)
    if following is not None and s.qualify_by != "spend" and following.min_orders:
        orders_to_next = max(0, following.min_orders - orders)
    override = st.override_stands(s, state, ctx.now)
    return TierProgress(
        current=Tier.of(current), next=Tier.of(following) if following else None,
        qualifying_spend=Money(amount=min(spend, MAX_INT), currency=currency), qualifying_spend_total=spend,
        spend_to_next=spend_to_next,
        qualifying_orders=orders, orders_to_next=orders_to_next, window_start=st.window_start(ctx, s),
        downgrade_at=st.grace_ends(s, state), set_until=state.override_until if override else None)


def history_of(ctx: Context, member_id: str, first: int) -> list[TierChange]:
    rows = ctx.conn.execute(
        TierChangeRow.__table__.select()
        .where(st.HISTORY.c.shop == ctx.shop.slug, st.HISTORY.c.member_id == member_id)
        .order_by(st.HISTORY.c.id.desc()).limit(first)).all()
    return [TierChange(from_code=r.from_code, to_code=r.to_code, reason=st.TierChangeReason(r.reason),
                       reference=r.reference, note=r.note, created_at=r.created_at) for r in rows]


async def tier(root, info: strawberry.Info) -> Optional[Tier]:
    return await info.context.read(lambda ctx: tier_of(ctx, str(root.id)))


async def tier_progress(root, info: strawberry.Info) -> Optional[TierProgress]:
    return await info.context.read(lambda ctx: progress_of(ctx, str(root.id)))


async def tier_history(root, info: strawberry.Info, first: Optional[int] = 20) -> list[TierChange]:
    """The member's tier changes, newest first (at most 100)."""
    count = max(0, min(first if first is not None else 20, MAX_HISTORY))
    return await info.context.read(lambda ctx: history_of(ctx, str(root.id), count))


# ---------------------------------------------------------------- writes (integrator)


async def set_member_tier(info: strawberry.Info, input: SetMemberTierInput) -> EventResult:
    """Set a member's tier by hand, with a reason; it stands until their spend earns a higher tier or
    expiresAt passes (integrator, or a staff key with the operator role: then kept in the audit log)."""
    values = input_values(input)
    return await info.context.integrator_write(actions.set_member_tier, allow="operate",
                                               audit=StaffWrite("setMemberTier", values), **values)


async def record_tier_upgrade(info: strawberry.Info, input: RecordTierUpgradeInput) -> EventResult:
    """Record a tier the member bought after the platform charged amountPaid; pointsUsed are spent
    through the shop's points (integrator)."""
    values = input_values(input)
    return await info.context.integrator_write(actions.record_tier_upgrade, **{**values,
                                                                              "points_used": input.points_used or 0})


async def tiers(info: strawberry.Info) -> list[Tier]:
    """Every tier of the shop, lowest rank first, with its benefits: the upgrade path (storefront)."""
    return [Tier.of(t) for t in settings_of(info.context).tiers]


def contribute(builder) -> None:
    builder.query_field("tiers", lambda Member: tiers)
    builder.member_field("tier", tier, description="The member's tier; null where the shop has no tiers.")
    builder.member_field("tier_progress", tier_progress, description="How far the member is from the next tier.")
    builder.member_field("tier_history", tier_history, description="The member's tier changes, newest first.")
    builder.mutation_field("set_member_tier", event_mutation("SetMemberTierPayload", set_member_tier))
    builder.mutation_field("record_tier_upgrade", event_mutation("RecordTierUpgradePayload", record_tier_upgrade))
