"""The segments plugin's settings: ``[shops.<slug>.settings.segments]`` in plugins.toml (RULES.md section 7)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from memberkit.plugin import StrictModel

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


class SegmentsSettings(StrictModel):
    active_days: int = Field(90, ge=1, le=3650, description="ACTIVE up to this many days (the shop's calendar "
                                                            "days) after the last paid order; DORMANT from the next")
    churned_after_days: int = Field(180, ge=2, le=7300, description="DORMANT up to this many days after the "
                                                                    "last paid order; CHURNED from the next")

    rfm_window_days: int = Field(365, ge=1, le=3650, description="the orders RFM scores count: this many days back")
    rfm_bands: list[RfmBand] = Field(default_factory=lambda: list(DEMO_BANDS), max_length=20,
                                     description="named bands of scores, the first that matches names a member's")

    @model_validator(mode="after")
    def _order(self) -> Self:
        if self.churned_after_days <= self.active_days:
            raise ValueError(f"churned_after_days is {self.churned_after_days}: expected more than active_days "
                             f"({self.active_days})")
        return self


def settings_of(ctx) -> SegmentsSettings:
    return ctx.settings_for(NAME) or SegmentsSettings()
