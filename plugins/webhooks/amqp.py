"""Publishing the same outbound events to RabbitMQ (AMQP 0-9-1), for integrators who consume a queue.

A shop that sets ``[shops.<slug>.settings.webhooks.amqp]`` gets one endpoint of kind ``amqp`` (made by the
delivery loop when it starts, so it receives the events committed from then on). Its deliveries go through
the same outbox, leases and retries as HTTP ones, and are published to a durable topic exchange (routing
key: the event type) as persistent messages, ``mandatory``, on a channel with publisher confirms: an event
is DELIVERED only once the broker confirmed it; a message the broker returns (no queue bound for its type)
or does not confirm is a failed attempt, retried on the shop's schedule. The broker URL, with its
credentials, is read from the environment variable the settings name, never from the settings file.

aio-pika is needed only by a shop that configures this: ``pip install 'memberkit[amqp]'``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from typing import Any

from sqlalchemy import select

from memberkit.plugin import Runtime, upsert
from memberkit.plugins.webhooks.outbox import ENDPOINTS
from memberkit.plugins.webhooks.settings import NAME, AmqpSettings, WebhooksSettings
from memberkit.plugins.webhooks.transport import Outcome

log = logging.getLogger("memberkit.webhooks")
KIND = "amqp"


def endpoint_id(shop: str) -> str:
    return "amq_" + hashlib.sha256(shop.encode()).hexdigest()[:24]


def configured(runtime: Runtime) -> dict[str, AmqpSettings]:
    """The shops that publish to a broker, with their settings."""
    found = {}
    for slug, shop in runtime.settings.shops.items():
        settings = shop.settings_for(NAME) if NAME in shop.plugins else None
        if settings is not None and settings.amqp is not None:
            found[slug] = settings.amqp
    return found


def sync_endpoints(conn, runtime: Runtime, now) -> None:
    """Make each configured shop's amqp endpoint match its settings; disable the one of a shop that no
    longer configures a broker (its pending deliveries wait, should it come back)."""
    wanted = configured(runtime)
    rows = {row.shop: row for row in conn.execute(select(ENDPOINTS).where(ENDPOINTS.c.kind == KIND))}
    for shop, settings in wanted.items():
        values = {"url": f"amqp:{settings.exchange}", "event_types": list(settings.event_types), "enabled": True,
                  "disabled_reason": None, "updated_at": now}
        row = rows.get(shop)
        if row is None:  # every worker starting at once may try: the first one makes it
            conn.execute(upsert(ENDPOINTS).on(conn), {"id": endpoint_id(shop), "shop": shop, "kind": KIND,
                                                      "key_id": "", "salt": "", "created_at": now, **values})
        elif (row.url, row.event_types, row.enabled) != (values["url"], values["event_types"], True):
            conn.execute(ENDPOINTS.update().where(ENDPOINTS.c.id == row.id).values(**values))
    for shop, row in rows.items():
        if shop not in wanted and row.enabled:
            conn.execute(ENDPOINTS.update().where(ENDPOINTS.c.id == row.id).values(
                enabled=False, updated_at=now, disabled_reason="no [webhooks.amqp] in this shop's settings"))


class Publisher:
    """One connection and confirming channel per broker URL, per process; ``send`` never raises."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.connections: dict[str, Any] = {}
        self.channels: dict[str, Any] = {}
        self.declared: dict[tuple[str, str], Any] = {}
        self.connecting = asyncio.Lock()

    async def _exchange(self, url: str, settings: AmqpSettings, timeout: float) -> Any:
        import aio_pika

        async with self.connecting:
            channel = self.channels.get(url)
            if channel is None or channel.is_closed:
                if (old := self.connections.pop(url, None)) is not None:
                    await old.close()
                connection = self.connections[url] = await aio_pika.connect_robust(url, timeout=timeout)
                channel = self.channels[url] = await connection.channel(publisher_confirms=True,
                                                                        on_return_raises=True)
                self.declared = {key: value for key, value in self.declared.items() if key[0] != url}
            key = (url, f"{settings.exchange}\0{settings.queue or ''}")
            exchange = self.declared.get(key)
            if exchange is None:
                exchange = await channel.declare_exchange(settings.exchange, aio_pika.ExchangeType.TOPIC,
                                                          durable=True, timeout=timeout)
                if settings.queue:
                    queue = await channel.declare_queue(settings.queue, durable=True, timeout=timeout)
                    await queue.bind(exchange, routing_key="#", timeout=timeout)
                self.declared[key] = exchange
            return exchange

    async def send(self, work) -> Outcome:
        shop = self.runtime.shop(work.shop).settings_for(NAME) or WebhooksSettings()
        settings = shop.amqp
        if settings is None:
            return Outcome(False, None, "no [webhooks.amqp] in this shop's settings")
        url = os.environ.get(settings.url_env, "").strip()
        if not url:
            return Outcome(False, None, f"{settings.url_env} is not set: it holds the broker's URL")
        try:
            import aio_pika
        except ImportError:
            return Outcome(False, None, "aio-pika is not installed: pip install 'memberkit[amqp]'")
        message = aio_pika.Message(
            work.body, content_type="application/json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=work.message_id, type=work.event_type, timestamp=work.timestamp,
            headers={"webhook-id": work.message_id, "webhook-timestamp": str(work.timestamp)})
        try:
            exchange = await self._exchange(url, settings, shop.connect_timeout_seconds)
            await exchange.publish(message, routing_key=work.event_type, mandatory=True,
                                   timeout=shop.read_timeout_seconds)
        except aio_pika.exceptions.DeliveryError as exc:
            returned = getattr(getattr(exc, "frame", None), "reply_text", None) or "not confirmed"
            return Outcome(False, None, f"the broker did not take it: {returned} (is a queue bound for "
                                        f"{work.event_type!r} on {settings.exchange!r}?)")
        except TimeoutError:
            return Outcome(False, None, "timeout: the broker did not confirm in time")
        except (aio_pika.exceptions.AMQPError, OSError, RuntimeError) as exc:
            self.channels.pop(url, None)
            return Outcome(False, None, f"{type(exc).__name__}: {exc}"[:500])
        return Outcome(True, None)

    async def close(self) -> None:
        for connection in self.connections.values():
            try:
                await connection.close()
            except Exception:  # closing what may already be gone
                log.debug("closing an AMQP connection failed", exc_info=True)
        self.connections.clear()
        self.channels.clear()
