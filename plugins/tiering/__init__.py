"""tiering: member tiers (RULES.md section 1), all of it settings per shop.

Members move up at once when a paid order's spend (or order count) reaches a tier, past several tiers in
one order if need be; a refund corrects the tier to what the net spend earns; an hourly, idempotent job
re-evaluates rolling windows, grace periods, ended overrides and changed thresholds, one step down at a
time. Integrators set a tier by hand (``setMemberTier``) or record a bought one (``recordTierUpgrade``,
points through the core ``redemption`` hook). Other plugins read the tier through ``member_tier`` and
``tier_catalog`` (core.types.TierInfo), never by importing this package.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import insert

from memberkit.plugin import (
    Adjustment,
    Context,
    Effect,
    ImportedMember,
    Job,
    MemberInfo,
    PaidOrder,
    Plugin,
    PriceStage,
    Refund,
    SignUp,
    TierInfo,
    export_tables,
    hookimpl,
    percent_off,
)
from memberkit.plugins.tiering import actions, graphql, models
from memberkit.plugins.tiering import standing as st
from memberkit.plugins.tiering.settings import NAME, TieringSettings, settings_of

plugin = Plugin(NAME, settings=TieringSettings, tables=(models.TierMember, models.TierOrder, models.TierChange),
                graphql=graphql.contribute, jobs=(Job("evaluate", timedelta(hours=1), actions.evaluate),),
                event_types=("tier.changed",), figures=("tierUpgrades", "tierDowngrades"),
                defines={"tier": lambda settings: [tier.code for tier in settings.tiers]})


@hookimpl
def member_signup(ctx: Context, member: MemberInfo, signup: SignUp) -> list[Effect]:
    lowest = settings_of(ctx).tiers[0]
    ctx.conn.execute(insert(st.MEMBERS).values(
        member_id=member.id, shop=ctx.shop.slug, tier_code=lowest.code, spend=0, orders=0, refund_pending=False,
        updated_at=ctx.now))
    ctx.count(st.TIER_MEMBERS + lowest.code)
    return [Effect(NAME, "TIER_ASSIGNED", f"tier {lowest.code} ({lowest.name})", rule=f"tiers.{lowest.code}")]


@hookimpl
def members_imported(ctx: Context, members: list[ImportedMember]) -> None:
    actions.imported(ctx, members)


@hookimpl
def order_paid(ctx: Context, order: PaidOrder) -> list[Effect]:
    return actions.order_paid(ctx, order)


@hookimpl
def order_refunded(ctx: Context, refund: Refund) -> list[Effect]:
    return actions.order_refunded(ctx, refund)


@hookimpl
def member_tier(ctx: Context, member_id: str) -> TierInfo | None:
    return st.tier_info(st.current(settings_of(ctx), st.load_row(ctx, member_id), ctx.now))


@hookimpl
def member_tiers(ctx: Context, member_ids: list[str]) -> dict[str, TierInfo] | None:
    s, rows = settings_of(ctx), st.load_rows(ctx, member_ids)
    infos = {tier.code: st.tier_info(tier) for tier in s.tiers}
    return {member_id: infos[st.tier_of(s, rows.get(member_id), ctx.now).code] for member_id in member_ids}


@hookimpl
def price_adjustments(ctx: Context, cart, stage: PriceStage, subtotal: int) -> list[Adjustment] | None:
    """The tier's member discount at the PERCENT stage, in the exclusive group "percent" (core keeps the
    largest of it, first order, birthday and member day); neutral for a 0% tier and for anonymous carts."""
    if stage is not PriceStage.PERCENT or not cart.member_id:
        return None
    tier = member_tier(ctx, cart.member_id)
    off = percent_off(cart.lines, subtotal, tier.discount_percent) if tier.discount_percent else 0
    if off <= 0:
        return None
    return [Adjustment(NAME, "TIER_DISCOUNT", f"{tier.name} {tier.discount_percent}% off", -off,
                       exclusive_group="percent")]


@hookimpl
def tier_catalog(ctx: Context) -> list[TierInfo] | None:
    return [st.tier_info(t) for t in settings_of(ctx).tiers]


@hookimpl
def member_data(ctx: Context, member_id: str) -> dict:
    """What the plugin holds about the member, table by table (memberDataExport)."""
    return export_tables(ctx, plugin.tables, member_id)
