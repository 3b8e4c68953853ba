"""The segments plugin's settings: ``[shops.<slug>.settings.segments]`` in plugins.toml (RULES.md section 7)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from memberkit.plugin import StrictModel

NAME = "segments"


class SegmentsSettings(StrictModel):
    active_days: int = Field(90, ge=1, le=3650, description="ACTIVE up to this many days (the shop's calendar "
                                                            "days) after the last paid order; DORMANT from the next")
    churned_after_days: int = Field(180, ge=2, le=7300, description="DORMANT up to this many days after the "
                                                                    "last paid order; CHURNED from the next")

    @model_validator(mode="after")
    def _order(self) -> Self:
        if self.churned_after_days <= self.active_days:
            raise ValueError(f"churned_after_days is {self.churned_after_days}: expected more than active_days "
                             f"({self.active_days})")
        return self


def settings_of(ctx) -> SegmentsSettings:
    return ctx.settings_for(NAME) or SegmentsSettings()
