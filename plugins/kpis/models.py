"""The kpis plugin's tables: figures appended by each transaction, folded by a job into per-hour sums and
per-member, per-hour activity marks; and the shop's own daily sales as the platform reports them."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Column, Date, Index, Integer, Text
from sqlmodel import Field, SQLModel

from memberkit.plugin import Int64, UTCDateTime, timestamp

# An id that grows past 2^31 on a busy shop: BIGINT on PostgreSQL, SQLite's INTEGER PRIMARY KEY (its rowid).
DeltaId = BigInteger().with_variant(Integer(), "sqlite")


class KpisDelta(SQLModel, table=True):
    """What one transaction counted and the fold has not moved yet: ONE row per transaction (an order's few
    figures packed in `figures`), never updated, so an order adds one small row and no row is shared by two
    orders. `figures` is JSON: a list of [metric, bucket, value, member_id], `bucket` the start of the
    shop-local hour in UTC as "YYYY-MM-DD HH:MM:SS.ffffff" (how SQLite keeps a timestamp, so both databases
    compare it alike), `member_id` set on activity marks (metric "active")."""

    __tablename__ = "kpis_delta"

    id: int | None = Field(default=None, sa_column=Column(DeltaId, primary_key=True, autoincrement=True))
    shop: str = Field(max_length=64)
    figures: str = Field(sa_column=Column(Text, nullable=False))


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
