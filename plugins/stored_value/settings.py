"""The stored-value programme of one shop (RULES.md section 10): top-up bonus rules, how long a bonus lasts,
and in which order a purchase takes principal and bonus."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from memberkit.plugin import StrictModel

NAME = "stored_value"


class BonusRule(StrictModel):
    at_least: int = Field(gt=0, description="a top-up of at least this many minor units earns `bonus`")
    bonus: int = Field(gt=0, description="in minor units")


class StoredValueSettings(StrictModel):
    bonus_rules: list[BonusRule] = Field(default_factory=list, description="the largest rule reached applies, once "
                                                                           "per top-up")
    bonus_valid_months: int | None = Field(12, ge=1, description="a bonus expires this many months after its "
                                                                 "top-up (None: never)")
    spend_order: Literal["proportional", "bonus_first", "principal_first"] = "proportional"

    @model_validator(mode="after")
    def _rising(self) -> Self:
        thresholds = [rule.at_least for rule in self.bonus_rules]
        if thresholds != sorted(set(thresholds)):
            raise ValueError("bonus_rules must rise: each at_least above the one before")
        return self

    def rule_for(self, amount: int) -> BonusRule | None:
        """The largest rule a top-up of `amount` reaches."""
        return max((r for r in self.bonus_rules if amount >= r.at_least), key=lambda r: r.at_least, default=None)


def settings_of(ctx) -> StoredValueSettings:
    return ctx.shop.settings_for(NAME)
