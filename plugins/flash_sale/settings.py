"""The flash_sale plugin's settings: ``[shops.<slug>.settings.flash_sale]`` in plugins.toml (RULES.md section 5).

``hold_minutes`` is how long a reservation holds stock before it expires. ``[...flash_sale.weekly]`` optionally
describes a recurring sale (the demo: every Friday 20:00, members only, 10% off, 3 units a member); the
integrator still creates each sale with ``createFlashSale`` (it knows the products, prices and stock), and
``next_window`` gives the next occurrence's start and end in UTC for it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta

from pydantic import Field, field_validator

from memberkit.plugin import StrictModel, TierCode

NAME = "flash_sale"
TIER_CODE = r"^[A-Z][A-Z0-9_]{0,31}$"
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class WeeklySale(StrictModel):
    """A sale that recurs every week at the same local time (the shop's timezone)."""

    weekday: str = Field(default="friday", description="monday .. sunday")
    start: time = Field(default=time(20, 0), description="local start time, e.g. 20:00")
    duration_minutes: int = Field(default=120, ge=1, le=7 * 24 * 60)
    discount_percent: int = Field(default=10, ge=1, le=100, description="10 = 10% off the list price")
    per_member_limit: int = Field(default=3, ge=1)
    members_only: bool = True
    min_tier: TierCode | None = Field(default=None, description="lowest tier code that may buy; unset: no tier needed")
    skus: list[str] = Field(default_factory=list, description="the products of the sale, e.g. three SKUs")

    @field_validator("weekday")
    @classmethod
    def _weekday(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in WEEKDAYS:
            raise ValueError(f"one of {', '.join(WEEKDAYS)}")
        return value

    @field_validator("min_tier")
    @classmethod
    def _tier(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(TIER_CODE, value):
            raise ValueError("a tier code of upper-case letters, digits and _, e.g. GOLD")
        return value

    def sale_price(self, list_price: int) -> int:
        """The sale price of a list price in minor units, rounded down (no floats)."""
        return list_price * (100 - self.discount_percent) // 100

    def next_window(self, timezone, now: datetime) -> tuple[datetime, datetime]:
        """The occurrence running at `now` or the next one: (start, end) in UTC."""
        local_now = now.astimezone(timezone)
        days_ahead = (WEEKDAYS.index(self.weekday) - local_now.weekday()) % 7
        for offset in (days_ahead - 7, days_ahead, days_ahead + 7):
            day = local_now.date() + timedelta(days=offset)
            start = datetime.combine(day, self.start, tzinfo=timezone)
            end = start + timedelta(minutes=self.duration_minutes)
            if end.astimezone(UTC) > now.astimezone(UTC):
                return start.astimezone(UTC), end.astimezone(UTC)
        raise AssertionError("unreachable: a week always has a next occurrence")


class FlashSaleSettings(StrictModel):
    hold_minutes: int = Field(default=15, ge=1, le=24 * 60,
                              description="how long a reservation holds stock until the order is paid")
    max_quantity: int = Field(default=100, ge=1, description="the most units one reservation may ask for")
    weekly: WeeklySale | None = Field(default=None, description="a recurring weekly sale (the demo's Friday 20:00)")


def settings_of(ctx) -> FlashSaleSettings:
    return ctx.shop.settings_for(NAME)
