"""The points ledger: immutable entries, lots that expire, and one account row per member.

balance = sum(remaining of open lots) - debt - held, always; debt is non-zero only where the shop allows a
negative balance; held is what open checkouts hold (``points_hold``), still in its lots until captured.
Every change locks the account row first, so lots are consumed in one order.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from memberkit.plugin import Int64, UTCDateTime, member_column, timestamp


class PointsAccount(SQLModel, table=True):
    __tablename__ = "points_account"

    member_id: str = Field(sa_column=member_column(primary_key=True))
    shop: str = Field(max_length=64)
    # 64-bit: sums over the member's history never overflow (the points plugin keeps what it serves in Int)
    balance: int = Field(default=0, sa_type=Int64)  # spendable now (held points excluded)
    held: int = Field(default=0, sa_type=Int64, sa_column_kwargs={"server_default": "0"})  # held by checkouts
    pending: int = Field(default=0, sa_type=Int64)  # earned, not yet spendable
    debt: int = Field(default=0, sa_type=Int64)  # taken back beyond the balance, where a negative one is allowed
    shortfall: int = Field(default=0, sa_type=Int64)  # taken back beyond the balance and not recovered
    lifetime_earned: int = Field(default=0, sa_type=Int64)
    lifetime_spend: int = Field(default=0, sa_type=Int64)  # money paid, net of refunds: what milestones count
    # No lot matures or expires before this instant, so a write skips looking for due lots until then;
    # NULL: not known (look, then set it).
    next_due_at: datetime | None = timestamp(nullable=True)


class PointsEntry(SQLModel, table=True):
    """One immutable change: who, how much, why, by which rule, from which event."""

    __tablename__ = "points_entry"
    __table_args__ = (
        Index("ix_points_entry_member_id", "member_id", "id"),
        Index("ix_points_entry_order", "shop", "order_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    shop: str = Field(max_length=64)
    member_id: str = Field(sa_column=member_column())
    delta: int
    reason: str = Field(max_length=24)  # EARN | SPEND | REFUND | EXPIRE | ADJUST
    rule: str = Field(max_length=80)  # base, category:shoes, threshold:100000, reward:coupon_10, ...
    order_id: str | None = Field(default=None, max_length=200)
    event_id: int | None = None
    actor: str | None = Field(default=None, max_length=32)  # the key that adjusted by hand
    note: str | None = Field(default=None, max_length=200)
    created_at: datetime = timestamp()


class PointsLot(SQLModel, table=True):
    """What one earn left to spend; spending takes the soonest-expiring open lots first."""

    __tablename__ = "points_lot"
    __table_args__ = (
        Index("ix_points_lot_member_state_expiry", "member_id", "state", "expires_at"),
        Index("ix_points_lot_state_expiry", "shop", "state", "expires_at"),
        Index("ix_points_lot_state_available", "shop", "state", "available_at"),
        Index("ix_points_lot_order", "shop", "order_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    shop: str = Field(max_length=64)
    member_id: str = Field(sa_column=member_column())
    entry_id: int
    order_id: str | None = Field(default=None, max_length=200)
    amount: int
    remaining: int
    state: str = Field(max_length=8)  # pending | open | closed (spent out or expired)
    available_at: datetime = timestamp()
    expires_at: datetime = timestamp()  # NEVER for points that do not expire


class PointsMilestone(SQLModel, table=True):
    """A lifetime-spend milestone a member has been paid for: once each."""

    __tablename__ = "points_milestone"

    member_id: str = Field(sa_column=member_column(primary_key=True))
    lifetime_spend: int = Field(primary_key=True)
    shop: str = Field(max_length=64)
    order_id: str = Field(max_length=200)


class PointsActionDay(SQLModel, table=True):
    """How often a member did an action on a local day: the daily cap is a conditional UPDATE on it."""

    __tablename__ = "points_action_day"

    member_id: str = Field(sa_column=member_column(primary_key=True))
    action: str = Field(primary_key=True, max_length=40)
    day: str = Field(primary_key=True, max_length=10)  # YYYY-MM-DD in the shop's timezone
    shop: str = Field(max_length=64)
    count: int = 0


class PointsHold(SQLModel, table=True):
    """Points a checkout holds: moved from the balance to ``held`` until the order is paid (CAPTURED: spent
    from the lots), or the checkout is released or expires (RELEASED: back in the balance)."""

    __tablename__ = "points_hold"
    __table_args__ = (Index("ix_points_hold_member", "member_id"),)

    checkout_id: str = Field(primary_key=True, max_length=64)
    shop: str = Field(max_length=64)
    member_id: str = Field(sa_column=member_column())
    amount: int
    status: str = Field(max_length=10)  # HELD | CAPTURED | RELEASED
    created_at: datetime = timestamp()
    settled_at: datetime | None = timestamp(nullable=True)
    order_id: str | None = Field(default=None, max_length=200)


class PointsExpiryNotice(SQLModel, table=True):
    """A ``points.expiring`` event sent for the member's lots expiring at one moment: once each."""

    __tablename__ = "points_expiry_notice"

    member_id: str = Field(sa_column=member_column(primary_key=True))
    expires_at: datetime = Field(sa_type=UTCDateTime, primary_key=True)
    shop: str = Field(max_length=64)
    points: int
    created_at: datetime = timestamp()
