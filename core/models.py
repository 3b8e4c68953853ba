"""Core's tables. Every row carries its shop: a shop is a tenant and every query filters by it."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Column, ForeignKey, Index, String, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from memberkit.core.db import UTCDateTime


def timestamp(nullable: bool = False, index: bool = False) -> Any:
    """A UTC timestamp column (aware datetimes in and out on every database)."""
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable, index=index)


def member_column(primary_key: bool = False) -> Column:
    """The member a row belongs to: a foreign key onto core's members (``Field(sa_column=member_column())``)."""
    return Column(String(32), ForeignKey("core_member.id"), primary_key=primary_key, nullable=False)


class Member(SQLModel, table=True):
    __tablename__ = "core_member"
    __table_args__ = (UniqueConstraint("shop", "external_id", name="uq_core_member_shop_external_id"),
                      Index("ix_core_member_tokens_valid_from", "tokens_valid_from"),
                      Index("ix_core_member_shop_id", "shop", "id"),  # the member search: a shop's members by id
                      Index("ix_core_member_tags", text("(CAST(tags AS JSONB))"), postgresql_using="gin").ddl_if(
                          dialect="postgresql"))  # its tag filters (?) on PostgreSQL, and their statistics

    id: str = Field(primary_key=True, max_length=32)
    shop: str = Field(max_length=64)
    external_id: str = Field(max_length=200)
    joined_at: datetime = timestamp()
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = timestamp()
    paid_orders: int = Field(default=0, sa_column_kwargs={"server_default": "0"})  # orders recorded, refunds too
    tokens_valid_from: datetime | None = timestamp(nullable=True)  # member tokens minted before it are revoked
    erased_at: datetime | None = timestamp(nullable=True)  # eraseMember: personal data gone, ledger kept


class MemberPersonal(SQLModel, table=True):
    """The one place personal data lives; phone and email only as keyed hashes. Erasure deletes the row."""

    __tablename__ = "core_member_personal"
    __table_args__ = (
        Index("ix_core_member_personal_shop_phone", "shop", "phone_hash"),
        Index("ix_core_member_personal_shop_email", "shop", "email_hash"),
    )

    member_id: str = Field(sa_column=member_column(primary_key=True))
    shop: str = Field(max_length=64)
    phone_hash: str | None = Field(default=None, max_length=64)
    email_hash: str | None = Field(default=None, max_length=64)
    birthday: date | None = None
    birthday_changed_at: datetime | None = timestamp(nullable=True)


class Event(SQLModel, table=True):
    """An event received once: the key makes a retry return the stored result instead of running again."""

    __tablename__ = "core_event"
    __table_args__ = (UniqueConstraint("shop", "kind", "key", name="uq_core_event_shop_kind_key"),)

    id: int | None = Field(default=None, primary_key=True)
    shop: str = Field(max_length=64)
    kind: str = Field(max_length=40)
    key: str = Field(max_length=200)
    payload_hash: str = Field(max_length=64)
    result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    api_key_id: str | None = Field(default=None, max_length=32)
    member_id: str | None = Field(default=None, max_length=32)
    settings_version: str = Field(max_length=32)
    created_at: datetime = timestamp()


class Order(SQLModel, table=True):
    """A paid order as reported, kept so that refunds can be checked against it and reversed."""

    __tablename__ = "core_order"
    __table_args__ = (
        UniqueConstraint("shop", "order_id", name="uq_core_order_shop_order_id"),
        Index("ix_core_order_member", "member_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    shop: str = Field(max_length=64)
    order_id: str = Field(max_length=200)
    member_id: str = Field(sa_column=member_column())
    currency: str = Field(max_length=3)
    total: int
    refunded: int = 0
    paid_at: datetime = timestamp()
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Coupon(SQLModel, table=True):
    """A coupon in a member's wallet. EXPIRED is not stored: it is AVAILABLE past `valid_until`."""

    __tablename__ = "core_coupon"
    __table_args__ = (
        UniqueConstraint("shop", "code", name="uq_core_coupon_shop_code"),
        Index("ix_core_coupon_member_status", "member_id", "status"),
    )

    id: str = Field(primary_key=True, max_length=32)
    shop: str = Field(max_length=64)
    member_id: str = Field(sa_column=member_column())
    code: str = Field(max_length=32)
    template: str = Field(max_length=64)
    title: str = Field(max_length=200)
    kind: str = Field(max_length=8)  # FIXED | PERCENT
    value: int
    min_spend: int = 0
    source: str = Field(max_length=120)  # "plugin:rule"
    status: str = Field(default="AVAILABLE", max_length=12)  # AVAILABLE | USED | WITHDRAWN
    issued_at: datetime = timestamp()
    valid_until: datetime | None = timestamp(nullable=True)
    used_at: datetime | None = timestamp(nullable=True)
    used_order_id: str | None = Field(default=None, max_length=200)
    held_by: str | None = Field(default=None, max_length=64)  # a checkout holding it
    held_until: datetime | None = timestamp(nullable=True)
