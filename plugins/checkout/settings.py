"""How a shop's cart price is folded and how long a checkout holds (``[shops.X.settings.checkout]``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from memberkit.plugin import StrictModel

NAME = "checkout"


class CheckoutSettings(StrictModel):
    max_coupons: int = Field(1, ge=0, le=10, description="coupons one order may use (the demo: one, plus points)")
    hold_minutes: int = Field(15, ge=1, le=24 * 60,
                              description="how long startCheckout holds coupons, points and reservations")
    percent_rule: Literal["largest", "all"] = Field(
        "largest", description='adjustments of one exclusive group (e.g. "percent": tier, first order, birthday, '
                               'member day): "largest" keeps the largest discount only, "all" applies each')


def settings_of(ctx) -> CheckoutSettings:
    return ctx.shop.settings_for(NAME)
