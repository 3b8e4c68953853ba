"""The referral programme of one shop: ``[shops.<slug>.settings.referral]`` in plugins.toml.

Every number of RULES.md section 3 is one of these settings. Coupons are named by their template in the
shop's ``[shops.<slug>.coupons]``.
"""

from __future__ import annotations

import string
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from memberkit.plugin import CouponTemplateName, StrictModel

NAME = "referral"


class ReferralSettings(StrictModel):
    reward_on: Literal["signup", "first_order"] = Field(
        default="signup",
        description="signup: reward when the friend signs up; first_order: when the friend's first order is paid")
    friend_coupon: CouponTemplateName | None = Field(
        default=None, min_length=1, description="coupon template the friend gets, e.g. REFERRAL_20")
    referrer_coupon: CouponTemplateName | None = Field(
        default=None, min_length=1, description="coupon template the referrer gets, e.g. REFERRAL_20")
    bonus_every: int = Field(
        default=0, ge=0, le=1000, description="every Nth rewarded friend earns the referrer bonus_coupon; 0: never")
    bonus_coupon: CouponTemplateName | None = Field(default=None, min_length=1, description="e.g. REFERRAL_BONUS_50")
    monthly_cap: int = Field(
        default=0, ge=0, description="rewards a referrer earns per calendar month (shop's timezone); 0: no cap")
    withdraw_on_full_refund: bool = Field(
        default=True, description="reward_on = first_order: a fully refunded first order takes back the "
                                  "referral coupons still unused")
    require_contact: bool = Field(
        default=True, description="no reward for a friend who gave neither phone nor email (nothing to check "
                                  "self-referral against)")
    code_length: int = Field(default=8, ge=6, le=16, description="characters in a member's referral code")
    share_url_template: str | None = Field(
        default=None, description='the share link, with {code}, e.g. "https://shop.example/r/{code}"')

    @field_validator("share_url_template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError:
            raise ValueError('a URL with {code} in it, e.g. "https://shop.example/r/{code}"') from None
        if fields != {"code"}:
            raise ValueError('a URL with {code} and no other {...}, e.g. "https://shop.example/r/{code}"')
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.friend_coupon is None and self.referrer_coupon is None:
            raise ValueError("set friend_coupon or referrer_coupon (or both): coupon templates from the shop's "
                             "[coupons], e.g. REFERRAL_20")
        if self.bonus_every and self.bonus_coupon is None:
            raise ValueError(f"bonus_every = {self.bonus_every} needs a bonus_coupon (a coupon template)")
        if self.bonus_coupon is not None and not self.bonus_every:
            raise ValueError("bonus_coupon needs bonus_every (how many friends earn one bonus)")
        return self

    def share_link(self, code: str) -> str | None:
        return self.share_url_template.format(code=code) if self.share_url_template else None


def settings_of(ctx) -> ReferralSettings:
    return ctx.shop.settings_for(NAME)
