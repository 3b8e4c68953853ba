"""The referral plugin's tables: each member's code and counters, each friend who signed up with a code,
and each referrer's rewards per calendar month (the cap's counter row)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from memberkit.plugin import member_column, timestamp


class ReferralCode(SQLModel, table=True):
    """A member's code, unique in the shop (stored upper-case, read case-insensitively), random rather than
    derived from anything about the member. `invited` counts sign-ups with it; `rewarded` the friends whose
    reward stands (net of withdrawals); `bonuses` the bonus coupons that stand. All three change with
    UPDATE ... SET n = n + 1 on this row, which also serialises the rewards of one referrer."""

    __tablename__ = "referral_code"
    __table_args__ = (UniqueConstraint("shop", "code", name="uq_referral_code_shop_code"),)

    member_id: str = Field(sa_column=member_column(primary_key=True))
    shop: str = Field(max_length=64)
    code: str = Field(max_length=16)
    invited: int = 0
    rewarded: int = 0
    bonuses: int = 0
    created_at: datetime = timestamp()


class ReferralFriend(SQLModel, table=True):
    """A member who signed up with someone's code: one row per friend (the key), so a friend is rewarded
    at most once. status: PENDING (waits for the first order), REWARDED, REFUSED (`reason` says why) or
    WITHDRAWN (the first order was fully refunded). The coupon ids are what a withdrawal takes back."""

    __tablename__ = "referral_friend"
    __table_args__ = (Index("ix_referral_friend_shop_referrer", "shop", "referrer_id"),)

    friend_id: str = Field(sa_column=member_column(primary_key=True))
    shop: str = Field(max_length=64)
    referrer_id: str = Field(sa_column=member_column())
    code: str = Field(max_length=16)
    status: str = Field(max_length=12)
    reason: str | None = Field(default=None, max_length=40)
    order_id: str | None = Field(default=None, max_length=200)
    friend_coupon_id: str | None = Field(default=None, max_length=32)
    referrer_coupon_id: str | None = Field(default=None, max_length=32)
    bonus_coupon_id: str | None = Field(default=None, max_length=32)
    created_at: datetime = timestamp()
    rewarded_at: datetime | None = timestamp(nullable=True)
    withdrawn_at: datetime | None = timestamp(nullable=True)


class ReferralMonth(SQLModel, table=True):
    """Rewards a referrer was paid in one calendar month ("2026-03", the shop's timezone): the monthly cap
    is one conditional UPDATE ... WHERE rewarded < cap on this row, never a count followed by an insert."""

    __tablename__ = "referral_month"

    referrer_id: str = Field(sa_column=member_column(primary_key=True))
    month: str = Field(primary_key=True, max_length=7)
    shop: str = Field(max_length=64)
    rewarded: int = 0
