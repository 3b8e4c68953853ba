"""The tiering plugin's settings: ``[shops.<slug>.settings.tiering]`` in plugins.toml, one table per shop.

Money is in minor units (fen for CNY). Each tier is one ``[[shops.<slug>.settings.tiering.tiers]]`` table.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from memberkit.plugin import LOCALES

NAME = "tiering"
CODE_PATTERN = r"^[A-Z][A-Z0-9_]{0,31}$"


class TierSettings(BaseModel):
    """One tier: what it takes to reach it and what it gives."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(description="stable code, e.g. GOLD (upper-case letters, digits, _)")
    name: str = Field(min_length=1, max_length=100, description="what members see, e.g. 金卡会员")
    names: dict[str, str] = Field(default_factory=dict,
                                  description="the name in other locales, e.g. { en = \"Gold\" }; a locale "
                                              "left out shows `name`")
    rank: int = Field(ge=0, description="higher is better; unique per shop")
    min_spend: int = Field(default=0, ge=0, description="qualifying spend in minor units")
    min_orders: int = Field(default=0, ge=0, description="qualifying orders (not fully refunded)")
    benefits: list[str] = Field(default_factory=list, description="texts the storefront shows")
    points_multiplier_permille: int = Field(default=1000, ge=0, le=100_000,
                                            description="points earned, 1000 = 1x, 1200 = 1.2x")
    discount_percent: int = Field(default=0, ge=0, le=100, description="member discount, percent off")
    upgrade_price: int | None = Field(default=None, gt=0,
                                      description="price to buy this tier (minor units); unset: not for sale")
    upgrade_max_points: int = Field(default=0, ge=0, description="points that may go towards upgrade_price")

    @field_validator("code")
    @classmethod
    def _code(cls, value: str) -> str:
        if not re.fullmatch(CODE_PATTERN, value):
            raise ValueError("a tier code of upper-case letters, digits and _, starting with a letter, e.g. GOLD")
        return value

    @field_validator("names")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for locale, name in value.items():
            if locale not in LOCALES:
                raise ValueError(f"{locale!r} is not a locale memberkit ships messages for: expected one of "
                                 f"{', '.join(LOCALES)}")
            if not 1 <= len(name.strip()) <= 100:
                raise ValueError(f"{locale}: a name of 1 to 100 characters")
        return value

    def local_name(self, locale: str) -> str:
        """The name members see in `locale`: its entry in `names`, else `name`."""
        return self.names.get(locale) or self.name

    @field_validator("upgrade_max_points")
    @classmethod
    def _points_need_price(cls, value: int, info: ValidationInfo) -> int:
        if value and info.data.get("upgrade_price") is None:
            raise ValueError("upgrade_max_points needs an upgrade_price (the tier is not for sale)")
        return value


Qualification = Literal["spend", "orders", "spend_and_orders", "spend_or_orders"]


class TieringSettings(BaseModel):
    """A shop's tiers and how members qualify for them. Field order matters: `tiers` is checked last,
    against the qualification declared before it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    qualify_by: Qualification = Field(
        default="spend", description="spend, orders, spend_and_orders (both) or spend_or_orders (either)")
    window_months: int = Field(default=0, ge=0, le=120,
                               description="0: lifetime; N: spend and orders of the last N months count")
    grace_days: int = Field(default=0, ge=0, le=3650,
                            description="days a member who no longer qualifies keeps the tier before going "
                                        "down one step; 0: never downgrade on evaluation")
    refunds: Literal["immediately", "next_evaluation"] = Field(
        default="immediately", description="when a refund's correction of the tier applies")
    upgrade_points_per_yuan: int = Field(default=100, ge=1,
                                         description="points worth one major unit (100 minor units) "
                                                     "towards a paid upgrade")
    upgrade_valid_months: int = Field(default=12, ge=0, description="how long a bought tier stands; 0: no end")
    tiers: list[TierSettings] = Field(min_length=1)

    @field_validator("tiers")
    @classmethod
    def _tiers_rise_with_rank(cls, tiers: list[TierSettings], info: ValidationInfo) -> list[TierSettings]:
        ordered = sorted(tiers, key=lambda t: t.rank)
        for label, values in (("code", [t.code for t in tiers]), ("rank", [t.rank for t in tiers])):
            repeated = sorted({str(v) for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"each tier's {label} once; repeated: {', '.join(repeated)}")
        qualify_by = info.data.get("qualify_by", "spend")
        uses_spend, uses_orders = qualify_by != "orders", qualify_by != "spend"
        for tier in tiers:
            if not uses_spend and tier.min_spend:
                raise ValueError(f"tier {tier.code} sets min_spend but qualify_by is {qualify_by!r}")
            if not uses_orders and tier.min_orders:
                raise ValueError(f"tier {tier.code} sets min_orders but qualify_by is {qualify_by!r}")
        lowest = ordered[0]
        if lowest.min_spend or lowest.min_orders:
            raise ValueError(f"the lowest tier ({lowest.code}, rank {lowest.rank}) must need nothing "
                             "(min_spend 0, min_orders 0): every member has a tier")
        for lower, higher in zip(ordered, ordered[1:], strict=False):
            for used, key in ((uses_spend, "min_spend"), (uses_orders, "min_orders")):
                if used and getattr(higher, key) < getattr(lower, key):
                    raise ValueError(
                        f"thresholds must rise with rank: {higher.code} (rank {higher.rank}) needs {key} "
                        f"{getattr(higher, key)}, less than {lower.code} (rank {lower.rank}) with "
                        f"{getattr(lower, key)}")
            if (higher.min_spend, higher.min_orders) == (lower.min_spend, lower.min_orders):
                raise ValueError(
                    f"thresholds must rise with rank: {higher.code} (rank {higher.rank}) needs the same as "
                    f"{lower.code} (rank {lower.rank}), min_spend {lower.min_spend}, "
                    f"min_orders {lower.min_orders}")
        return ordered


def settings_of(ctx) -> TieringSettings:
    return ctx.shop.settings_for(NAME)
