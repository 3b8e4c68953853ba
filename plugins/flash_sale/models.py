"""The flash_sale plugin's tables.

Counters that many buyers change at once live in rows changed only by conditional UPDATEs (stock.py):
``flash_sale_sale.held/sold`` against ``stock``, and ``flash_sale_member.held/bought`` (one row per sale and
member) against the sale's per-member limit. A reservation row records each hold and what became of it.

Reservations and member counters name their sale without a foreign key. On PostgreSQL a foreign key check
takes a KEY SHARE lock on the sale's row, the one row every buyer of the sale updates: each reservation
would turn that row's lock into a multixact shared with the concurrent stock updates, which cost more
than the rest of the reservation (bench/flash.py: about half the throughput). Sales are never deleted
(cancelling sets `cancelled_at`), and every write that names a sale reads or updates its row in the same
transaction, so no row points at a sale that does not exist.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from memberkit.plugin import member_column, timestamp


class FlashSaleSale(SQLModel, table=True):
    """A sale: a product at a price in a window, with stock; `held + sold <= stock` always."""

    __tablename__ = "flash_sale_sale"
    __table_args__ = (Index("ix_flash_sale_sale_shop_starts", "shop", "starts_at"),)

    id: str = Field(primary_key=True, max_length=32)
    shop: str = Field(max_length=64)
    sku: str = Field(max_length=200)
    title: str = Field(max_length=200)
    price: int
    starts_at: datetime = timestamp()
    ends_at: datetime = timestamp()
    stock: int
    held: int = 0
    sold: int = 0
    per_member_limit: int
    members_only: bool
    min_tier: str | None = Field(default=None, max_length=32)
    segment: str | None = Field(default=None, max_length=64)  # only its members may buy
    cancelled_at: datetime | None = timestamp(nullable=True)
    created_at: datetime = timestamp()
    updated_at: datetime = timestamp()


class FlashSaleReservation(SQLModel, table=True):
    """Units of a sale held for a member until `expires_at`: HELD, then CONFIRMED, RELEASED or EXPIRED."""

    __tablename__ = "flash_sale_reservation"
    __table_args__ = (
        Index("ix_flash_sale_reservation_due", "shop", "status", "expires_at"),
        Index("ix_flash_sale_reservation_sale", "sale_id", "status"),
        Index("ix_flash_sale_reservation_checkout", "checkout_id"),
    )

    id: str = Field(primary_key=True, max_length=32)
    shop: str = Field(max_length=64)
    sale_id: str = Field(max_length=32)  # no foreign key: see the module's docstring
    member_id: str = Field(sa_column=member_column())
    quantity: int
    status: str = Field(max_length=16)
    expires_at: datetime = timestamp()
    checkout_id: str | None = Field(default=None, max_length=64)
    order_id: str | None = Field(default=None, max_length=200)
    created_at: datetime = timestamp()
    updated_at: datetime = timestamp()


class FlashSaleMember(SQLModel, table=True):
    """What one member holds and bought of one sale: `held + bought <= per_member_limit` on every reserve."""

    __tablename__ = "flash_sale_member"

    sale_id: str = Field(primary_key=True, max_length=32)  # no foreign key: see the module's docstring
    member_id: str = Field(sa_column=member_column(primary_key=True))
    shop: str = Field(max_length=64)
    held: int = 0
    bought: int = 0
