"""The stamp card's own table: one row per paid order of a member, with the stamps it added."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from memberkit.plugin import member_column, timestamp


class StampEntry(SQLModel, table=True):
    __tablename__ = "stamps_card"
    __table_args__ = (
        UniqueConstraint("shop", "order_id", name="uq_stamps_card_shop_order_id"),
        Index("ix_stamps_card_shop_member_id", "shop", "member_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    shop: str = Field(max_length=64)
    member_id: str = Field(sa_column=member_column())
    order_id: str = Field(max_length=200)
    stamps: int
    created_at: datetime = timestamp()
