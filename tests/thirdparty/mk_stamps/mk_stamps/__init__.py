"""mk_stamps: a stamp card, a third-party memberkit plugin.

Each paid order adds ``stamps_per_order`` stamps; each time the card reaches ``card_size`` stamps the member
gets a coupon of the shop's ``coupon_template`` in the core wallet.
"""

from __future__ import annotations

from sqlalchemy import insert

from memberkit.plugin import Context, Effect, MemberInfo, PaidOrder, Plugin, SignUp, hookimpl
from mk_stamps import graphql
from mk_stamps.models import StampEntry
from mk_stamps.settings import StampsSettings

NAME = "stamps"
plugin = Plugin(NAME, settings=StampsSettings, tables=(StampEntry,), graphql=graphql.contribute)


def _settings(ctx: Context) -> StampsSettings:
    return plugin.settings_of(ctx)


@hookimpl
def member_signup(ctx: Context, member: MemberInfo, signup: SignUp) -> list[Effect]:
    settings = _settings(ctx)
    return [Effect(NAME, "STAMP_CARD_OPENED",
                   f"a stamp card of {settings.card_size} stamps, {settings.stamps_per_order} per paid order",
                   rule="signup")]


@hookimpl
def order_paid(ctx: Context, order: PaidOrder) -> list[Effect]:
    settings = _settings(ctx)
    before = graphql.total_stamps(ctx.conn, ctx.shop.slug, order.member_id)
    added = settings.stamps_per_order
    ctx.conn.execute(insert(StampEntry).values(
        shop=ctx.shop.slug, member_id=order.member_id, order_id=order.order_id, stamps=added,
        created_at=ctx.now))
    after = before + added
    effects = [Effect(NAME, "STAMPS_ADDED", f"{added} stamps for order {order.order_id}: "
                      f"{after % settings.card_size} of {settings.card_size} on the card",
                      rule="stamps_per_order")]
    for _ in range(after // settings.card_size - before // settings.card_size):
        coupon = ctx.wallet.issue(order.member_id, settings.coupon_template, source="stamps:full_card")
        effects.append(ctx.wallet.issued_effect(NAME, coupon, rule="full_card"))
    return effects
