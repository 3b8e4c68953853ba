"""The member_only plugin's settings: ``[shops.<slug>.settings.member_only]`` in plugins.toml (RULES.md
section 4).

Which products are members-only, for a tier and above, launched when, and at what member price is not a
setting: the integrator writes it per product with ``upsertProductRule``. The settings say who gets early
access to new products and how early.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from memberkit.plugin import StrictModel, TierCode

NAME = "member_only"
TIER_CODE = r"^[A-Z][A-Z0-9_]{0,31}$"


class MemberOnlySettings(StrictModel):
    early_access_min_tier: TierCode | None = Field(
        default="GOLD", description="lowest tier code that may buy a new product before its launch (needs "
                                    "tiering; a tier the shop does not have gives nobody early access); "
                                    "unset: no early access")
    early_access_days: int = Field(
        default=3, ge=0, le=365, description="days before launchAt that early access opens; 0: none")

    @field_validator("early_access_min_tier")
    @classmethod
    def _tier(cls, value: str | None) -> str | None:
        value = (value or "").strip() or None
        if value is not None and not re.fullmatch(TIER_CODE, value):
            raise ValueError("a tier code of upper-case letters, digits and _, e.g. GOLD")
        return value


def settings_of(ctx) -> MemberOnlySettings:
    return ctx.shop.settings_for(NAME)
