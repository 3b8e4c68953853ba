"""The perks plugin's tables: one row per gift that must be given at most once (the primary key decides,
not a prior read), so that concurrent events and repeated or late jobs never give twice.

No personal data is copied here: the birthday stays in core_member_personal, these rows hold only the year.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from memberkit.plugin import member_column, timestamp


class PerksFirstOrder(SQLModel, table=True):
    """The member's first paid order, claimed once: the first-order coupon is decided on it alone."""

    __tablename__ = "perks_first_order"
    __table_args__ = (Index("ix_perks_first_order_shop_order", "shop", "order_id"),)

    member_id: str = Field(sa_column=member_column(primary_key=True))
    shop: str = Field(max_length=64)
    order_id: str = Field(max_length=200)
    total: int
    coupon_id: str | None = Field(default=None, max_length=32)  # None: the order was below the minimum
    created_at: datetime = timestamp()


class PerksBirthdayCoupon(SQLModel, table=True):
    """A birthday coupon given for `year` (the shop's calendar): once a year per member."""

    __tablename__ = "perks_birthday_coupon"

    member_id: str = Field(sa_column=member_column(primary_key=True))
    year: int = Field(primary_key=True)
    shop: str = Field(max_length=64)
    coupon_id: str | None = Field(default=None, max_length=32)
    issued_at: datetime = timestamp()


class PerksMonthlyCoupon(SQLModel, table=True):
    """A monthly tier coupon given for `month` ("YYYY-MM", the shop's calendar): once a month per member."""

    __tablename__ = "perks_monthly_coupon"

    member_id: str = Field(sa_column=member_column(primary_key=True))
    month: str = Field(primary_key=True, max_length=7)
    shop: str = Field(max_length=64)
    tier_code: str | None = Field(default=None, max_length=32)
    coupon_id: str | None = Field(default=None, max_length=32)
    issued_at: datetime = timestamp()


class PerksFirstOrderHold(SQLModel, table=True):
    """The first-order discount held by one open checkout: two tabs cannot both pay a "first" order."""

    __tablename__ = "perks_first_order_hold"

    member_id: str = Field(sa_column=member_column(primary_key=True))
    shop: str = Field(max_length=64)
    checkout_id: str = Field(max_length=64)
    held_until: datetime = timestamp()
