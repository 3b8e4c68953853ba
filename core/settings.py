"""A shop's settings as the running process knows them (read from plugins.toml by memberkit.config), and the
pieces plugins declare their own settings with."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from memberkit.core.types import MAX_INT

LOCALES = ("zh-CN", "en")  # the locales memberkit ships messages for; a shop's `locale` is one of them


class StrictModel(BaseModel):
    """Settings: unknown keys refused, frozen, and every whole number within GraphQL's Int, so no setting
    can make a read fail (a spendToNext beyond Int, say)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*")
    @classmethod
    def _within_int(cls, value: Any, info: ValidationInfo) -> Any:
        numbers = value.values() if isinstance(value, dict) else value if isinstance(value, list | tuple) else [value]
        for number in numbers:
            if isinstance(number, int) and not isinstance(number, bool) and abs(number) > MAX_INT:
                what = f"{number} is" if number is not value else "it is"  # (the loader shows the value)
                raise ValueError(f"{what} beyond {MAX_INT}, the largest figure memberkit serves")
        return value


class CouponTemplate(StrictModel):
    """A kind of coupon a shop issues; value is minor units (FIXED) or percent off (PERCENT)."""

    title: str = Field(min_length=1)
    kind: Literal["FIXED", "PERCENT"]
    value: int = Field(gt=0)
    min_spend: int = Field(default=0, ge=0)
    valid_days: int | None = Field(default=None, gt=0)
    valid_until: AwareDatetime | None = None

    # Field validators, not a model validator: they run (and are reported, on their own key) even when
    # another field of the coupon is wrong too. Each sees the fields declared before it in `info.data`.
    @field_validator("value")
    @classmethod
    def _percent(cls, value: int, info: ValidationInfo) -> int:
        if info.data.get("kind") == "PERCENT" and value > 100:
            raise ValueError("a PERCENT coupon's value is a percentage from 1 to 100")
        return value

    @field_validator("valid_until")
    @classmethod
    def _one_validity(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is not None and info.data.get("valid_days") is not None:
            raise ValueError("give valid_days or valid_until, not both")
        return value


@dataclass(frozen=True)
class Shop:
    """A shop as the running process knows it: validated settings and the version they carry."""

    slug: str
    name: str
    currency: str
    timezone: ZoneInfo
    plugins: tuple[str, ...]
    coupons: dict[str, CouponTemplate]
    plugin_settings: dict[str, BaseModel]
    version: str  # a hash of everything above: stored on each event as the settings in force
    locale: str = "zh-CN"  # one of LOCALES: the language of what the shop shows members (pages, titles)
    member_centre: bool = False  # `memberkit serve` shows the member centre page at /member?shop=SLUG

    def settings_for(self, plugin: str) -> BaseModel | None:
        return self.plugin_settings.get(plugin)

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.timezone)


@dataclass(frozen=True)
class Settings:
    path: str
    shops: dict[str, Shop] = field(default_factory=dict)

    def shop(self, slug: str) -> Shop:
        return self.shops[slug]
