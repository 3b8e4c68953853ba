"""The perks plugin's settings: ``[shops.<slug>.settings.perks]`` in plugins.toml (RULES.md section 6).

Money is in minor units (fen for CNY), percentages are whole percent off. A coupon setting names a template
of the shop's ``[shops.<slug>.coupons]``; leave it out (or set it to "") to switch that gift off.
"""

from __future__ import annotations

import re
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from memberkit.plugin import CouponTemplateName, StrictModel, TierCode

NAME = "perks"
TIER_CODE = r"^[A-Z][A-Z0-9_]{0,31}$"


class PerksSettings(StrictModel):
    # sign-up
    welcome_coupon: CouponTemplateName | None = Field(
        default="WELCOME_10", description="coupon template issued at sign-up; empty: no sign-up gift")
    welcome_imported: bool = Field(
        default=False, description="give members imported from a CRM (memberkit import members) the sign-up gift "
                                   "too; off: an import is no sign-up")

    # first order
    first_order_discount: Literal["percent", "threshold", "none"] = Field(
        default="percent", description="percent: first_order_percent off the first order (PERCENT stage); "
                                       "threshold: first_order_threshold_off off a first order of "
                                       "first_order_threshold (COUPON stage); none")
    first_order_percent: int = Field(default=30, ge=1, le=100, description="30 = 30% off (7折)")
    first_order_threshold: int = Field(default=10000, ge=0, description="minimum price so far, minor units")
    first_order_threshold_off: int = Field(default=3000, gt=0, description="taken off, minor units")
    first_order_coupon: CouponTemplateName | None = Field(
        default="FIRST_ORDER_10", description="coupon template issued for the first paid order; empty: none")
    first_order_coupon_min_total: int = Field(
        default=3000, ge=0, description="the first order's total (cash paid) that earns first_order_coupon")

    # birthday
    birthday_percent: int = Field(default=5, ge=0, le=100,
                                  description="percent off during the birthday month for every member; 0: none")
    birthday_tier_percents: dict[TierCode, int] = Field(
        default_factory=dict, description="tier code -> percent for that tier and every higher one, e.g. "
                                          "{ SILVER = 10 }; the highest that applies wins (needs tiering)")
    birthday_excluded_categories: list[str] = Field(
        default_factory=list, description="line categories that get no birthday discount, e.g. [\"fresh\"]")
    birthday_coupon: CouponTemplateName | None = Field(
        default="BIRTHDAY_50", description="coupon template issued on the birthday; empty: none")
    birthday_coupon_needs_record: bool = Field(
        default=True, description="the birthday coupon only if the member had joined and recorded this "
                                  "birthday by the day (a birthday entered late this month earns nothing)")
    birthday_change_limit_days: int = Field(
        default=365, ge=0, description="a recorded birthday may change once in this many days; 0: no limit")

    # member day
    member_day: int | None = Field(
        default=15, ge=1, le=31, description="day of the month (shop's timezone); a shorter month has it on "
                                             "its last day; unset: no member day")
    member_day_percent: int = Field(default=5, ge=0, le=100, description="percent off on member day; 0: none")

    # monthly coupon
    monthly_coupon: CouponTemplateName | None = Field(
        default="SILVER_MONTHLY", description="coupon template issued once a month; empty: none")
    monthly_coupon_min_tier: TierCode | None = Field(
        default="SILVER", description="lowest tier code that gets the monthly coupon (needs tiering); "
                                      "unset: every member")

    # win-back
    winback_coupon: CouponTemplateName | None = Field(
        default=None, description="coupon template issued when a member turns dormant, once per dormant spell "
                                  "(needs segments, through the core lifecycle_changed hook); empty: none")

    @field_validator("welcome_coupon", "first_order_coupon", "birthday_coupon", "monthly_coupon", "winback_coupon")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        value = (value or "").strip()
        return value or None

    @field_validator("monthly_coupon_min_tier")
    @classmethod
    def _tier(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(TIER_CODE, value):
            raise ValueError("a tier code of upper-case letters, digits and _, e.g. SILVER")
        return value

    @field_validator("birthday_tier_percents")
    @classmethod
    def _tier_percents(cls, value: dict[str, int]) -> dict[str, int]:
        for code, percent in value.items():
            if not re.fullmatch(TIER_CODE, code):
                raise ValueError(f"{code!r} is not a tier code (upper-case letters, digits and _, e.g. SILVER)")
            if not 0 <= percent <= 100:
                raise ValueError(f"{code}: a percent from 0 to 100 (got {percent})")
        return value

    @field_validator("birthday_excluded_categories")
    @classmethod
    def _categories(cls, value: list[str]) -> list[str]:
        cleaned = [c.strip() for c in value]
        if not all(cleaned):
            raise ValueError("category names must not be empty")
        return cleaned

    @model_validator(mode="after")
    def _threshold(self) -> Self:
        if self.first_order_discount == "threshold" and self.first_order_threshold_off > self.first_order_threshold \
                and self.first_order_threshold:
            raise ValueError(f"first_order_threshold_off ({self.first_order_threshold_off}) must not be more than "
                             f"first_order_threshold ({self.first_order_threshold})")
        return self

    def coupon_templates(self) -> list[str]:
        return [t for t in (self.welcome_coupon, self.first_order_coupon, self.birthday_coupon,
                            self.monthly_coupon) if t]


def settings_of(ctx) -> PerksSettings:
    return ctx.shop.settings_for(NAME)
