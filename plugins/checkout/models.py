"""The checkout plugin's one table: a member's checkout, the quote it was started with and its state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from memberkit.plugin import member_column, timestamp


class Checkout(SQLModel, table=True):
    """HELD holds the coupons (core_coupon.held_by) and, through the checkout hooks, plugins' points and
    reservations; COMPLETED, RELEASED and EXPIRED are final. `cart` is what the storefront sent; `quote` is
    the price built from it, with the coupon codes and points it uses.
    """

    __tablename__ = "checkout_session"
    __table_args__ = (
        Index("ix_checkout_session_shop_status_expiry", "shop", "status", "expires_at"),
        Index("ix_checkout_session_member", "member_id"),
    )

    id: str = Field(primary_key=True, max_length=64)
    shop: str = Field(max_length=64)
    member_id: str = Field(sa_column=member_column())
    status: str = Field(max_length=12)  # HELD | COMPLETED | RELEASED | EXPIRED
    cart: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    quote: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = timestamp()
    expires_at: datetime = timestamp()
    settled_at: datetime | None = timestamp(nullable=True)
    order_id: str | None = Field(default=None, max_length=200)
