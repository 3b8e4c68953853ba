"""The webhooks plugin's tables: the outbox, the endpoints and one delivery per event and endpoint.

``webhooks_event`` is the transactional outbox: written by the event's own transaction (one statement per
transaction, however many events), read by the delivery loop. A new event is *fanned out* once
(``fanned`` false → true) into a ``webhooks_delivery`` row for each enabled endpoint subscribed to its type;
a flag rather than a cursor over ids, because on PostgreSQL ids are not committed in order and a cursor
would skip an event whose transaction committed late. ``webhooks_sequence`` keeps each member's last
sequence number, so that numbers keep rising after old events are pruned.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from memberkit.plugin import Int64, timestamp


class WebhookEvent(SQLModel, table=True):
    """One outbound event: its type, the member by id and externalId, their sequence and the payload."""

    __tablename__ = "webhooks_event"
    __table_args__ = (
        UniqueConstraint("member_id", "sequence", name="uq_webhooks_event_member_sequence"),
        Index("ix_webhooks_event_unfanned", "fanned", "id"),
        Index("ix_webhooks_event_shop_created", "shop", "created_at"),
    )

    id: int | None = Field(default=None, sa_type=Int64, primary_key=True)  # 64-bit: ids outlive pruning
    shop: str = Field(max_length=64)
    type: str = Field(max_length=64)
    member_id: str | None = Field(default=None, max_length=32)
    external_id: str | None = Field(default=None, max_length=200)
    sequence: int | None = Field(default=None, sa_type=Int64)
    data: str = Field(sa_type=Text)  # JSON, encoded once so that every attempt sends the same bytes
    created_at: datetime = timestamp()
    fanned: bool = False


class WebhookSequence(SQLModel, table=True):
    """The last outbound sequence number of a member (PostgreSQL takes it with the member's row lock)."""

    __tablename__ = "webhooks_sequence"

    member_id: str = Field(primary_key=True, max_length=32)
    last: int = Field(sa_type=Int64)


class WebhookEndpoint(SQLModel, table=True):
    """Where a shop's events go: a URL (``kind`` http) or the shop's RabbitMQ exchange (``kind`` amqp, from
    settings). The signing secret is never stored: it is derived from a server key (``key_id``, one of
    MEMBERKIT_WEBHOOK_KEYS) and a random ``salt``; a rotation keeps the old pair until ``old_until``."""

    __tablename__ = "webhooks_endpoint"
    __table_args__ = (Index("ix_webhooks_endpoint_shop", "shop"),)

    id: str = Field(primary_key=True, max_length=32)
    shop: str = Field(max_length=64)
    kind: str = Field(default="http", max_length=8)
    url: str = Field(max_length=2000)
    event_types: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    enabled: bool = True
    key_id: str = Field(max_length=16)
    salt: str = Field(max_length=64)
    old_key_id: str | None = Field(default=None, max_length=16)
    old_salt: str | None = Field(default=None, max_length=64)
    old_until: datetime | None = timestamp(nullable=True)
    failing_since: datetime | None = timestamp(nullable=True)
    disabled_reason: str | None = Field(default=None, max_length=200)
    created_at: datetime = timestamp()
    updated_at: datetime = timestamp()


class WebhookDelivery(SQLModel, table=True):
    """One event to one endpoint: PENDING until a 2xx (DELIVERED) or the last retry failed (FAILED).

    A process claims a due delivery by setting ``lease_owner``/``lease_until`` in a committed transaction
    before it sends; a process that dies mid-request leaves a lease that simply runs out."""

    __tablename__ = "webhooks_delivery"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id", name="uq_webhooks_delivery_endpoint_event"),
        Index("ix_webhooks_delivery_due", "status", "next_attempt_at"),
        Index("ix_webhooks_delivery_shop_endpoint", "shop", "endpoint_id", "id"),
        Index("ix_webhooks_delivery_event", "event_id"),
    )

    id: int | None = Field(default=None, sa_type=Int64, primary_key=True)
    shop: str = Field(max_length=64)
    endpoint_id: str = Field(max_length=32)
    event_id: int = Field(sa_type=Int64)
    status: str = Field(default="PENDING", max_length=10)  # PENDING | DELIVERED | FAILED
    attempts: int = 0
    next_attempt_at: datetime | None = timestamp(nullable=True)
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = timestamp(nullable=True)
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    delivered_at: datetime | None = timestamp(nullable=True)
    created_at: datetime = timestamp()
