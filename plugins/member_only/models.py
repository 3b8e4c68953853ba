"""The member_only plugin's table: one rule per product (sku) and shop, written by the integrator's
``upsertProductRule`` with one INSERT ... ON CONFLICT DO UPDATE (the primary key decides, not a prior read)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, String
from sqlmodel import Field, SQLModel

from memberkit.plugin import timestamp


class ProductRule(SQLModel, table=True):
    """Who may buy `sku` and from when, and its member price (minor units). A product without a row is
    open to everyone at its list price."""

    __tablename__ = "member_only_product_rule"

    shop: str = Field(sa_column=Column(String(64), primary_key=True))
    sku: str = Field(sa_column=Column(String(200), primary_key=True))
    member_only: bool
    min_tier: str | None = Field(default=None, max_length=32)
    segment: str | None = Field(default=None, max_length=64)  # only its members may buy
    launch_at: datetime | None = timestamp(nullable=True)
    member_price: int | None = None
    event_id: int | None = None  # the core_event that last wrote the rule: who sent it, under which settings
    created_at: datetime = timestamp()
    updated_at: datetime = timestamp()
