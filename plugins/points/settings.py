"""The points programme of one shop: every number of RULES.md section 2 is one of these settings."""

from __future__ import annotations

from typing import Self

from pydantic import AwareDatetime, Field, model_validator

from memberkit.plugin import CouponTemplateName, StrictModel

NAME = "points"


class WindowMultiplier(StrictModel):
    """A campaign: lines paid inside [starts_at, ends_at) earn `multiplier_percent` of their base points."""

    name: str = Field(min_length=1)
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    multiplier_percent: int = Field(gt=100, description="200 = double points")
    categories: list[str] | None = Field(default=None, description="only these categories; all lines if unset")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class ThresholdBonus(StrictModel):
    min_total: int = Field(gt=0, description="order total in minor units")
    points: int = Field(gt=0)


class Milestone(StrictModel):
    lifetime_spend: int = Field(gt=0, description="cumulative paid spend in minor units, net of refunds")
    points: int = Field(gt=0)


class Action(StrictModel):
    points: int = Field(gt=0)
    daily_cap: int = Field(ge=1, description="times a day a member earns it, in the shop's timezone")


class Reward(StrictModel):
    id: str = Field(min_length=1, max_length=64)
    title: str = Field(min_length=1)
    cost_points: int = Field(gt=0)
    coupon_template: CouponTemplateName = Field(min_length=1, description="a coupon template of the shop's [coupons]")


class PointsSettings(StrictModel):
    points_per_unit: int = Field(1, ge=0, description="points per `unit` of money actually paid")
    unit: int = Field(100, gt=0, description="minor units in one unit of money: 100 fen = 1 yuan")
    category_multipliers: dict[str, int] = Field(
        default_factory=dict, description="category -> percent of base points, e.g. shoes = 200 (double)")
    window_multipliers: list[WindowMultiplier] = Field(default_factory=list)
    threshold_bonuses: list[ThresholdBonus] = Field(default_factory=list, description="the highest reached applies")
    milestones: list[Milestone] = Field(default_factory=list, description="each paid once per member")
    pending_days: int = Field(0, ge=0, description="days purchase points wait before they can be spent")
    expiry_months: int | None = Field(
        12, ge=1, description="points expire at the end of the Nth month after the month they were earned")
    expiring_notice_days: int = Field(
        7, ge=0, le=366, description="days before lots expire that points.expiring tells the platform (0: never)")
    actions: dict[str, Action] = Field(default_factory=dict, description="check_in, review, share, ...")
    allow_negative_balance: bool = Field(
        False, description="a refund of spent points drives the balance negative; else the shortfall is recorded")
    rewards: list[Reward] = Field(default_factory=list)
    cash_points_per_unit: int = Field(100, gt=0, description="points worth one unit of money at checkout")
    cash_max_percent: int = Field(50, ge=0, le=100, description="most of an order points may pay")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for category, percent in self.category_multipliers.items():
            if percent <= 0:
                raise ValueError(f"category_multipliers.{category} must be a positive percent (200 = double)")
        spends = [m.lifetime_spend for m in self.milestones]
        if spends != sorted(set(spends)):
            raise ValueError("milestones must rise: each lifetime_spend above the one before")
        ids = [r.id for r in self.rewards]
        if len(ids) != len(set(ids)):
            raise ValueError("rewards need distinct ids")
        return self

    def reward(self, reward_id: str) -> Reward | None:
        return next((r for r in self.rewards if r.id == reward_id), None)


def settings_of(ctx) -> PointsSettings:
    return ctx.shop.settings_for(NAME)
