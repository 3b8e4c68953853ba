"""checkout: the cart quote and the checkout hold (RULES.md section 6), a default plugin every shop runs.

``quoteCart`` asks every enabled plugin for its price adjustments and refusals and builds the price in the
rules' order (``pricing.py``); ``startCheckout`` holds what the quote uses, ``releaseCheckout`` and the
``expire_checkouts`` job give it back, and ``recordOrderPaid(checkoutId)`` completes it through the
``checkout_payment`` hook (``holds.py``). Each plugin holds what it owns through ``checkout_hold``.
"""

from __future__ import annotations

from datetime import timedelta

from memberkit.plugin import Job, Plugin, export_tables, hookimpl
from memberkit.plugins.checkout import graphql, holds
from memberkit.plugins.checkout.models import Checkout
from memberkit.plugins.checkout.settings import NAME, CheckoutSettings

plugin = Plugin(NAME, settings=CheckoutSettings, tables=(Checkout,), graphql=graphql.contribute,
                jobs=(Job("expire_checkouts", timedelta(minutes=1), holds.expire_checkouts),))


@hookimpl
def checkout_payment(ctx, order):
    return holds.payment_for_order(ctx, order)


@hookimpl
def member_erased(ctx, member_id):
    holds.forget(ctx, member_id)


@hookimpl
def member_data(ctx, member_id):
    return export_tables(ctx, (Checkout,), member_id)
