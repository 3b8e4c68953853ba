"""webhooks' part of the schema (integrator only): outboundEventTypes, webhookEndpoints, webhookDeliveries,
and the endpoint mutations of ../shared/contract/outbound-events.graphql."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Optional

import strawberry
from sqlalchemy import select

from memberkit.plugin import (
    Context,
    EventResult,
    PageInfo,
    RequestContext,
    StaffWrite,
    UserError,
    VisibleError,
    check_list_length,
    declared_event_types,
    id_after,
    id_cursor,
    limited_list,
)
from memberkit.plugins.webhooks import endpoints
from memberkit.plugins.webhooks.outbox import DELIVERIES, ENDPOINTS, EVENTS
from memberkit.plugins.webhooks.signing import message_id

MAX_PAGE = 100


@strawberry.type(description="Where the shop's outbound events are delivered, signed per Standard Webhooks.")
class WebhookEndpoint:
    id: strawberry.ID
    url: str
    event_types: list[str] = strawberry.field(description="empty: every type")
    enabled: bool
    created_at: datetime
    disabled_reason: Optional[str] = strawberry.field(
        description="why the endpoint is disabled: by the integrator, or after failing every delivery for "
                    "the shop's disable_after_hours")
    failing_since: Optional[datetime] = strawberry.field(description="since when every delivery failed")

    @classmethod
    def of(cls, row: Any) -> WebhookEndpoint:
        return cls(id=strawberry.ID(row.id), url=row.url, event_types=list(row.event_types), enabled=row.enabled,
                   created_at=row.created_at, disabled_reason=row.disabled_reason, failing_since=row.failing_since)


@strawberry.type
class WebhookEndpointPayload:
    endpoint: Optional[WebhookEndpoint]
    secret: Optional[str] = strawberry.field(
        description='"whsec_" + base64: returned by createWebhookEndpoint and rotateWebhookSecret only')
    errors: list[UserError]


@strawberry.enum
class WebhookDeliveryStatus(enum.Enum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


@strawberry.type(description="One event to one endpoint: its attempts so far and how the last one went.")
class WebhookDelivery:
    id: strawberry.ID
    endpoint_id: strawberry.ID
    event_id: strawberry.ID = strawberry.field(description="the webhook-id header of every attempt")
    event_type: str
    status: WebhookDeliveryStatus
    attempts: int
    last_status_code: Optional[int]
    last_error: Optional[str]
    next_attempt_at: Optional[datetime]
    delivered_at: Optional[datetime]
    created_at: datetime

    @classmethod
    def of(cls, row: Any) -> WebhookDelivery:
        return cls(id=strawberry.ID(str(row.id)), endpoint_id=strawberry.ID(row.endpoint_id),
                   event_id=strawberry.ID(message_id(row.event_id)), event_type=row.type,
                   status=WebhookDeliveryStatus(row.status), attempts=row.attempts,
                   last_status_code=row.last_status_code, last_error=row.last_error,
                   next_attempt_at=row.next_attempt_at, delivered_at=row.delivered_at, created_at=row.created_at)


@strawberry.type
class WebhookDeliveryEdge:
    node: WebhookDelivery
    cursor: str


@strawberry.type
class WebhookDeliveryConnection:
    edges: list[WebhookDeliveryEdge]
    page_info: PageInfo


@strawberry.type
class SendTestWebhookPayload:
    delivery: Optional[WebhookDelivery]
    errors: list[UserError]


@strawberry.type
class RedeliverWebhooksPayload:
    queued: int
    errors: list[UserError]


@strawberry.input
class WebhookEndpointInput:
    url: str = strawberry.field(description="https:// (http:// to a loopback address only in development)")
    event_types: Optional[list[str]] = limited_list(endpoints.MAX_EVENT_TYPES, "The types to receive; empty or "
                                                                               "left out: every type.")
    idempotency_key: Optional[str] = None


_DELIVERY_COLUMNS = (DELIVERIES.c.id, DELIVERIES.c.endpoint_id, DELIVERIES.c.event_id, DELIVERIES.c.status,
                     DELIVERIES.c.attempts, DELIVERIES.c.last_status_code, DELIVERIES.c.last_error,
                     DELIVERIES.c.next_attempt_at, DELIVERIES.c.delivered_at, DELIVERIES.c.created_at, EVENTS.c.type)


def _deliveries(ctx: Context):
    return (select(*_DELIVERY_COLUMNS).join(EVENTS, EVENTS.c.id == DELIVERIES.c.event_id)
            .where(DELIVERIES.c.shop == ctx.shop.slug))


def _endpoint_payload(context: RequestContext, result: EventResult, with_secret: bool):
    async def build() -> WebhookEndpointPayload:
        if result.errors:
            return WebhookEndpointPayload(endpoint=None, secret=None, errors=[UserError.of(e) for e in result.errors])
        endpoint_id = result.data["endpoint_id"]

        def read(ctx: Context) -> Any:
            return ctx.conn.execute(select(ENDPOINTS).where(ENDPOINTS.c.id == endpoint_id)).first()

        row = await context.read(read)
        if row is None:  # deleted: the endpoint as it was
            gone = result.data["deleted"]
            return WebhookEndpointPayload(endpoint=WebhookEndpoint(
                id=strawberry.ID(endpoint_id), url=gone["url"], event_types=gone["event_types"], enabled=False,
                created_at=datetime.fromisoformat(gone["created_at"]), disabled_reason="deleted",
                failing_since=None), secret=None, errors=[])
        return WebhookEndpointPayload(endpoint=WebhookEndpoint.of(row),
                                      secret=endpoints.secret_of(row) if with_secret else None, errors=[])
    return build()


def outbound_event_types(Member):
    async def resolve(info: strawberry.Info) -> list[str]:
        """Every outbound event type of this shop: core's and its plugins' (docs/events.md)."""
        context: RequestContext = info.context
        context.require_integrator(allow="read")
        return declared_event_types(context.shop)
    return resolve


def webhook_endpoints(Member):
    async def resolve(info: strawberry.Info) -> list[WebhookEndpoint]:
        """The shop's endpoints, oldest first (integrator)."""
        context: RequestContext = info.context
        context.require_integrator(allow="read")
        rows = await context.read(lambda ctx: ctx.conn.execute(
            select(ENDPOINTS).where(ENDPOINTS.c.shop == ctx.shop.slug, ENDPOINTS.c.kind == "http")
            .order_by(ENDPOINTS.c.created_at, ENDPOINTS.c.id)).all())
        return [WebhookEndpoint.of(row) for row in rows]
    return resolve


def webhook_deliveries(Member):
    async def resolve(info: strawberry.Info, endpoint_id: Optional[strawberry.ID] = None,
                      status: Optional[WebhookDeliveryStatus] = None, first: Optional[int] = 50,
                      after: Optional[str] = None) -> WebhookDeliveryConnection:
        """Deliveries, newest first, with their attempts and last error (integrator; `first` at most 100)."""
        context: RequestContext = info.context
        context.require_integrator(allow="read")
        first = 50 if first is None else first
        if not 1 <= first <= MAX_PAGE:
            raise VisibleError(f"webhookDeliveries: first is {first}: expected 1 to {MAX_PAGE}")
        before = id_after("delivery", after, "webhookDeliveries")

        def read(ctx: Context) -> list[Any]:
            query = _deliveries(ctx)
            if endpoint_id is not None:
                query = query.where(DELIVERIES.c.endpoint_id == str(endpoint_id))
            if status is not None:
                query = query.where(DELIVERIES.c.status == status.value)
            if before is not None:
                query = query.where(DELIVERIES.c.id < before)
            return ctx.conn.execute(query.order_by(DELIVERIES.c.id.desc()).limit(first + 1)).all()

        rows = await context.read(read)
        edges = [WebhookDeliveryEdge(node=WebhookDelivery.of(row), cursor=id_cursor("delivery", row.id))
                 for row in rows[:first]]
        return WebhookDeliveryConnection(edges=edges, page_info=PageInfo(
            has_next_page=len(rows) > first, end_cursor=edges[-1].cursor if edges else None))
    return resolve


def create_webhook_endpoint(Member):
    async def resolve(info: strawberry.Info, input: WebhookEndpointInput) -> WebhookEndpointPayload:
        """A new endpoint; its signing secret is in this answer only (integrator)."""
        context: RequestContext = info.context
        result = await context.integrator_write(endpoints.create, url=input.url, event_types=input.event_types,
                                                idempotency_key=input.idempotency_key)
        return await _endpoint_payload(context, result, with_secret=True)
    return resolve


def update_webhook_endpoint(Member):
    async def resolve(info: strawberry.Info, id: strawberry.ID, event_types: Optional[list[str]] = None,
                      enabled: Optional[bool] = None) -> WebhookEndpointPayload:
        """Change the types an endpoint receives, or switch it off or on again (integrator)."""
        context: RequestContext = info.context
        check_list_length(event_types, "eventTypes", endpoints.MAX_EVENT_TYPES)
        result = await context.integrator_write(endpoints.update, endpoint_id=str(id), event_types=event_types,
                                                enabled=enabled)
        return await _endpoint_payload(context, result, with_secret=False)
    return resolve


def rotate_webhook_secret(Member):
    async def resolve(info: strawberry.Info, id: strawberry.ID) -> WebhookEndpointPayload:
        """A new secret, in this answer only; the old one also signs for the shop's secret_grace_hours."""
        context: RequestContext = info.context
        result = await context.integrator_write(endpoints.rotate, endpoint_id=str(id))
        return await _endpoint_payload(context, result, with_secret=True)
    return resolve


def delete_webhook_endpoint(Member):
    async def resolve(info: strawberry.Info, id: strawberry.ID) -> WebhookEndpointPayload:
        """Delete an endpoint and its deliveries (integrator)."""
        context: RequestContext = info.context
        result = await context.integrator_write(endpoints.delete, endpoint_id=str(id))
        return await _endpoint_payload(context, result, with_secret=False)
    return resolve


def redeliver_webhooks(Member):
    async def resolve(info: strawberry.Info, endpoint_id: strawberry.ID, since: datetime) -> RedeliverWebhooksPayload:
        """Queue again every event of the endpoint's types committed since `since` (after an outage); a
        `since` older than the retention period is refused (integrator, or a staff key with the operator
        role: then kept in the audit log)."""
        context: RequestContext = info.context
        arguments = {"endpoint_id": str(endpoint_id), "since": since}
        result = await context.integrator_write(endpoints.redeliver, allow="operate",
                                                audit=StaffWrite("redeliverWebhooks", arguments), **arguments)
        return RedeliverWebhooksPayload(queued=result.data.get("queued", 0),
                                        errors=[UserError.of(e) for e in result.errors])
    return resolve


def send_test_webhook(Member):
    async def resolve(info: strawberry.Info, endpoint_id: strawberry.ID) -> SendTestWebhookPayload:
        """A `webhook.test` event to one endpoint, to check its URL and signature verification (integrator)."""
        context: RequestContext = info.context
        result = await context.integrator_write(endpoints.send_test, endpoint_id=str(endpoint_id))
        if result.errors:
            return SendTestWebhookPayload(delivery=None, errors=[UserError.of(e) for e in result.errors])
        row = await context.read(lambda ctx: ctx.conn.execute(
            _deliveries(ctx).where(DELIVERIES.c.id == result.data["delivery_id"])).one())
        return SendTestWebhookPayload(delivery=WebhookDelivery.of(row), errors=[])
    return resolve


def contribute(builder) -> None:
    builder.query_field("outboundEventTypes", outbound_event_types)
    builder.query_field("webhookEndpoints", webhook_endpoints)
    builder.query_field("webhookDeliveries", webhook_deliveries)
    builder.mutation_field("createWebhookEndpoint", create_webhook_endpoint)
    builder.mutation_field("updateWebhookEndpoint", update_webhook_endpoint)
    builder.mutation_field("rotateWebhookSecret", rotate_webhook_secret)
    builder.mutation_field("deleteWebhookEndpoint", delete_webhook_endpoint)
    builder.mutation_field("redeliverWebhooks", redeliver_webhooks)
    builder.mutation_field("sendTestWebhook", send_test_webhook)
