"""Outbound events published to a real RabbitMQ broker (127.0.0.1:5672, guest/guest; skipped where none
runs): durable exchange and queue, persistent messages, confirmed before DELIVERED; a message the broker
returns is a failed attempt, retried; a broker away is a failed attempt, not a crash."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from memberkit.plugins.webhooks.amqp import endpoint_id
from memberkit.plugins.webhooks.deliveries import deliverer_for
from memberkit.plugins.webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from tests import test_webhooks as webhook_tests

aio_pika = pytest.importorskip("aio_pika", reason="aio-pika is not installed (pip install 'memberkit[amqp]')")
BROKER = "amqp://guest:guest@127.0.0.1:5672/"


def _broker_runs() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _broker_runs(), reason="no RabbitMQ broker on 127.0.0.1:5672")

SETTINGS = """
[shops.alpha]
name = "Alpha"
currency = "CNY"
timezone = "Asia/Shanghai"
plugins = ["webhooks"]

[shops.alpha.settings.webhooks]
retry_seconds = [60, 60]

[shops.alpha.settings.webhooks.amqp]
url_env = "TEST_AMQP_URL"
exchange = "{exchange}"
{queue}
"""


@pytest.fixture
def names():
    tag = uuid.uuid4().hex[:10]
    found = {"exchange": f"memberkit-test-{tag}", "queue": f"memberkit-test-{tag}"}
    yield found
    asyncio.run(_delete(found))


async def _delete(names: dict) -> None:
    connection = await aio_pika.connect(BROKER)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(names["queue"])
        await channel.exchange_delete(names["exchange"])


def programme(memberkit, names: dict, monkeypatch, with_queue: bool = True, url: str = BROKER):
    monkeypatch.setenv("TEST_AMQP_URL", url)
    queue = f'queue = "{names["queue"]}"' if with_queue else ""
    shop = memberkit(SETTINGS.format(exchange=names["exchange"], queue=queue))
    shop.clock.set(datetime(2026, 6, 1, 8, tzinfo=UTC))
    return shop


def deliver(runtime) -> int:
    return webhook_tests.deliver(runtime, make=deliverer_for)


async def _take(queue_name: str) -> list:
    connection = await aio_pika.connect(BROKER)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, durable=True, passive=True)
        taken = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            taken.append(message)
        return taken


def take(queue_name: str) -> list:
    return asyncio.run(_take(queue_name))


def deliveries(runtime) -> list:
    with runtime.db.read() as conn:
        return conn.execute(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()


def test_events_are_published_persistent_to_a_durable_queue_and_delivered_once_confirmed(
        memberkit, names, monkeypatch):
    shop = programme(memberkit, names, monkeypatch)
    deliver(shop.runtime)  # the first start of the loop makes the shop's amqp endpoint
    member = shop.sign_up("alpha", "crm-1")
    shop.pay("alpha", member, "o-1", 12800)
    assert deliver(shop.runtime) == 2

    messages = take(names["queue"])
    with shop.runtime.db.read() as conn:
        events = conn.execute(select(WebhookEvent.id, WebhookEvent.type).order_by(WebhookEvent.id)).all()
        endpoint = conn.execute(select(WebhookEndpoint).where(WebhookEndpoint.kind == "amqp")).one()
    assert [(m.message_id, m.type, m.routing_key) for m in messages] == [
        (f"evt_{i}", t, t) for i, t in events]
    assert [t for _, t in events] == ["member.signed_up", "order.paid"]
    assert all(m.delivery_mode == aio_pika.DeliveryMode.PERSISTENT for m in messages)
    body = json.loads(messages[1].body)
    assert body["type"] == "order.paid" and body["data"]["member"] == {"id": member, "externalId": "crm-1"}
    assert body["data"]["sequence"] == 2
    assert (endpoint.id, endpoint.url, endpoint.enabled) == (endpoint_id("alpha"), f"amqp:{names['exchange']}", True)
    assert [(d.status, d.attempts) for d in deliveries(shop.runtime)] == [("DELIVERED", 1), ("DELIVERED", 1)]
    # the broker's URL (with its password) is nowhere in the database
    assert "guest" not in json.dumps([tuple(map(str, d)) for d in deliveries(shop.runtime)]) + endpoint.url


def test_a_message_the_broker_returns_is_a_failed_attempt_published_once_a_queue_is_bound(
        memberkit, names, monkeypatch):
    shop = programme(memberkit, names, monkeypatch, with_queue=False)
    deliver(shop.runtime)
    shop.sign_up("alpha", "crm-1")
    deliver(shop.runtime)
    [first] = deliveries(shop.runtime)
    assert (first.status, first.attempts) == ("PENDING", 1)
    assert "NO_ROUTE" in first.last_error and "queue bound" in first.last_error

    async def bind():
        connection = await aio_pika.connect(BROKER)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(names["queue"], durable=True)
            await queue.bind(names["exchange"], routing_key="#")
    asyncio.run(bind())
    shop.clock.advance(seconds=70)  # past the first retry (60 s, up to 10% jitter)
    deliver(shop.runtime)
    [again] = deliveries(shop.runtime)
    assert (again.status, again.attempts, again.last_error) == ("DELIVERED", 2, None)
    assert [m.type for m in take(names["queue"])] == ["member.signed_up"]


def test_a_broker_away_is_a_failed_attempt_retried_later(memberkit, names, monkeypatch):
    shop = programme(memberkit, names, monkeypatch, url="amqp://guest:guest@127.0.0.1:1/")
    deliver(shop.runtime)
    shop.sign_up("alpha", "crm-1")
    deliver(shop.runtime)
    [first] = deliveries(shop.runtime)
    assert (first.status, first.attempts) == ("PENDING", 1) and first.last_error
    assert first.next_attempt_at > shop.clock.advance() + timedelta(seconds=50)
    monkeypatch.delenv("TEST_AMQP_URL")
    shop.clock.advance(seconds=70)
    deliver(shop.runtime)
    [second] = deliveries(shop.runtime)
    assert (second.status, second.attempts) == ("PENDING", 2)
    assert "TEST_AMQP_URL is not set" in second.last_error
    shop.clock.advance(seconds=70)
    deliver(shop.runtime)
    [third] = deliveries(shop.runtime)
    assert (third.status, third.attempts) == ("FAILED", 3)  # the first attempt and two retries
