"""flash_sale: 会员专享秒杀 (RULES.md section 5). A sale has a product, a price, a window, a stock, a
per-member limit and who may buy (everyone, members, or a tier and above).

A member reserves units (``reserveFlashSale``); a reservation holds stock for ``hold_minutes`` until the
order is paid (``order_paid`` confirms it: held -> sold), is released (``releaseFlashReservation``, a
checkout's release clears only its claim) or expires (the ``expire_reservations`` job, every minute). Stock
and the per-member limit change only through conditional UPDATEs (``stock.py``), so concurrent buyers on
any number of server processes never oversell. Tiers come from core's hooks; no other plugin is imported.
Each sale shows in the calendar (``calendar_entries``) on the shop-local day it starts.
"""

from __future__ import annotations

from datetime import date, timedelta

from memberkit.plugin import (
    Adjustment,
    CalendarEntry,
    Cart,
    Context,
    Effect,
    Job,
    PaidOrder,
    Plugin,
    PriceStage,
    export_tables,
    hookimpl,
)
from memberkit.plugins.flash_sale import graphql, models, stock
from memberkit.plugins.flash_sale.settings import NAME, FlashSaleSettings

plugin = Plugin(NAME, settings=FlashSaleSettings, graphql=graphql.contribute,
                tables=(models.FlashSaleSale, models.FlashSaleReservation, models.FlashSaleMember),
                jobs=(Job("expire_reservations", timedelta(minutes=1), stock.expire_due),))


@hookimpl
def order_paid(ctx: Context, order: PaidOrder) -> list[Effect] | None:
    if not order.reservation_ids and not order.checkout_id:
        return None
    return stock.confirm_for_order(ctx, order)


@hookimpl
def price_adjustments(ctx: Context, cart: Cart, stage: PriceStage, subtotal: int) -> list[Adjustment] | None:
    if stage is PriceStage.UNIT_PRICE:
        return stock.unit_price_adjustments(ctx, cart)
    return None


@hookimpl
def checkout_hold(ctx: Context, checkout_id: str, cart: Cart) -> list[Effect] | None:
    if not cart.reservation_ids:
        return None
    return stock.hold_for_checkout(ctx, checkout_id, cart.member_id, cart.reservation_ids)


@hookimpl
def calendar_entries(ctx: Context, member_id: str | None, first: date, last: date) -> list[CalendarEntry]:
    """Each sale on the day it starts (shop-local), titled as the integrator titled it."""
    return [CalendarEntry(ctx.shop.local(row.starts_at).date(), "FLASH_SALE", row.title, row.id)
            for row in stock.sales_starting(ctx, first, last)]


@hookimpl
def checkout_release(ctx: Context, checkout_id: str, reason: str) -> None:
    stock.release_checkout(ctx, checkout_id)


@hookimpl
def member_data(ctx: Context, member_id: str) -> dict:
    """What the plugin holds about the member, table by table (memberDataExport)."""
    return export_tables(ctx, plugin.tables, member_id)
