"""Outbound events and their delivery, against a real receiver on a loopback port (tests/webhook_receiver.py).

The delivery loop runs in the test (Deliverer.once), so each round is deterministic; the serve-level tests
(kill -9, several workers) are in test_webhooks_serve.py.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from memberkit import jobs
from memberkit.core import clock
from memberkit.plugin import Plugin, hookimpl
from memberkit.plugins.webhooks import signing, transport
from memberkit.plugins.webhooks.deliveries import Deliverer
from memberkit.plugins.webhooks.models import WebhookDelivery, WebhookEvent
from tests.webhook_receiver import Receiver

ROOT = Path(__file__).resolve().parents[1]
DEMO = (ROOT / "plugins.toml").read_text()

CREATE = """mutation($input: WebhookEndpointInput!) { createWebhookEndpoint(input: $input) {
  endpoint { id url eventTypes enabled disabledReason } secret errors { code field message } } }"""
UPDATE = """mutation($id: ID!, $types: [String!], $enabled: Boolean) {
  updateWebhookEndpoint(id: $id, eventTypes: $types, enabled: $enabled) {
    endpoint { id eventTypes enabled disabledReason } secret errors { code field message } } }"""
ROTATE = "mutation($id: ID!) { rotateWebhookSecret(id: $id) { endpoint { id } secret errors { code } } }"
DELETE = "mutation($id: ID!) { deleteWebhookEndpoint(id: $id) { endpoint { id url } errors { code } } }"
REDELIVER = """mutation($id: ID!, $since: DateTime!) { redeliverWebhooks(endpointId: $id, since: $since) {
  queued errors { code field message } } }"""
TEST = """mutation($id: ID!) { sendTestWebhook(endpointId: $id) {
  delivery { id eventType status attempts } errors { code field message } } }"""
DELIVERIES = """query($id: ID, $status: WebhookDeliveryStatus, $first: Int, $after: String) {
  webhookDeliveries(endpointId: $id, status: $status, first: $first, after: $after) {
    edges { cursor node { id endpointId eventId eventType status attempts lastStatusCode lastError
                          nextAttemptAt deliveredAt } }
    pageInfo { hasNextPage endCursor } } }"""
ENDPOINTS = "{ webhookEndpoints { id url eventTypes enabled disabledReason failingSince } }"
REFERRAL = "query($id: ID!) { member(id: $id) { referral { code } } }"
REDEEM = """mutation($input: RedeemRewardInput!) { redeemReward(input: $input) { errors { code } } }"""
ADJUST = """mutation($input: AdjustPointsInput!) { adjustPoints(input: $input) { errors { code } } }"""
UPDATE_MEMBER = """mutation($input: UpdateMemberInput!) { updateMember(input: $input) { errors { code } } }"""


@pytest.fixture
def receiver():
    found = Receiver().start()
    yield found
    found.stop()


@pytest.fixture
def shop(memberkit):
    return memberkit(DEMO)


def create_endpoint(shop, url: str, types: list[str] | None = None) -> tuple[str, str]:
    payload = shop.integrator("demo")(CREATE, {"input": {"url": url, "eventTypes": types}})["createWebhookEndpoint"]
    assert payload["errors"] == [], payload
    return payload["endpoint"]["id"], payload["secret"]


def deliver(runtime, rounds: int = 30, make=Deliverer) -> int:
    """Delivery rounds (of the loop `make(runtime)` builds) until one finds nothing due; the attempts made."""
    async def run() -> int:
        deliverer = make(runtime)
        made = 0
        try:
            for _ in range(rounds):
                this = await deliverer.once()
                if not this:
                    break
                made += this
        finally:
            for close in deliverer.closers:
                await close()
            await deliverer.http.close()
        return made
    return asyncio.run(run())


def stored(runtime, table, *where):
    with runtime.db.read() as conn:
        return conn.execute(select(table).where(*where)).all()


def verify(secret: str, received) -> dict:
    """What standardwebhooks makes of a real request: raises unless the signature is valid."""
    return Webhook(secret).verify(received.body, received.headers)


def test_every_type_arrives_signed_with_the_member_their_sequence_and_no_personal_data(shop, receiver):
    endpoint_id, secret = create_endpoint(shop, receiver.url)
    assert secret.startswith("whsec_")
    integrator = shop.integrator("demo")
    referrer = shop.sign_up("demo", "crm-1", phone="13800000001", email="one@example.com", birthday="1990-05-20")
    code = integrator(REFERRAL, {"id": referrer})["member"]["referral"]["code"]
    friend = shop.sign_up("demo", "crm-2", phone="13800000002", referralCode=code)
    integrator(UPDATE_MEMBER, {"input": {"memberId": friend, "tags": ["vip"], "email": "two@example.com"}})
    welcome = [c["code"] for c in integrator("query($id: ID!) { member(id: $id) { coupons { code title } } }",
                                             {"id": friend})["member"]["coupons"] if "welcome" in c["title"]]
    paid = shop.pay("demo", friend, "o-1", 60000, couponCodes=welcome)  # 600 yuan: silver, 600 points
    assert paid["errors"] == [] and "COUPON_USED" in [e["kind"] for e in paid["effects"]], (welcome, paid)
    assert integrator(REDEEM, {"input": {"rewardId": "coupon-10", "idempotencyKey": "r-1",
                                         "memberId": friend}})["redeemReward"]["errors"] == []
    assert integrator(ADJUST, {"input": {"memberId": friend, "delta": 40, "reason": "goodwill",
                                         "idempotencyKey": "a-1"}})["adjustPoints"]["errors"] == []
    shop.refund("demo", "o-1", "r-1", 30000)  # half back: tier back to regular, points reversed
    deliver(shop.runtime)

    received = receiver.received
    assert {row.status for row in stored(shop.runtime, WebhookDelivery)} == {"DELIVERED"}
    assert len({r.id for r in received}) == len(received)
    bodies = [verify(secret, r) for r in received]
    types = [body["type"] for body in bodies]
    for expected in ("member.signed_up", "member.updated", "order.paid", "order.refunded", "coupon.issued",
                     "coupon.used", "points.earned", "points.spent", "points.adjusted", "points.reversed",
                     "tier.changed", "referral.rewarded"):
        assert expected in types, (expected, types)
    text = b"".join(r.body for r in received).decode()
    for personal in ("13800000001", "13800000002", "one@example.com", "two@example.com", "1990-05-20"):
        assert personal not in text
    friends = [b["data"] for b in bodies if b["data"]["member"]["id"] == friend]
    assert {d["member"]["externalId"] for d in friends} == {"crm-2"}
    assert sorted(d["sequence"] for d in friends) == list(range(1, len(friends) + 1))
    tiers = [b["data"] for b in bodies if b["type"] == "tier.changed"]
    assert [(t["from"], t["to"], t["reason"], t["direction"]) for t in sorted(tiers, key=lambda t: t["sequence"])] \
        == [("REGULAR", "SILVER", "ORDER", "UP"), ("SILVER", "REGULAR", "REFUND", "DOWN")]
    order = next(b["data"] for b in bodies if b["type"] == "order.paid")
    assert (order["orderId"], order["total"], order["number"], order["cause"]["kind"], order["cause"]["key"]) == \
        ("o-1", 60000, 1, "order_paid", "o-1")
    assert order["settingsVersion"] == shop.runtime.shop("demo").version
    updated = next(b["data"] for b in bodies if b["type"] == "member.updated")
    assert updated["changed"] == ["email", "tags"] and updated["tags"] == ["vip"]
    rewarded = next(b["data"] for b in bodies if b["type"] == "referral.rewarded")
    assert rewarded["member"]["id"] == referrer and rewarded["friendId"] == friend
    assert all(r.headers["webhook-signature"].startswith("v1,") for r in received)
    listed = integrator("{ outboundEventTypes }")["outboundEventTypes"]
    assert set(types) <= set(listed) and "points.expiring" in listed and "webhook.test" in listed


def test_a_receiver_failing_twice_gets_the_event_once_as_delivered_after_three_attempts(shop, receiver):
    receiver.statuses = [500, 503]
    start = datetime(2026, 6, 1, 8, tzinfo=UTC)
    shop.clock.set(start)
    endpoint_id, secret = create_endpoint(shop, receiver.url, ["member.signed_up"])
    shop.sign_up("demo", "crm-1")
    deliver(shop.runtime)
    assert len(receiver.received) == 1
    node = shop.integrator("demo")(DELIVERIES, {"id": endpoint_id})["webhookDeliveries"]["edges"][0]["node"]
    assert (node["status"], node["attempts"], node["lastStatusCode"]) == ("PENDING", 1, 500)
    assert node["lastError"].startswith("HTTP 500")
    due = datetime.fromisoformat(node["nextAttemptAt"])
    assert start + timedelta(seconds=4.5) <= due <= start + timedelta(seconds=5.5)  # 5 s with jitter
    deliver(shop.runtime)
    assert len(receiver.received) == 1  # not due yet
    shop.clock.set(start + timedelta(seconds=6))
    deliver(shop.runtime)
    shop.clock.set(start + timedelta(seconds=6 + 331))  # 300 s with at most 10% jitter
    deliver(shop.runtime)
    assert len(receiver.received) == 3 and len({r.id for r in receiver.received}) == 1
    for request in receiver.received:
        verify(secret, request)
    node = shop.integrator("demo")(DELIVERIES, {"id": endpoint_id})["webhookDeliveries"]["edges"][0]["node"]
    assert (node["status"], node["attempts"], node["lastStatusCode"], node["lastError"]) == \
        ("DELIVERED", 3, 200, None)
    assert node["eventId"] == receiver.received[0].id
    shop.clock.set(start + timedelta(days=1))
    deliver(shop.runtime)
    assert len(receiver.received) == 3


def test_after_the_last_retry_the_delivery_fails_and_others_go_on(memberkit, receiver):
    shop = memberkit(DEMO.replace("retry_seconds = [5, 300, 1800, 7200, 18000, 36000, 36000]",
                                  "retry_seconds = [5]"))
    start = datetime(2026, 6, 1, 8, tzinfo=UTC)
    shop.clock.set(start)
    endpoint_id, _ = create_endpoint(shop, receiver.url, ["member.signed_up"])
    receiver.fails = lambda request: request.json["data"]["member"]["externalId"] == "crm-1"
    shop.sign_up("demo", "crm-1")
    deliver(shop.runtime)
    shop.clock.set(start + timedelta(seconds=10))
    shop.sign_up("demo", "crm-2")  # a second event while the first keeps failing
    deliver(shop.runtime)
    edges = shop.integrator("demo")(DELIVERIES, {"id": endpoint_id})["webhookDeliveries"]["edges"]
    assert sorted((e["node"]["status"], e["node"]["attempts"]) for e in edges) == [("DELIVERED", 1), ("FAILED", 2)]
    failed = shop.integrator("demo")(DELIVERIES, {"status": "FAILED"})["webhookDeliveries"]["edges"]
    assert len(failed) == 1 and failed[0]["node"]["nextAttemptAt"] is None


def test_a_retried_inbound_event_emits_nothing_new_and_a_refused_one_nothing_at_all(shop, receiver):
    create_endpoint(shop, receiver.url)
    member = shop.sign_up("demo", "crm-1")
    for _ in range(3):
        assert shop.pay("demo", member, "o-1", 12800)["errors"] == []
    refused = shop.pay("demo", "mem_nobody", "o-2", 100)
    assert refused["errors"][0]["code"] == "MEMBER_NOT_FOUND"
    assert shop.refund("demo", "o-1", "r-1", 999999)["errors"][0]["code"] == "REFUND_EXCEEDS_ORDER"
    deliver(shop.runtime)
    types = receiver.types()
    assert types.count("order.paid") == 1 and "order.refunded" not in types
    with shop.runtime.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(WebhookEvent)
                            .where(WebhookEvent.type == "order.paid")).scalar() == 1


def test_a_change_that_rolls_back_emits_nothing(shop, receiver, monkeypatch):
    from memberkit.plugins.tiering import standing

    create_endpoint(shop, receiver.url)
    member = shop.sign_up("demo", "crm-1")

    def broken(*args, **kwargs):
        raise RuntimeError("the tier write failed")

    monkeypatch.setattr(standing, "record", broken)
    response = shop.api.post("""mutation($input: OrderPaidInput!) { recordOrderPaid(input: $input) {
        errors { code } } }""", {"input": {"orderId": "o-1", "memberId": member, "total": 60000}},
                             shop.integrator("demo").key)
    assert response.json().get("errors")
    deliver(shop.runtime)
    assert "order.paid" not in receiver.types() and "points.earned" not in receiver.types()
    assert sorted(receiver.types()) == ["coupon.issued", "member.signed_up"]  # the sign-up and its gift


def test_sequences_keep_rising_after_old_events_are_pruned(shop, receiver):
    start = datetime(2026, 1, 5, tzinfo=UTC)
    shop.clock.set(start)
    member = shop.sign_up("demo", "crm-1")
    shop.pay("demo", member, "o-1", 100)
    shop.clock.set(start + timedelta(days=31))
    pruned = shop.run_jobs("demo", force=True)["webhooks.prune"].result
    assert pruned.endswith("event(s) pruned") and int(pruned.split()[0]) >= 4
    with shop.runtime.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(WebhookEvent)).scalar() == 0
    create_endpoint(shop, receiver.url, ["order.paid"])
    shop.pay("demo", member, "o-2", 100)
    deliver(shop.runtime)
    (only,) = receiver.received
    assert only.json["data"]["sequence"] > 3  # signed_up, order.paid, points.earned, coupon... came before


def test_endpoints_refuse_unsafe_urls_and_unknown_types(shop, monkeypatch):
    integrator = shop.integrator("demo")

    def refusal(url, types=None):
        payload = integrator(CREATE, {"input": {"url": url, "eventTypes": types}})["createWebhookEndpoint"]
        return payload["errors"][0]["code"], payload["errors"][0]["field"], payload["errors"][0]["message"]

    assert refusal("ftp://example.com/x")[:2] == ("INVALID_URL", "url")
    assert refusal("https://10.0.0.5/hook")[0] == "INVALID_URL"
    assert "link-local" in refusal("https://169.254.169.254/latest/meta-data")[2]
    assert refusal("https://user:pw@example.com/hook")[0] == "INVALID_URL"
    assert refusal("https://[::ffff:192.168.1.1]/hook")[0] == "INVALID_URL"
    code, field, message = refusal("https://example.com/hook", ["order.paid", "order.shipped"])
    assert (code, field) == ("UNKNOWN_EVENT_TYPE", "eventTypes") and "'order.shipped'" in message
    monkeypatch.setenv("MEMBERKIT_ENV", "production")
    assert "https" in refusal("http://127.0.0.1:9/hook")[2]
    assert refusal("https://127.0.0.1/hook")[0] == "INVALID_URL"
    assert integrator(ENDPOINTS)["webhookEndpoints"] == []


def test_creating_an_endpoint_again_with_its_idempotency_key_makes_no_second_one(shop, receiver):
    integrator = shop.integrator("demo")
    create = {"input": {"url": receiver.url, "idempotencyKey": "setup-1"}}
    first = integrator(CREATE, create)["createWebhookEndpoint"]
    again = integrator(CREATE, create)["createWebhookEndpoint"]
    assert first["errors"] == again["errors"] == []
    assert again["endpoint"]["id"] == first["endpoint"]["id"] and again["secret"] == first["secret"]
    too_long = integrator(CREATE, {"input": {"url": receiver.url, "idempotencyKey": "k" * 121}})
    [error] = too_long["createWebhookEndpoint"]["errors"]
    assert (error["code"], error["field"]) == ("INVALID_KEY", "idempotencyKey") and "1 to 120" in error["message"]
    assert [e["id"] for e in integrator(ENDPOINTS)["webhookEndpoints"]] == [first["endpoint"]["id"]]


def test_a_name_resolving_to_a_private_address_is_refused_when_connecting(monkeypatch):
    monkeypatch.setenv("MEMBERKIT_ENV", "production")

    async def attempt():
        sender = transport.Sender(connect_timeout=2, read_timeout=2)
        try:
            return await sender.send("https://localhost:9/hook", {}, b"{}")
        finally:
            await sender.close()

    outcome = asyncio.run(attempt())
    assert not outcome.delivered and "loopback" in outcome.error and "refused" in outcome.error


def test_rotating_signs_with_both_secrets_for_the_grace_period_then_only_the_new(shop, receiver):
    start = datetime(2026, 6, 1, 8, tzinfo=UTC)
    shop.clock.set(start)
    endpoint_id, old = create_endpoint(shop, receiver.url, ["member.signed_up"])
    new = shop.integrator("demo")(ROTATE, {"id": endpoint_id})["rotateWebhookSecret"]["secret"]
    assert new.startswith("whsec_") and new != old
    shop.sign_up("demo", "crm-1")
    deliver(shop.runtime)
    first = receiver.received[-1]
    assert len(first.headers["webhook-signature"].split(" ")) == 2
    verify(old, first) and verify(new, first)
    shop.clock.set(start + timedelta(hours=25))
    shop.sign_up("demo", "crm-2")
    deliver(shop.runtime)
    later = receiver.received[-1]
    verify(new, later)
    with pytest.raises(WebhookVerificationError):
        verify(old, later)


def test_a_secret_is_never_stored_and_a_newer_server_key_changes_none(shop, receiver, monkeypatch):
    endpoint_id, secret = create_endpoint(shop, receiver.url, ["member.signed_up"])
    with shop.runtime.db.read() as conn:
        dump = json.dumps([list(map(str, row)) for table in ("webhooks_endpoint", "core_event")
                           for row in conn.exec_driver_sql(f"SELECT * FROM {table}").all()])  # noqa: S608
    assert secret not in dump and secret.removeprefix("whsec_") not in dump
    monkeypatch.setenv(signing.KEYS_VARIABLE, "a-brand-new-key," + signing.os.environ[signing.KEYS_VARIABLE])
    shop.sign_up("demo", "crm-1")
    deliver(shop.runtime)
    verify(secret, receiver.received[-1])  # still the secret it was given
    monkeypatch.setenv(signing.KEYS_VARIABLE, "a-brand-new-key")  # its key removed: said, not signed otherwise
    shop.sign_up("demo", "crm-2")
    deliver(shop.runtime)
    assert len(receiver.received) == 1
    node = shop.integrator("demo")(DELIVERIES, {"status": "PENDING"})["webhookDeliveries"]["edges"][0]["node"]
    assert "MEMBERKIT_WEBHOOK_KEYS" in node["lastError"]


def test_one_delivery_that_goes_through_restarts_the_day_an_endpoint_may_fail(shop, receiver):
    receiver.statuses = [500]
    start = datetime(2026, 6, 1, 8, tzinfo=UTC)
    shop.clock.set(start)
    create_endpoint(shop, receiver.url, ["member.signed_up"])
    shop.sign_up("demo", "crm-1")
    deliver(shop.runtime)  # fails: failing since 08:00
    shop.clock.set(start + timedelta(hours=20))
    shop.sign_up("demo", "crm-2")
    deliver(shop.runtime)  # goes through (with the first one's retry): failing no more
    receiver.statuses = [500] * 10
    shop.clock.set(start + timedelta(hours=25))
    shop.sign_up("demo", "crm-3")
    deliver(shop.runtime)  # fails again, 25 hours after the first failure but only just now
    (endpoint,) = shop.integrator("demo")(ENDPOINTS)["webhookEndpoints"]
    assert endpoint["enabled"] is True and endpoint["disabledReason"] is None
    rows = stored(shop.runtime, WebhookDelivery)
    assert sorted(row.status for row in rows) == ["DELIVERED", "DELIVERED", "PENDING"]


def test_an_endpoint_failing_everything_for_a_day_is_disabled_and_can_be_enabled_again(shop, receiver):
    receiver.statuses = [500] * 50
    start = datetime(2026, 6, 1, 8, tzinfo=UTC)
    shop.clock.set(start)
    endpoint_id, _ = create_endpoint(shop, receiver.url, ["member.signed_up"])
    shop.sign_up("demo", "crm-1")
    for hours in (0, 1, 5, 12, 20, 25):
        shop.clock.set(start + timedelta(hours=hours))
        shop.sign_up("demo", f"crm-h{hours}")
        deliver(shop.runtime)
    (endpoint,) = shop.integrator("demo")(ENDPOINTS)["webhookEndpoints"]
    assert endpoint["enabled"] is False and "24 hours" in endpoint["disabledReason"]
    before = len(receiver.received)
    shop.sign_up("demo", "crm-while-disabled")
    deliver(shop.runtime)
    assert len(receiver.received) == before
    receiver.statuses = []
    enabled = shop.integrator("demo")(UPDATE, {"id": endpoint_id, "enabled": True})["updateWebhookEndpoint"]
    assert enabled["endpoint"]["enabled"] and enabled["endpoint"]["disabledReason"] is None
    shop.clock.set(start + timedelta(hours=40))
    deliver(shop.runtime)
    assert len(receiver.received) > before  # the pending ones resume


def test_redelivery_queues_again_within_retention_and_test_events_reach_one_endpoint(shop, receiver):
    start = datetime(2026, 6, 1, 8, tzinfo=UTC)
    shop.clock.set(start)
    endpoint_id, secret = create_endpoint(shop, receiver.url, ["member.signed_up"])
    shop.sign_up("demo", "crm-1")
    shop.sign_up("demo", "crm-2")
    deliver(shop.runtime)
    assert len(receiver.received) == 2
    integrator = shop.integrator("demo")
    queued = integrator(REDELIVER, {"id": endpoint_id, "since": (start - timedelta(minutes=1)).isoformat()})
    assert queued["redeliverWebhooks"] == {"queued": 2, "errors": []}
    deliver(shop.runtime)
    assert len(receiver.received) == 4 and len({r.id for r in receiver.received}) == 2
    too_old = integrator(REDELIVER, {"id": endpoint_id, "since": (start - timedelta(days=31)).isoformat()})
    assert too_old["redeliverWebhooks"]["errors"][0]["code"] == "BEYOND_RETENTION"
    other_id, _ = create_endpoint(shop, receiver.url + "/other", ["order.paid"])
    sent = integrator(TEST, {"id": endpoint_id})["sendTestWebhook"]
    assert sent["errors"] == [] and sent["delivery"]["eventType"] == "webhook.test"
    deliver(shop.runtime)
    test = receiver.received[-1]
    assert verify(secret, test)["type"] == "webhook.test" and len(receiver.received) == 5
    missing = integrator(TEST, {"id": "whe_nope"})["sendTestWebhook"]["errors"][0]
    assert (missing["code"], missing["field"]) == ("ENDPOINT_NOT_FOUND", "endpointId")
    deleted = integrator(DELETE, {"id": other_id})["deleteWebhookEndpoint"]
    assert deleted["endpoint"]["id"] == other_id
    assert [e["id"] for e in integrator(ENDPOINTS)["webhookEndpoints"]] == [endpoint_id]


def test_deliveries_page_newest_first_with_a_cursor(shop, receiver):
    endpoint_id, _ = create_endpoint(shop, receiver.url, ["member.signed_up"])
    for i in range(5):
        shop.sign_up("demo", f"crm-{i}")
    deliver(shop.runtime)
    integrator = shop.integrator("demo")
    page = integrator(DELIVERIES, {"first": 3})["webhookDeliveries"]
    ids = [int(e["node"]["id"]) for e in page["edges"]]
    assert ids == sorted(ids, reverse=True) and page["pageInfo"]["hasNextPage"]
    rest = integrator(DELIVERIES, {"first": 3, "after": page["pageInfo"]["endCursor"]})["webhookDeliveries"]
    assert len(rest["edges"]) == 2 and not rest["pageInfo"]["hasNextPage"]
    errors = integrator.errors(DELIVERIES, {"first": 1000})
    assert "first is 1000" in errors[0]["message"]


def test_points_expiring_is_sent_once_per_expiry_date_the_configured_days_before(shop, receiver):
    shop.clock.set(datetime(2025, 1, 15, 12, tzinfo=UTC))
    create_endpoint(shop, receiver.url, ["points.expiring", "points.expired"])
    member = shop.sign_up("demo", "crm-1")
    shop.pay("demo", member, "o-1", 30000)  # 300 points expiring at the end of 31 January 2026 (Shanghai)
    shop.clock.set(datetime(2026, 1, 20, 12, tzinfo=UTC))  # 11 days before: not yet
    shop.run_jobs("demo", force=True)
    shop.clock.set(datetime(2026, 1, 26, 12, tzinfo=UTC))  # within 7 days
    assert shop.run_jobs("demo", force=True)["points.notify_expiring"].result == "1 expiry notice(s)"
    assert shop.run_jobs("demo", force=True)["points.notify_expiring"].result is None  # idempotent
    shop.clock.set(datetime(2026, 2, 2, tzinfo=UTC))
    shop.run_jobs("demo", force=True)
    deliver(shop.runtime)
    bodies = sorted((r.json for r in receiver.received), key=lambda body: body["data"]["sequence"])
    assert [b["type"] for b in bodies] == ["points.expiring", "points.expired"]
    expiring = bodies[0]["data"]
    assert (expiring["points"], expiring["expiresOn"], expiring["daysLeft"]) == (300, "2026-01-31", 5)
    assert bodies[1]["data"]["points"] == 300 and bodies[1]["data"]["cause"] == {"kind": "job",
                                                                                  "job": "points.settle_lots"}
    assert bodies[1]["data"]["sequence"] > expiring["sequence"]


def test_a_new_event_goes_to_each_enabled_endpoint_of_its_shop_subscribed_to_it_and_older_than_it(shop):
    from memberkit.plugins.webhooks import outbox

    start = datetime(2026, 6, 1, 8, tzinfo=UTC)
    shop.clock.set(start)
    url = "http://127.0.0.1:9/hook"
    every, _ = create_endpoint(shop, url)
    sign_ups, _ = create_endpoint(shop, url, ["member.signed_up"])
    orders, _ = create_endpoint(shop, url, ["order.paid", "order.refunded"])
    disabled, _ = create_endpoint(shop, url)
    update = "mutation($id: ID!) { updateWebhookEndpoint(id: $id, enabled: false) { errors { code } } }"
    assert shop.integrator("demo")(update, {"id": disabled})["updateWebhookEndpoint"]["errors"] == []
    member = shop.sign_up("demo", "crm-1")
    shop.clock.set(start + timedelta(minutes=1))
    later, _ = create_endpoint(shop, url)  # made after the sign-up: hears only of what comes after it
    shop.pay("demo", member, "o-1", 12800)

    def fanned() -> set[tuple[str, str]]:
        with shop.runtime.db.write() as conn:
            outbox.fan_out(conn, shop.clock.now(), ["demo"])
        with shop.runtime.db.read() as conn:
            return set(conn.execute(select(WebhookEvent.type, WebhookDelivery.endpoint_id).join(
                WebhookDelivery, WebhookDelivery.event_id == WebhookEvent.id)).all())

    deliveries = fanned()
    types = {event_type for event_type, _ in deliveries}
    assert {"member.signed_up", "order.paid", "points.earned"} <= types
    assert deliveries == (
        {("member.signed_up", every), ("member.signed_up", sign_ups), ("order.paid", orders)}
        | {(event_type, endpoint) for event_type in types - {"member.signed_up"} for endpoint in (every, later)})
    assert fanned() == deliveries  # each event is fanned out once
    with shop.runtime.db.read() as conn:
        assert conn.execute(select(func.count()).where(WebhookEvent.fanned.is_(False))).scalar() == 0


def test_shutting_down_gives_back_what_it_claimed(shop, receiver):
    create_endpoint(shop, receiver.url, ["member.signed_up"])
    shop.sign_up("demo", "crm-1")
    from memberkit.plugins.webhooks import deliveries

    owner = "test-owner"
    claimed = deliveries.claim(shop.runtime, ["demo"], owner)
    assert len(claimed) == 1
    assert deliveries.claim(shop.runtime, ["demo"], "another") == []  # leased: nobody else takes it
    assert deliveries.release(shop.runtime, owner) == 1
    assert len(deliveries.claim(shop.runtime, ["demo"], "another")) == 1


def test_a_lapsed_lease_is_taken_over_and_the_late_answer_of_its_old_owner_is_ignored(shop, receiver):
    from memberkit.plugins.webhooks import deliveries
    from memberkit.plugins.webhooks.transport import Outcome

    start = datetime(2026, 6, 1, 8, tzinfo=UTC)
    shop.clock.set(start)
    create_endpoint(shop, receiver.url, ["member.signed_up"])
    shop.sign_up("demo", "crm-1")
    (dead,) = deliveries.claim(shop.runtime, ["demo"], "dead-process")
    shop.clock.set(start + timedelta(minutes=5))
    deliver(shop.runtime)
    assert len(receiver.received) == 1
    deliveries.record(shop.runtime, "dead-process", [(dead, Outcome(False, 500, "HTTP 500"))])
    (row,) = stored(shop.runtime, WebhookDelivery)
    assert (row.status, row.attempts) == ("DELIVERED", 1)


def test_an_order_writes_all_its_events_in_one_statement(shop, monkeypatch):
    from memberkit.plugins.webhooks import outbox

    member = shop.sign_up("demo", "crm-1")
    writes = []
    original = outbox.Prepared.cursor

    def counting(self, conn, params):
        if self in outbox._WRITES.values():
            writes.append(params)
        return original(self, conn, params)

    monkeypatch.setattr(outbox.Prepared, "cursor", counting)
    shop.pay("demo", member, "o-1", 60000)
    assert len(writes) == 1
    types = [value for key, value in writes[0].items() if key.startswith("t")]
    assert {"order.paid", "points.earned", "tier.changed", "coupon.issued"} <= set(types)
    with shop.runtime.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(WebhookEvent)
                            .where(WebhookEvent.type.in_(types))).scalar() >= len(types)


def test_jobs_emit_within_their_transaction(shop):
    shop.clock.set(datetime(2025, 1, 15, 12, tzinfo=UTC))
    member = shop.sign_up("demo", "crm-1")
    shop.pay("demo", member, "o-1", 30000)
    shop.clock.set(datetime(2026, 2, 2, tzinfo=UTC))
    runs = jobs.run_due(shop.runtime, force=True)
    assert all(run.status != "failed" for run in runs), runs
    rows = stored(shop.runtime, WebhookEvent, WebhookEvent.type == "points.expired")
    assert len(rows) == 1 and json.loads(rows[0].data)["points"] == 300
    assert clock.now() == datetime(2026, 2, 2, tzinfo=UTC)


class TierWatcher:
    """A third plugin hearing tier changes and outbound events through core's hooks."""

    def __init__(self):
        self.tiers, self.batches = [], []

    @hookimpl
    def tier_changed(self, ctx, member_id, before, after, reason):
        self.tiers.append((member_id, before.code if before else None, after.code, reason))

    @hookimpl
    def outbound_events(self, ctx, events):
        self.batches.append([event.type for event in events])


def test_other_plugins_hear_tier_changed_and_outbound_events_through_core(memberkit):
    watcher = TierWatcher()
    settings = DEMO.replace('"segments", "webhooks"]', '"segments", "webhooks", "tier_watcher"]')
    shop = memberkit(settings, plugins=[Plugin("tier_watcher", hooks=watcher)])
    member = shop.sign_up("demo", "crm-1")
    shop.pay("demo", member, "o-1", 250000)  # 2,500 yuan: regular to gold in one order
    shop.refund("demo", "o-1", "r-1", 250000)
    assert watcher.tiers == [(member, "REGULAR", "GOLD", "ORDER"), (member, "GOLD", "REGULAR", "REFUND")]
    assert len(watcher.batches) == 3  # one per transaction: sign-up, order, refund
    assert "tier.changed" in watcher.batches[1] and "order.refunded" in watcher.batches[2]
    with shop.runtime.db.read() as conn:  # the webhooks outbox got the same events
        assert conn.execute(select(func.count()).select_from(WebhookEvent)).scalar() == sum(map(len, watcher.batches))


def test_docs_events_md_describes_every_type_of_the_demo_shop(shop):
    documented = (ROOT / "docs" / "events.md").read_text()
    types = shop.integrator("demo")("{ outboundEventTypes }")["outboundEventTypes"]
    assert len(types) >= 15
    assert [t for t in types if f"| `{t}` |" not in documented] == []
