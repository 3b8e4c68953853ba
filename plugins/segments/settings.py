"""The segments plugin's settings: ``[shops.<slug>.settings.segments]`` in plugins.toml (RULES.md section 7)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import AwareDatetime, Field, model_validator

from memberkit.plugin import StrictModel, TierCode, reference

NAME = "segments"


class RfmBand(StrictModel):
    """A named band of RFM scores: each dimension listed must score one of its values (left out: any)."""

    code: str = Field(pattern=r"^[A-Z][A-Z0-9_]{0,31}$")
    recency: list[int] | None = Field(None, min_length=1, max_length=5)
    frequency: list[int] | None = Field(None, min_length=1, max_length=5)
    monetary: list[int] | None = Field(None, min_length=1, max_length=5)

    @model_validator(mode="after")
    def _scores(self) -> Self:
        for name in ("recency", "frequency", "monetary"):
            wrong = [v for v in getattr(self, name) or () if not 1 <= v <= 5]
            if wrong:
                raise ValueError(f"{self.code}.{name}: {wrong[0]} is not a score: expected 1 to 5")
        return self


DEMO_BANDS = [
    RfmBand(code="CHAMPIONS", recency=[4, 5], frequency=[4, 5], monetary=[4, 5]),
    RfmBand(code="LOYAL", frequency=[4, 5]),
    RfmBand(code="AT_RISK", recency=[1, 2], frequency=[3, 4, 5]),
    RfmBand(code="HIBERNATING", recency=[1], frequency=[1]),
    RfmBand(code="OTHERS"),
]


RfmBandCode = reference("RFM band", "rfm_bands")  # checked against the shop's own bands (Plugin.defines)
Stage = Literal["NEW", "ACTIVE", "DORMANT", "CHURNED"]


class Bought(StrictModel):
    """Paid orders with a line of `category` (orders refunded in full left out) in the last `within_days`."""

    category: str = Field(min_length=1, max_length=100)
    at_least: int = Field(1, ge=1, le=10000, description="orders with such a line")
    within_days: int = Field(ge=1, le=3650, description="the shop's calendar days back, today included")


class SegmentRule(StrictModel):
    """A named segment: the members who meet every condition given (RULES.md section 7)."""

    code: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="e.g. sneaker_fans")
    name: str = Field(min_length=1, max_length=100, description="shown to people, e.g. 运动鞋爱好者")
    tiers: list[TierCode] | None = Field(None, min_length=1, max_length=20, description="one of these tiers")
    min_tier: TierCode | None = Field(None, description="this tier or a higher one")
    tags_all: list[str] | None = Field(None, min_length=1, max_length=20, description="every one of these tags")
    tags_any: list[str] | None = Field(None, min_length=1, max_length=20, description="at least one of these tags")
    lifecycle: list[Stage] | None = Field(None, min_length=1, max_length=4, description="one of these stages")
    rfm_bands: list[RfmBandCode] | None = Field(None, min_length=1, max_length=20,
                                                description="one of these RFM bands")
    bought: Bought | None = None
    joined_within_days: int | None = Field(None, ge=1, le=36500, description="joined in the last N calendar days")
    joined_from: AwareDatetime | None = Field(None, description="joined at or after")
    joined_to: AwareDatetime | None = Field(None, description="joined before")
    birthday_months: list[int] | None = Field(None, min_length=1, max_length=12, description="1 (January) to 12")

    @model_validator(mode="after")
    def _conditions(self) -> Self:
        if not any(getattr(self, name) is not None for name in CONDITIONS):
            raise ValueError(f"segment {self.code!r} has no condition: expected one or more of "
                             f"{', '.join(CONDITIONS)}")
        wrong = [m for m in self.birthday_months or () if not 1 <= m <= 12]
        if wrong:
            raise ValueError(f"{self.code}.birthday_months: {wrong[0]} is not a month: expected 1 to 12")
        for name in ("tags_all", "tags_any"):
            if any(not tag.strip() or len(tag) > 64 for tag in getattr(self, name) or ()):
                raise ValueError(f"{self.code}.{name}: a tag is 1 to 64 characters")
        if self.joined_from and self.joined_to and self.joined_to <= self.joined_from:
            raise ValueError(f"{self.code}.joined_to is not after joined_from")
        return self

    def uses(self, *conditions: str) -> bool:
        return any(getattr(self, name) is not None for name in conditions)


CONDITIONS = ("tiers", "min_tier", "tags_all", "tags_any", "lifecycle", "rfm_bands", "bought",
              "joined_within_days", "joined_from", "joined_to", "birthday_months")


class SegmentsSettings(StrictModel):
    active_days: int = Field(90, ge=1, le=3650, description="ACTIVE up to this many days (the shop's calendar "
                                                            "days) after the last paid order; DORMANT from the next")
    churned_after_days: int = Field(180, ge=2, le=7300, description="DORMANT up to this many days after the "
                                                                    "last paid order; CHURNED from the next")

    rfm_window_days: int = Field(365, ge=1, le=3650, description="the orders RFM scores count: this many days back")
    rfm_bands: list[RfmBand] = Field(default_factory=lambda: list(DEMO_BANDS), max_length=20,
                                     description="named bands of scores, the first that matches names a member's")
    segments: list[SegmentRule] = Field(default_factory=list, max_length=100,
                                        description="named rules over members' facts, kept up to date by events "
                                                    "and the hourly segments.refresh job")

    @model_validator(mode="after")
    def _order(self) -> Self:
        if self.churned_after_days <= self.active_days:
            raise ValueError(f"churned_after_days is {self.churned_after_days}: expected more than active_days "
                             f"({self.active_days})")
        codes = [segment.code for segment in self.segments]
        if twice := sorted({code for code in codes if codes.count(code) > 1}):
            raise ValueError(f"segment {twice[0]!r} is defined twice: expected each code once")
        return self

    def segment(self, code: str) -> SegmentRule | None:
        return next((s for s in self.segments if s.code == code), None)

    def categories(self) -> frozenset[str]:
        """The categories some segment counts purchases of: an order with none of them costs no upkeep."""
        return frozenset(s.bought.category for s in self.segments if s.bought)


def settings_of(ctx) -> SegmentsSettings:
    return ctx.shop.settings_for(NAME) or SegmentsSettings()
