"""The stamp card's settings: one table per shop in plugins.toml, ``[shops.<slug>.settings.stamps]``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class StampsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stamps_per_order: int = Field(default=1, ge=1, description="stamps a paid order adds to the card")
    card_size: int = Field(default=10, ge=2, description="stamps that fill a card")
    coupon_template: str = Field(min_length=1, description="the shop's coupon template a full card issues")
