"""Endpoints: create (the secret shown once), change, rotate the secret, delete; test and redeliver."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from memberkit.plugin import (
    MAX_IDEMPOTENCY_KEY,
    Context,
    EventResult,
    Refused,
    Runtime,
    Shop,
    declared_event_types,
    require_key,
    run_event,
)
from memberkit.plugins.webhooks import signing
from memberkit.plugins.webhooks.outbox import DELIVERIES, ENDPOINTS, EVENTS, requeue
from memberkit.plugins.webhooks.settings import settings_of
from memberkit.plugins.webhooks.transport import UnsafeURL, check_url

MAX_EVENT_TYPES = 100
TEST_EVENT = "webhook.test"


def _url(url: str) -> str:
    try:
        return check_url(url)
    except UnsafeURL as exc:
        raise Refused("INVALID_URL", str(exc), "url") from None


def _types(ctx: Context, event_types: list[str] | None, field: str = "eventTypes") -> list[str]:
    """The subscribed types, checked against the shop's (an empty list: every type)."""
    if not event_types:
        return []
    if len(event_types) > MAX_EVENT_TYPES:
        raise Refused("TOO_MANY_ITEMS", f"{field}: {len(event_types)} types, at most {MAX_EVENT_TYPES}", field)
    known = declared_event_types(ctx.shop)
    wanted = list(dict.fromkeys(t.strip() for t in event_types))
    unknown = [t for t in wanted if t not in known]
    if unknown:
        raise Refused("UNKNOWN_EVENT_TYPE", f"{field}: {', '.join(map(repr, unknown))} is not an event type of "
                      f"this shop; expected some of {', '.join(known)}", field)
    return wanted


def endpoint_row(ctx: Context, endpoint_id: str, field: str = "id") -> Any:
    row = ctx.conn.execute(select(ENDPOINTS).where(ENDPOINTS.c.shop == ctx.shop.slug, ENDPOINTS.c.id == endpoint_id,
                                                   ENDPOINTS.c.kind == "http")).first()
    if row is None:
        raise Refused("ENDPOINT_NOT_FOUND", f"no webhook endpoint {endpoint_id!r} in this shop", field)
    return row


def secret_of(row: Any) -> str:
    return signing.secret_of(row.key_id, row.salt)


def create(runtime: Runtime, shop: Shop, api_key_id: str | None, *, url: str,
           event_types: list[str] | None = None, idempotency_key: str | None = None) -> EventResult:
    payload = {"url": url, "event_types": event_types}
    checked: dict[str, Any] = {}

    def validate(ctx: Context) -> None:
        checked["url"], checked["types"] = _url(url), _types(ctx, event_types)
        count = ctx.conn.execute(select(func.count()).select_from(ENDPOINTS).where(
            ENDPOINTS.c.shop == shop.slug, ENDPOINTS.c.kind == "http")).scalar()
        limit = settings_of(ctx).max_endpoints
        if count >= limit:
            raise Refused("TOO_MANY_ENDPOINTS", f"this shop has {count} webhook endpoints: at most {limit} "
                          "(max_endpoints); delete one first", "url")

    def handle(ctx: Context) -> EventResult:
        key_id, salt = signing.new_secret_source()
        endpoint_id = "whe_" + secrets.token_hex(12)
        ctx.conn.execute(ENDPOINTS.insert().values(
            id=endpoint_id, shop=shop.slug, kind="http", url=checked["url"], event_types=checked["types"],
            enabled=True, key_id=key_id, salt=salt, created_at=ctx.now, updated_at=ctx.now))
        return EventResult(data={"endpoint_id": endpoint_id})

    key = None
    if idempotency_key is not None:
        try:
            key = "webhook_endpoint:" + require_key(idempotency_key, "idempotencyKey", MAX_IDEMPOTENCY_KEY)
        except Refused as refusal:
            return EventResult.refused(refusal)
    return run_event(runtime, shop, "webhook_endpoint_created", key, payload, handle, api_key_id, validate)


def _change(runtime: Runtime, shop: Shop, api_key_id: str | None, kind: str, endpoint_id: str,
            payload: dict[str, Any], change) -> EventResult:
    def handle(ctx: Context) -> EventResult:
        row = endpoint_row(ctx, endpoint_id)
        values = change(ctx, row)
        if values is not None:
            ctx.conn.execute(ENDPOINTS.update().where(ENDPOINTS.c.id == row.id).values(updated_at=ctx.now, **values))
            return EventResult(data={"endpoint_id": row.id})
        ctx.conn.execute(DELIVERIES.delete().where(DELIVERIES.c.endpoint_id == row.id))
        ctx.conn.execute(ENDPOINTS.delete().where(ENDPOINTS.c.id == row.id))
        deleted = {"url": row.url, "event_types": list(row.event_types), "created_at": row.created_at.isoformat()}
        return EventResult(data={"endpoint_id": row.id, "deleted": deleted})

    return run_event(runtime, shop, kind, None, {"id": endpoint_id, **payload}, handle, api_key_id)


def update(runtime: Runtime, shop: Shop, api_key_id: str | None, *, endpoint_id: str,
           event_types: list[str] | None = None, enabled: bool | None = None) -> EventResult:
    def change(ctx: Context, row: Any) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if event_types is not None:
            values["event_types"] = _types(ctx, event_types)
        if enabled is not None:
            values["enabled"] = enabled
            if enabled:  # switched on again: failures start counting afresh
                values.update(failing_since=None, disabled_reason=None)
            elif row.enabled:
                values["disabled_reason"] = "disabled by the integrator"
        return values

    return _change(runtime, shop, api_key_id, "webhook_endpoint_updated", endpoint_id,
                   {"event_types": event_types, "enabled": enabled}, change)


def rotate(runtime: Runtime, shop: Shop, api_key_id: str | None, *, endpoint_id: str) -> EventResult:
    """A new secret from the newest server key; the old one keeps signing for the shop's grace period."""
    def change(ctx: Context, row: Any) -> dict[str, Any]:
        key_id, salt = signing.new_secret_source()
        return {"key_id": key_id, "salt": salt, "old_key_id": row.key_id, "old_salt": row.salt,
                "old_until": ctx.now + timedelta(hours=settings_of(ctx).secret_grace_hours)}

    return _change(runtime, shop, api_key_id, "webhook_secret_rotated", endpoint_id, {}, change)


def delete(runtime: Runtime, shop: Shop, api_key_id: str | None, *, endpoint_id: str) -> EventResult:
    return _change(runtime, shop, api_key_id, "webhook_endpoint_deleted", endpoint_id, {}, lambda ctx, row: None)


def redeliver(runtime: Runtime, shop: Shop, api_key_id: str | None, *, endpoint_id: str, since) -> EventResult:
    def handle(ctx: Context) -> EventResult:
        row = endpoint_row(ctx, endpoint_id, "endpointId")
        oldest = ctx.now - timedelta(days=settings_of(ctx).retention_days)
        if since < oldest:
            raise Refused("BEYOND_RETENTION", f"since is {since.isoformat()}: events are kept "
                          f"{settings_of(ctx).retention_days} days, so expected {oldest.isoformat()} or later", "since")
        return EventResult(data={"queued": requeue(ctx.conn, shop.slug, row, since, ctx.now)})

    return run_event(runtime, shop, "webhooks_redelivered", None, {"id": endpoint_id, "since": since}, handle,
                     api_key_id)


def send_test(runtime: Runtime, shop: Shop, api_key_id: str | None, *, endpoint_id: str) -> EventResult:
    """A ``webhook.test`` event for one endpoint only, delivered as any other."""
    def handle(ctx: Context) -> EventResult:
        row = endpoint_row(ctx, endpoint_id, "endpointId")
        if not row.enabled:
            raise Refused("ENDPOINT_DISABLED", f"webhook endpoint {endpoint_id!r} is disabled: enable it first "
                          "(updateWebhookEndpoint enabled: true)", "endpointId")
        event_id = ctx.conn.execute(EVENTS.insert().values(
            shop=shop.slug, type=TEST_EVENT, member_id=None, external_id=None, sequence=None, fanned=True,
            data=signing.encode_data({"endpointId": row.id, "message": "a test event from memberkit",
                                      "cause": ctx.cause, "settingsVersion": shop.version}),
            created_at=ctx.now).returning(EVENTS.c.id)).scalar()
        delivery_id = ctx.conn.execute(DELIVERIES.insert().values(
            shop=shop.slug, endpoint_id=row.id, event_id=event_id, status="PENDING", attempts=0,
            next_attempt_at=ctx.now, created_at=ctx.now).returning(DELIVERIES.c.id)).scalar()
        return EventResult(data={"delivery_id": delivery_id})

    return run_event(runtime, shop, "webhook_test_sent", None, {"id": endpoint_id}, handle, api_key_id)
