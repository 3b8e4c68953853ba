"""The tiering plugin's tables: each member's standing, each paid order (net of refunds), each tier change."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from memberkit.plugin import Int64, member_column, timestamp


class TierMember(SQLModel, table=True):
    """A member's standing. `tier_code` is the tier qualification gave (upgrades at once, downgrades after
    grace); `override_code` a tier set by hand or bought, which wins while it stands. `spend` and `orders`
    are lifetime counters, net of refunds, changed by UPDATE ... SET spend = spend + :x."""

    __tablename__ = "tiering_member"
    __table_args__ = (Index("ix_tiering_member_shop_tier", "shop", "tier_code"),)

    member_id: str = Field(sa_column=member_column(primary_key=True))
    shop: str = Field(max_length=64)
    tier_code: str = Field(max_length=32)
    spend: int = Field(default=0, sa_type=Int64)  # 64-bit: lifetime spend passes 21 million yuan
    orders: int = 0
    override_code: str | None = Field(default=None, max_length=32)
    override_until: datetime | None = timestamp(nullable=True)
    override_reason: str | None = Field(default=None, max_length=500)
    grace_since: datetime | None = timestamp(nullable=True)
    refund_pending: bool = False
    updated_at: datetime = timestamp()


class TierOrder(SQLModel, table=True):
    """A paid order as tiering counts it: rolling windows sum `total - refunded` of the orders in them."""

    __tablename__ = "tiering_order"
    __table_args__ = (
        UniqueConstraint("shop", "order_id", name="uq_tiering_order_shop_order_id"),
        Index("ix_tiering_order_shop_member_paid", "shop", "member_id", "paid_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    shop: str = Field(max_length=64)
    member_id: str = Field(sa_column=member_column())
    order_id: str = Field(max_length=200)
    total: int
    refunded: int = 0
    paid_at: datetime = timestamp()


class TierChange(SQLModel, table=True):
    """One change of a member's tier and why: order, refund, evaluation, manual or paid_upgrade."""

    __tablename__ = "tiering_history"
    __table_args__ = (Index("ix_tiering_history_shop_member", "shop", "member_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    shop: str = Field(max_length=64)
    member_id: str = Field(sa_column=member_column())
    from_code: str | None = Field(default=None, max_length=32)
    to_code: str = Field(max_length=32)
    reason: str = Field(max_length=20)
    reference: str | None = Field(default=None, max_length=200)
    note: str = Field(default="", max_length=500)
    created_at: datetime = timestamp()
