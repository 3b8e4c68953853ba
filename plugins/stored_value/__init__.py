"""Stored value (储值, RULES.md section 10): prepaid balances with top-up bonuses, principal and bonus apart.

``recordTopUp`` credits the principal and the bonus of the largest rule reached as two lots of the top-up (the
bonus lot expires, the principal never); ``refundTopUp`` gives principal back on request, taking the bonus back
in proportion. Neither earns points nor tier spend: a top-up is not an order. A checkout holds
``storedValueToUse`` (``checkout_hold``), the order paying it captures the hold before ``order_paid`` runs
(a wrapper around ``checkout_payment``, so points and tiers see the bonus it spent), and its refunds return
the stored-value share (``order_refunded``). Each entry counts the
``storedValuePrincipal*``/``storedValueBonus*`` figures the kpis plugin rolls forward as the liability.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from memberkit.plugin import Context, Effect, Job, Plugin, export_tables, hookimpl, money
from memberkit.plugins.stored_value import graphql, ledger, models
from memberkit.plugins.stored_value.settings import NAME, StoredValueSettings

plugin = Plugin(
    NAME, settings=StoredValueSettings, graphql=graphql.contribute,
    tables=(models.StoredValueAccount, models.StoredValueTopUp, models.StoredValueEntry, models.StoredValueLot,
            models.StoredValueHold, models.StoredValueOrder),
    jobs=(Job("expire_bonuses", timedelta(hours=1), ledger.expire_bonuses),),
    event_types=(ledger.EVENT_TYPE,),
    figures=ledger.FIGURES,
)


@hookimpl
def member_data(ctx: Context, member_id: str) -> dict:
    """What the plugin holds about the member, table by table (memberDataExport)."""
    return export_tables(ctx, plugin.tables, member_id)


@hookimpl
def checkout_hold(ctx: Context, checkout_id: str, cart) -> list[Effect] | None:
    if not cart.member_id or cart.stored_value_to_use <= 0:
        return None
    ledger.hold(ctx, cart.member_id, checkout_id, cart.stored_value_to_use)
    return [Effect(NAME, "STORED_VALUE_HELD", f"stored value {money(cart.stored_value_to_use)} held",
                   rule="checkout")]


@hookimpl
def checkout_release(ctx: Context, checkout_id: str) -> None:
    ledger.release_hold(ctx, checkout_id)


@hookimpl(wrapper=True)
def checkout_payment(ctx: Context, order):
    """Around the checkout's answer: the order captures what the checkout held, before ``order_paid``."""
    payment = yield
    if payment is None or order.checkout_id is None:
        return payment
    paid, effects = ledger.capture(ctx, order.checkout_id, payment.order)
    return replace(payment, order=paid, effects=(*payment.effects, *effects))


@hookimpl
def order_refunded(ctx: Context, refund) -> list[Effect]:
    return ledger.return_for_refund(ctx, refund)
