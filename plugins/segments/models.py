"""The segments plugin's tables: each member's lifecycle stage (and tier, as told) with its history, RFM
scores, the purchases segments count and who is in which segment."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from memberkit.plugin import Int64, member_column, timestamp


class SegmentsLifecycle(SQLModel, table=True):
    """A member's stage (NEW, ACTIVE, DORMANT, CHURNED), since when, and their last paid order (net of full
    refunds), from which time moves the stage on; and the member's tier as the ``tier_changed`` hook last
    told it, so segment rules on tiers are SQL over segments' own rows."""

    __tablename__ = "segments_lifecycle"
    # The job walks (stage, last order); the member search walks a stage's or a tier's members in id order.
    __table_args__ = (Index("ix_segments_lifecycle_shop_stage_last", "shop", "stage", "last_order_at"),
                      Index("ix_segments_lifecycle_shop_stage_member", "shop", "stage", "member_id"),
                      Index("ix_segments_lifecycle_shop_tier_member", "shop", "tier_code", "member_id"))

    member_id: str = Field(sa_column=member_column(primary_key=True))
    shop: str = Field(max_length=64)
    stage: str = Field(max_length=10)
    since: datetime = timestamp()
    last_order_at: datetime | None = timestamp(nullable=True)
    tier_code: str | None = Field(default=None, max_length=32)
    tier_rank: int | None = None


class SegmentsLifecycleChange(SQLModel, table=True):
    """One change of a member's stage and why: ORDER, REFUND or TIME."""

    __tablename__ = "segments_lifecycle_history"
    __table_args__ = (Index("ix_segments_lifecycle_history_shop_member", "shop", "member_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    shop: str = Field(max_length=64)
    member_id: str = Field(sa_column=member_column())
    from_stage: str | None = Field(default=None, max_length=10)
    to_stage: str = Field(max_length=10)
    reason: str = Field(max_length=10)
    reference: str | None = Field(default=None, max_length=200)
    created_at: datetime = timestamp()


class SegmentsRfm(SQLModel, table=True):
    """A member's RFM scores (1-5) as of the last run, with the values they were scored on; computed_at is
    the run that last changed the row (a run rewrites only the rows that differ)."""

    __tablename__ = "segments_rfm"
    __table_args__ = (Index("ix_segments_rfm_shop_band_member", "shop", "band", "member_id"),)  # a band in id order

    member_id: str = Field(sa_column=member_column(primary_key=True))
    shop: str = Field(max_length=64)
    recency: int
    frequency: int
    monetary: int
    band: str | None = Field(default=None, max_length=32)
    last_order_at: datetime = timestamp()
    orders: int
    spend: int = Field(sa_type=Int64)
    computed_at: datetime = timestamp()


class SegmentsRfmRun(SQLModel, table=True):
    """The last RFM run of a shop: when, over which window, and each score's range of values (cut-offs)."""

    __tablename__ = "segments_rfm_run"

    shop: str = Field(primary_key=True, max_length=64)
    computed_at: datetime = timestamp()
    window_days: int
    members: int
    cutoffs: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class SegmentsPurchase(SQLModel, table=True):
    """A paid order with a line of a category some segment counts (``bought``), until refunded in full."""

    __tablename__ = "segments_purchase"
    __table_args__ = (Index("ix_segments_purchase_member_category", "member_id", "category", "paid_at"),)

    shop: str = Field(primary_key=True, max_length=64)
    order_id: str = Field(primary_key=True, max_length=200)
    category: str = Field(primary_key=True, max_length=100)
    member_id: str = Field(sa_column=member_column())
    paid_at: datetime = timestamp()


class SegmentsMember(SQLModel, table=True):
    """A member of a segment (a code of the shop's settings) since when."""

    __tablename__ = "segments_member"
    __table_args__ = (Index("ix_segments_member_shop_segment_member", "shop", "segment", "member_id"),)

    member_id: str = Field(sa_column=member_column(primary_key=True))
    segment: str = Field(primary_key=True, max_length=64)
    shop: str = Field(max_length=64)
    since: datetime = timestamp()
