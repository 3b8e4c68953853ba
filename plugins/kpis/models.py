"""The kpis plugin's tables: figures appended by each transaction, folded by a job into per-hour sums and
per-member, per-hour activity marks; and the shop's own daily sales as the platform reports them."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Column, Date, Index, Integer, String
from sqlmodel import Field, SQLModel

from memberkit.plugin import Int64, UTCDateTime, timestamp

# An id that grows past 2^31 on a busy shop: BIGINT on PostgreSQL, SQLite's INTEGER PRIMARY KEY (its rowid).
DeltaId = BigInteger().with_variant(Integer(), "sqlite")


class KpisDelta(SQLModel, table=True):
    """What transactions counted and the fold has not moved yet: one row per figure, never updated, so no
    row is shared by two orders. `bucket` is the start (UTC) of the shop-local hour the figure belongs to;
    `member_id` is set on activity marks (metric "active")."""

    __tablename__ = "kpis_delta"
    __table_args__ = (Index("ix_kpis_delta_shop_metric_bucket", "shop", "metric", "bucket"),)

    id: int | None = Field(default=None, sa_column=Column(DeltaId, primary_key=True, autoincrement=True))
    shop: str = Field(max_length=64)
    metric: str = Field(max_length=64)
    bucket: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    value: int = Field(sa_column=Column(Int64, nullable=False))
    member_id: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))


class KpisHour(SQLModel, table=True):
    """A figure's sum over one shop-local hour; day, week and month sums in any timezone offset are sums
    of these. `(shop, bucket)` finds every figure of a few hours (the edges of programmeKpis' periods)."""

    __tablename__ = "kpis_hour"
    __table_args__ = (Index("ix_kpis_hour_shop_bucket", "shop", "bucket"),)

    shop: str = Field(primary_key=True, max_length=64)
    metric: str = Field(primary_key=True, max_length=64)
    bucket: datetime = Field(sa_column=Column(UTCDateTime, primary_key=True))
    value: int = Field(sa_column=Column(Int64, nullable=False))


class KpisRollup(SQLModel, table=True):
    """The hour sums of one UTC day (span "D") or UTC month ("M"), kept by the fold beside kpis_hour: a
    figure's level at any hour is the months before it, the days and the hours after, not every hour since
    the shop began. Keyed by start before metric, so a range of starts holds every figure."""

    __tablename__ = "kpis_rollup"

    shop: str = Field(primary_key=True, max_length=64)
    span: str = Field(primary_key=True, max_length=1)
    start: datetime = Field(sa_column=Column(UTCDateTime, primary_key=True))
    metric: str = Field(primary_key=True, max_length=64)
    value: int = Field(sa_column=Column(Int64, nullable=False))


class KpisActive(SQLModel, table=True):
    """A member active (ordered or checked in) within a shop-local hour: a distinct count over any range of
    whole hours is exact."""

    __tablename__ = "kpis_active"

    shop: str = Field(primary_key=True, max_length=64)
    bucket: datetime = Field(sa_column=Column(UTCDateTime, primary_key=True))
    member_id: str = Field(primary_key=True, max_length=32)


class KpisStoreSales(SQLModel, table=True):
    """The shop's whole sales of one local day (members' and guests'), as last reported (recordStoreSales)."""

    __tablename__ = "kpis_store_sales"

    shop: str = Field(primary_key=True, max_length=64)
    day: date = Field(sa_column=Column(Date, primary_key=True))
    amount: int = Field(sa_column=Column(Int64, nullable=False))
    orders: int
    reported_at: datetime = timestamp()
    event_id: int | None = None
