"""The stored-value ledger: one account row per member, immutable entries, one lot per top-up and kind.

principal = sum(remaining of the member's open principal lots), bonus likewise, always; held is what open
checkouts hold, still in the lots; balance = principal + bonus - held. Every change locks the account row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from memberkit.plugin import Int64, member_column, timestamp


class StoredValueAccount(SQLModel, table=True):
    __tablename__ = "stored_value_account"

    member_id: str = Field(sa_column=member_column(primary_key=True))
    shop: str = Field(max_length=64)
    principal: int = Field(default=0, sa_type=Int64)  # money paid in, not yet spent or refunded
    bonus: int = Field(default=0, sa_type=Int64)  # the shop's bonus, not yet spent, expired or taken back
    held: int = Field(default=0, sa_type=Int64)  # held by open checkouts (out of the balance)


class StoredValueTopUp(SQLModel, table=True):
    """One top-up as the platform reported it, and how much of it a refund gave or took back."""

    __tablename__ = "stored_value_top_up"
    __table_args__ = (Index("ix_stored_value_top_up_member", "member_id"),)

    shop: str = Field(primary_key=True, max_length=64)
    top_up_id: str = Field(primary_key=True, max_length=200)
    member_id: str = Field(sa_column=member_column())
    amount: int = Field(sa_type=Int64)
    bonus: int = Field(sa_type=Int64)
    rule: str = Field(max_length=40)  # bonus:50000 (the rule reached) or none
    refunded: int = Field(default=0, sa_type=Int64)  # principal given back by refundTopUp
    # The bonus those refunds took back (cumulative floor of bonus * refunded / amount), and of it what came
    # from the bonus lot and what, spent already, was charged to the principal (the rest had lapsed).
    bonus_taken_back: int = Field(default=0, sa_type=Int64)
    bonus_from_lot: int = Field(default=0, sa_type=Int64)
    bonus_charged: int = Field(default=0, sa_type=Int64)
    paid_at: datetime = timestamp()


class StoredValueEntry(SQLModel, table=True):
    """One immutable change, signed, principal and bonus apart."""

    __tablename__ = "stored_value_entry"
    __table_args__ = (Index("ix_stored_value_entry_member_id", "member_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    shop: str = Field(max_length=64)
    member_id: str = Field(sa_column=member_column())
    principal: int = Field(sa_type=Int64)
    bonus: int = Field(sa_type=Int64)
    reason: str = Field(max_length=24)  # TOP_UP | TOP_UP_REFUND | SPEND | RETURN | EXPIRE
    rule: str = Field(max_length=80)
    reference: str | None = Field(default=None, max_length=200)  # the top-up, refund or order
    event_id: int | None = None
    created_at: datetime = timestamp()


class StoredValueLot(SQLModel, table=True):
    """What one top-up left to spend, of one kind: the principal never expires, the bonus does."""

    __tablename__ = "stored_value_lot"
    __table_args__ = (
        Index("ix_stored_value_lot_member", "member_id", "state", "kind", "expires_at"),
        Index("ix_stored_value_lot_due", "shop", "state", "kind", "expires_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    shop: str = Field(max_length=64)
    member_id: str = Field(sa_column=member_column())
    top_up_id: str = Field(max_length=200)
    kind: str = Field(max_length=10)  # principal | bonus
    amount: int = Field(sa_type=Int64)
    remaining: int = Field(sa_type=Int64)
    expired: int = Field(default=0, sa_type=Int64)  # what lapsed unspent (bonus lots)
    state: str = Field(max_length=8)  # open | closed
    expires_at: datetime = timestamp()  # NEVER for principal


class StoredValueHold(SQLModel, table=True):
    """Stored value a checkout holds: counted in the account's ``held`` (out of the balance, still in the lots)
    until the order is paid (CAPTURED), or the checkout is released or expires (RELEASED)."""

    __tablename__ = "stored_value_hold"
    __table_args__ = (Index("ix_stored_value_hold_member", "member_id"),)

    checkout_id: str = Field(primary_key=True, max_length=64)
    shop: str = Field(max_length=64)
    member_id: str = Field(sa_column=member_column())
    amount: int = Field(sa_type=Int64)
    status: str = Field(max_length=10)  # HELD | CAPTURED | RELEASED
    created_at: datetime = timestamp()
    settled_at: datetime | None = timestamp(nullable=True)
    order_id: str | None = Field(default=None, max_length=200)


class StoredValueOrder(SQLModel, table=True):
    """What one paid order took from the balance, lot by lot ({lot id: amount} in the order taken), and what
    its refunds returned so far: a refund returns the same parts to the same lots."""

    __tablename__ = "stored_value_order"
    __table_args__ = (Index("ix_stored_value_order_member", "member_id"),)

    shop: str = Field(primary_key=True, max_length=64)
    order_id: str = Field(primary_key=True, max_length=200)
    member_id: str = Field(sa_column=member_column())
    total: int = Field(sa_type=Int64)  # the order's total
    principal: int = Field(sa_type=Int64)
    bonus: int = Field(sa_type=Int64)
    # {"principal": [[lot id, amount], ...], "bonus": [...]}: the lots taken from, in the order taken
    lots: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    returned_principal: int = Field(default=0, sa_type=Int64)
    returned_bonus: int = Field(default=0, sa_type=Int64)
