"""member_only: members-only products, products for a tier and above, new-product early access and member
prices (RULES.md section 4).

The integrator writes a rule per product (``upsertProductRule``); the storefront asks what a shopper may
buy (``productAccess``), and the cart quote hears the same answers through ``purchase_denials`` and, for
members, the member price through ``price_adjustments`` at the UNIT_PRICE stage. One function
(``rules.evaluate``) decides for all of them. Tiers come from core (``member_tier``, ``tier_catalog``),
never from the tiering plugin itself; who gets early access and how early are settings per shop.
"""

from __future__ import annotations

from memberkit.plugin import Adjustment, Cart, Context, Plugin, PriceStage, PurchaseDenial, hookimpl
from memberkit.plugins.member_only import graphql, rules
from memberkit.plugins.member_only.models import ProductRule
from memberkit.plugins.member_only.settings import NAME, MemberOnlySettings

plugin = Plugin(NAME, settings=MemberOnlySettings, tables=(ProductRule,), graphql=graphql.contribute)


@hookimpl
def purchase_denials(ctx: Context, cart: Cart) -> list[PurchaseDenial]:
    return rules.denials(ctx, cart)


@hookimpl
def price_adjustments(ctx: Context, cart: Cart, stage: PriceStage, subtotal: int) -> list[Adjustment] | None:
    if stage is PriceStage.UNIT_PRICE:
        return rules.member_prices(ctx, cart)
    return None
