"""A plugin for checkout tests: a member price at UNIT_PRICE, purchase denials, a hold that can refuse."""

from __future__ import annotations

from memberkit.plugin import Adjustment, Effect, Plugin, PriceStage, PurchaseDenial, Refused, hookimpl

MEMBER_PRICE_OFF = 1000  # per unit of a "member-" sku, for members only


class Gate:
    plugin = Plugin("gate")

    def __init__(self) -> None:
        self.held: list[tuple[str, object]] = []
        self.released: list[tuple[str, str]] = []
        self.paid: list[object] = []

    def clear(self) -> None:
        self.held.clear()
        self.released.clear()
        self.paid.clear()

    @hookimpl
    def price_adjustments(self, ctx, cart, stage, subtotal):
        if stage is not PriceStage.UNIT_PRICE or not cart.member_id:
            return None
        return [Adjustment("gate", "MEMBER_PRICE", "member price", -MEMBER_PRICE_OFF * line.quantity, sku=line.sku)
                for line in cart.lines if line.sku.startswith("member-")]

    @hookimpl
    def purchase_denials(self, ctx, cart):
        denials = [PurchaseDenial(line.sku, "NOT_FOR_SALE", "not for sale") for line in cart.lines
                   if line.sku == "forbidden"]
        if cart.member_id is None:
            denials += [PurchaseDenial(line.sku, "MEMBERS_ONLY", "for members only") for line in cart.lines
                        if line.sku == "members-only"]
        return denials

    @hookimpl
    def checkout_hold(self, ctx, checkout_id, cart):
        if any(line.sku == "refuse-hold" for line in cart.lines):
            raise Refused("GATE_REFUSED", "the gate cannot hold this cart")
        self.held.append((checkout_id, cart))
        return [Effect("gate", "GATE_HELD", f"gate holds for {checkout_id}")]

    @hookimpl
    def checkout_release(self, ctx, checkout_id, reason):
        self.released.append((checkout_id, reason))

    @hookimpl
    def order_paid(self, ctx, order):
        self.paid.append(order)


gate = Gate()
