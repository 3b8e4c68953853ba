"""perks: sign-up gift, first order, birthday, member day and the monthly tier coupon (RULES.md section 6).

Every number is a setting per shop (``plugins.perks.settings``). Gifts go into the core wallet and show in
``Member.coupons``; discounts are proposed through ``price_adjustments`` (reads only): the percentages in
the exclusive group "percent" (core keeps the largest, with the tier's), the threshold variant of the
first-order discount as a fixed amount at the COUPON stage. Tiers come from core (``ctx.member_tier``,
``tier_catalog``): without tiering, tier rules are neutral. Two jobs, both safe to run twice, late or after
a gap, give the birthday and monthly coupons in the shop's calendar; a member turning dormant (segments,
through ``lifecycle_changed``) gets the win-back coupon. ``calendar_entries`` shows the member days and, to
the member themselves, their birthday month.
"""

from __future__ import annotations

from datetime import date, timedelta

from memberkit.plugin import (
    Adjustment,
    CalendarEntry,
    Cart,
    Context,
    Effect,
    ImportedMember,
    Job,
    MemberChanges,
    MemberInfo,
    PaidOrder,
    Plugin,
    PriceStage,
    Refused,
    SignUp,
    export_tables,
    hookimpl,
)
from memberkit.plugins.perks import graphql, models, rules
from memberkit.plugins.perks.settings import NAME, PerksSettings, settings_of

plugin = Plugin(NAME, settings=PerksSettings, graphql=graphql.contribute,
                tables=(models.PerksFirstOrder, models.PerksBirthdayCoupon, models.PerksMonthlyCoupon,
                        models.PerksFirstOrderHold),
                jobs=(Job("birthday_coupons", timedelta(hours=1), rules.birthday_coupons),
                      Job("monthly_coupons", timedelta(hours=1), rules.monthly_coupons)))


@hookimpl
def member_signup(ctx: Context, member: MemberInfo, signup: SignUp) -> list[Effect]:
    return rules.welcome(ctx, member, signup.seen_before)


@hookimpl
def members_imported(ctx: Context, members: list[ImportedMember]) -> None:
    """The sign-up gift only where the shop's `welcome_imported` says so; the first-order perks already
    see an imported member's orders (core's order count)."""
    if settings_of(ctx).welcome_imported:
        for member in members:
            rules.welcome(ctx, member)


@hookimpl
def lifecycle_changed(ctx: Context, member_id: str, before: str | None, after: str, reason: str, since) -> None:
    """The win-back coupon: time moving a member to DORMANT starts a dormant spell, which happens once per
    spell (a refund moving them back is reason REFUND), so the coupon is given once per spell."""
    if after == "DORMANT" and reason == "TIME":
        rules.winback_coupon(ctx, member_id)


@hookimpl
def member_updated(ctx: Context, member: MemberInfo, changes: MemberChanges) -> None:
    if changes.birthday is not None:
        why = rules.birthday_change_veto(ctx, member.id, changes.previous_birthday)
        if why:
            raise Refused("BIRTHDAY_CHANGE_LIMIT", why, "birthday")


@hookimpl
def order_paid(ctx: Context, order: PaidOrder) -> list[Effect]:
    if order.checkout_id:
        rules.release_first_order(ctx, order.checkout_id)
    return rules.first_order(ctx, order)


@hookimpl
def checkout_hold(ctx: Context, checkout_id: str, cart: Cart, expires_at) -> list[Effect]:
    return rules.hold_first_order(ctx, checkout_id, cart, expires_at)


@hookimpl
def checkout_release(ctx: Context, checkout_id: str, reason: str) -> None:
    rules.release_first_order(ctx, checkout_id)


@hookimpl
def price_adjustments(ctx: Context, cart: Cart, stage: PriceStage, subtotal: int) -> list[Adjustment] | None:
    if stage is PriceStage.PERCENT:
        return rules.percent_adjustments(ctx, cart, subtotal)
    if stage is PriceStage.COUPON:
        return rules.coupon_adjustments(ctx, cart, subtotal)
    return None


@hookimpl
def calendar_entries(ctx: Context, member_id: str | None, first: date, last: date) -> list[CalendarEntry]:
    return rules.calendar_entries(ctx, member_id, first, last)


@hookimpl
def member_data(ctx: Context, member_id: str) -> dict:
    """What the plugin holds about the member, table by table (memberDataExport)."""
    return export_tables(ctx, plugin.tables, member_id)
