"""Core's tables. Every row carries its shop: a shop is a tenant and every query filters by it."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from memberkit.core.db import UTCDateTime
from sqlalchemy import JSON, Column, ForeignKey, Index, String, UniqueConstraint
from sqlmodel import Field, SQLModel


def _when(nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable, index=index)


class ApiKey(SQLModel, table=True):
    """An integrator's secret key or a storefront's publishable key; only its SHA-256 is stored."""

    __tablename__ = "core_api_key"

    id: str = Field(primary_key=True, max_length=32)
    shop: str = Field(max_length=64, index=True)
    kind: str = Field(max_length=16)  # "secret" | "publishable"
    key_hash: str = Field(max_length=64, unique=True)
    prefix: str = Field(max_length=16)  # the first characters, to tell keys apart in listings
    label: str = Field(default="", max_length=200)
    created_at: datetime = _when()
    revoked_at: datetime | None = _when(nullable=True)


class Member(SQLModel, table=True):
    __tablename__ = "core_member"
    __table_args__ = (UniqueConstraint("shop", "external_id", name="uq_core_member_shop_external_id"),)

    id: str = Field(primary_key=True, max_length=32)
    shop: str = Field(max_length=64)
    external_id: str = Field(max_length=200)
    joined_at: datetime = _when()
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _when()
    paid_orders: int = Field(default=0, sa_column_kwargs={"server_default": "0"})  # orders recorded, refunds too


class MemberPersonal(SQLModel, table=True):
    """The one place personal data lives; phone and email only as keyed hashes. Erasure deletes the row."""

    __tablename__ = "core_member_personal"
    __table_args__ = (
        Index("ix_core_member_personal_shop_phone", "shop", "phone_hash"),
        Index("ix_core_member_personal_shop_email", "shop", "email_hash"),
    )

    member_id: str = Field(sa_column=Column(String(32), ForeignKey("core_member.id"), primary_key=True))
    shop: str = Field(max_length=64)
    phone_hash: str | None = Field(default=None, max_length=64)
    email_hash: str | None = Field(default=None, max_length=64)
    birthday: date | None = None
    birthday_changed_at: datetime | None = _when(nullable=True)


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
    created_at: datetime = _when()


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
    member_id: str = Field(sa_column=Column(String(32), ForeignKey("core_member.id"), nullable=False))
    currency: str = Field(max_length=3)
    total: int
    refunded: int = 0
    paid_at: datetime = _when()
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
    member_id: str = Field(sa_column=Column(String(32), ForeignKey("core_member.id"), nullable=False))
    code: str = Field(max_length=32)
    template: str = Field(max_length=64)
    title: str = Field(max_length=200)
    kind: str = Field(max_length=8)  # FIXED | PERCENT
    value: int
    min_spend: int = 0
    source: str = Field(max_length=120)  # "plugin:rule"
    status: str = Field(default="AVAILABLE", max_length=12)  # AVAILABLE | USED | WITHDRAWN
    issued_at: datetime = _when()
    valid_until: datetime | None = _when(nullable=True)
    used_at: datetime | None = _when(nullable=True)
    used_order_id: str | None = Field(default=None, max_length=200)
    held_by: str | None = Field(default=None, max_length=64)  # a checkout holding it
    held_until: datetime | None = _when(nullable=True)


class JobLease(SQLModel, table=True):
    """Which process runs a job for a shop now, and when it last finished."""

    __tablename__ = "core_job_lease"

    shop: str = Field(primary_key=True, max_length=64)
    job: str = Field(primary_key=True, max_length=120)
    owner: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = _when(nullable=True)
    last_run_at: datetime | None = _when(nullable=True)
    last_result: str | None = Field(default=None, max_length=500)


class Checkout(SQLModel, table=True):
    """A member's checkout: the quote it was started with and what it holds until paid, released or expired.

    HELD holds the coupons (core_coupon.held_by) and, through the checkout hooks, plugins' points and
    reservations; COMPLETED, RELEASED and EXPIRED are final. `cart` is what the storefront sent; `quote` is
    the price built from it, with the coupon codes and points it uses.
    """

    __tablename__ = "core_checkout"
    __table_args__ = (
        Index("ix_core_checkout_shop_status_expiry", "shop", "status", "expires_at"),
        Index("ix_core_checkout_member", "member_id"),
    )

    id: str = Field(primary_key=True, max_length=64)
    shop: str = Field(max_length=64)
    member_id: str = Field(sa_column=Column(String(32), ForeignKey("core_member.id"), nullable=False))
    status: str = Field(max_length=12)  # HELD | COMPLETED | RELEASED | EXPIRED
    cart: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    quote: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _when()
    expires_at: datetime = _when()
    settled_at: datetime | None = _when(nullable=True)
    order_id: str | None = Field(default=None, max_length=200)
