"""The delivery loop: claim due deliveries under a lease, send them, record what happened.

Every process that runs it (each worker of ``memberkit serve``, or ``memberkit webhooks deliver``) claims
in a committed transaction before sending (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's single writer
on SQLite), so each attempt is made by one process; a process that dies mid-request leaves a lease that runs
out and the delivery is tried again. Deliveries are independent: one that keeps failing holds back no other.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, exists, false, literal, or_, select, true, update
from starlette.concurrency import run_in_threadpool

from memberkit.plugin import Prepared, Runtime, UTCDateTime, among, clock, listed, listed_value
from memberkit.plugins.webhooks import amqp, signing
from memberkit.plugins.webhooks.outbox import DELIVERIES, ENDPOINTS, EVENTS, fan_out
from memberkit.plugins.webhooks.settings import NAME, WebhooksSettings
from memberkit.plugins.webhooks.transport import Outcome, Sender

log = logging.getLogger("memberkit.webhooks")
CLAIM_BATCH = 200
IDLE_POLL = 0.25  # seconds between looks when there is nothing to do
PER_ENDPOINT = 8  # requests in flight to one endpoint at a time, so a small receiver is not swamped


@dataclass(frozen=True)
class Work:
    """One claimed attempt: where it goes, what it sends, and under which settings."""

    delivery_id: int
    shop: str
    attempts: int
    endpoint_id: str
    kind: str
    url: str
    message_id: str
    timestamp: int
    body: bytes
    secrets: tuple[str, ...]
    event_type: str
    error: str | None = None  # why it cannot be sent at all (a server key gone)


def _settings(runtime: Runtime, shop: str) -> WebhooksSettings:
    return runtime.shop(shop).settings_for(NAME) or WebhooksSettings()


def lease_for(settings: WebhooksSettings) -> timedelta:
    # an attempt takes at most connect + read timeouts; twice that and a margin for recording it
    return timedelta(seconds=2 * (settings.connect_timeout_seconds + settings.read_timeout_seconds) + 5)


def active_secrets(endpoint: Any, now: datetime) -> tuple[str, ...]:
    found = [signing.secret_of(endpoint.key_id, endpoint.salt)]
    if endpoint.old_salt and endpoint.old_until and endpoint.old_until > now:
        found.append(signing.secret_of(endpoint.old_key_id, endpoint.old_salt))
    return tuple(found)


def due_clause(now: datetime):
    return and_(DELIVERIES.c.status == "PENDING", DELIVERIES.c.next_attempt_at <= now,
                or_(DELIVERIES.c.lease_until.is_(None), DELIVERIES.c.lease_until < now))


def anything_to_do(runtime: Runtime, shops: list[str]) -> bool:
    """A read: whether a write transaction is worth taking (SQLite has one writer)."""
    now = clock.now()
    with runtime.db.read() as conn:
        unfanned = select(EVENTS.c.id).where(EVENTS.c.fanned == false(), EVENTS.c.shop.in_(shops))
        due = select(DELIVERIES.c.id).where(due_clause(now), DELIVERIES.c.shop.in_(shops))
        return bool(conn.execute(select(or_(exists(unfanned), exists(due)))).scalar())


# A round's statements, compiled once (the loop holds SQLite's one write lock, which orders wait for, meanwhile)
DELIVERED = Prepared({dialect: update(DELIVERIES).where(
    listed(DELIVERIES.c.id, dialect, "ids"), DELIVERIES.c.lease_owner == bindparam("owner")).values(
    status="DELIVERED", delivered_at=bindparam("now", type_=UTCDateTime), next_attempt_at=None,
    attempts=DELIVERIES.c.attempts + 1, last_status_code=bindparam("code"), last_error=None, lease_owner=None,
    lease_until=None) for dialect in ("postgresql", "sqlite")})
_LEASES: dict[tuple[str, ...], Prepared] = {}


def _lease(shops: tuple[str, ...]) -> Prepared:
    """Lease up to `limit` due deliveries of enabled endpoints of `shops`, soonest due first."""
    statement = _LEASES.get(shops)
    if statement is None:
        enabled = select(ENDPOINTS.c.id).where(ENDPOINTS.c.enabled == true())
        chosen = (select(DELIVERIES.c.id).where(due_clause(bindparam("now", type_=UTCDateTime)),
                                                DELIVERIES.c.shop.in_([literal(shop) for shop in shops]),
                                                DELIVERIES.c.endpoint_id.in_(enabled))
                  .order_by(DELIVERIES.c.next_attempt_at).limit(bindparam("limit"))
                  .with_for_update(skip_locked=True))
        statement = _LEASES[shops] = Prepared(
            update(DELIVERIES).where(DELIVERIES.c.id.in_(chosen))
            .values(lease_owner=bindparam("owner"), lease_until=bindparam("until", type_=UTCDateTime))
            .returning(DELIVERIES.c.id))
    return statement


def claim(runtime: Runtime, shops: list[str], owner: str, limit: int = CLAIM_BATCH,
          results: list[tuple[Work, Outcome]] = ()) -> list[Work]:
    """Store the outcomes of the last round (`results`), fan out what is new, then lease up to `limit` due
    deliveries of enabled endpoints: one transaction, committed before anything is sent."""
    now = clock.now()
    lease = max((lease_for(_settings(runtime, shop)) for shop in shops), default=timedelta(minutes=1))
    with runtime.db.write() as conn:
        if results:
            store_outcomes(conn, runtime, owner, results, now)
        fan_out(conn, now, shops)
        ids = [row.id for row in _lease(tuple(shops)).all(
            conn, {"now": now, "limit": limit, "owner": owner, "until": now + lease})]
    if not ids:
        return []
    # what to send is read after the lease is committed, outside the write lock the orders wait for
    with runtime.db.read() as conn:
        rows = conn.execute(
            select(DELIVERIES.c.id, DELIVERIES.c.shop, DELIVERIES.c.attempts, DELIVERIES.c.endpoint_id,
                   ENDPOINTS.c.kind, ENDPOINTS.c.url, ENDPOINTS.c.key_id, ENDPOINTS.c.salt, ENDPOINTS.c.old_key_id,
                   ENDPOINTS.c.old_salt, ENDPOINTS.c.old_until, EVENTS.c.type,
                   EVENTS.c.member_id, EVENTS.c.external_id, EVENTS.c.sequence, EVENTS.c.data,
                   EVENTS.c.created_at.label("event_created_at"), EVENTS.c.id.label("event_id"))
            .join(ENDPOINTS, ENDPOINTS.c.id == DELIVERIES.c.endpoint_id)
            .join(EVENTS, EVENTS.c.id == DELIVERIES.c.event_id)
            .where(among(conn, DELIVERIES.c.id, ids), DELIVERIES.c.lease_owner == owner)).all()
    return [work_of(row, now) for row in rows]


def work_of(row: Any, now: datetime) -> Work:
    """What one claimed delivery sends: the event's body, signed with the endpoint's active secrets."""
    body = signing.body(row.type, row.event_created_at, row.member_id, row.external_id, row.sequence, row.data)
    try:  # a queue's endpoint has no secret: the broker is the integrator's own
        found, error = (active_secrets(row, now) if row.kind == "http" else ()), None
    except signing.MissingServerKey as exc:
        found, error = (), str(exc)
    # the wall clock, not memberkit's (which tests and MEMBERKIT_NOW move): receivers check it against theirs
    return Work(row.id, row.shop, row.attempts, row.endpoint_id, row.kind, row.url, signing.message_id(row.event_id),
                int(time.time()), body, found, row.type, error)


def record(runtime: Runtime, owner: str, results: list[tuple[Work, Outcome]]) -> None:
    """Store attempts' outcomes in a transaction of their own (the loop stores them with its next claim)."""
    with runtime.db.write() as conn:
        store_outcomes(conn, runtime, owner, results, clock.now())


def store_outcomes(conn, runtime: Runtime, owner: str, results: list[tuple[Work, Outcome]], now: datetime) -> None:
    """Store each attempt's outcome (only where this process still holds the lease): DELIVERED, or the next
    attempt on the shop's schedule with jitter, or FAILED after the last; an endpoint that has failed
    everything for the shop's ``disable_after_hours`` is disabled. The deliveries that went through, the
    common case, are stored by one statement."""
    delivered: dict[int | None, list[int]] = {}  # by status code (200, 204, ...)
    recovered: set[str] = set()  # endpoints that answered: their failing clock stops
    for work, outcome in results:
        if outcome.delivered:
            delivered.setdefault(outcome.status_code, []).append(work.delivery_id)
            recovered.add(work.endpoint_id)
    for code, ids in delivered.items():
        DELIVERED.cursor(conn, {"ids": listed_value(conn, ids), "owner": owner, "now": now, "code": code})
    if recovered:
        conn.execute(update(ENDPOINTS).where(ENDPOINTS.c.id.in_(recovered), ENDPOINTS.c.failing_since.is_not(None))
                     .values(failing_since=None))
    for work, outcome in results:
        if not outcome.delivered:
            _record_failure(conn, owner, work, outcome, now, _settings(runtime, work.shop))


def _record_failure(conn, owner: str, work: Work, outcome: Outcome, now: datetime,
                    settings: WebhooksSettings) -> None:
    attempts = work.attempts + 1
    error = outcome.error[:500] if outcome.error else None
    values: dict[str, Any] = {"attempts": attempts, "last_status_code": outcome.status_code,
                              "last_error": error, "lease_owner": None, "lease_until": None}
    if attempts > len(settings.retry_seconds):
        values.update(status="FAILED", next_attempt_at=None)
    else:
        wait = settings.retry_seconds[attempts - 1] * random.uniform(0.9, 1.1)
        values.update(next_attempt_at=now + timedelta(seconds=wait))
    stored = conn.execute(update(DELIVERIES).where(DELIVERIES.c.id == work.delivery_id,
                                                   DELIVERIES.c.lease_owner == owner)
                          .values(**values).returning(DELIVERIES.c.endpoint_id)).scalar()
    if stored is None:
        return  # the lease ran out and another process took it over
    conn.execute(update(ENDPOINTS).where(ENDPOINTS.c.id == stored, ENDPOINTS.c.failing_since.is_(None))
                 .values(failing_since=now))
    conn.execute(update(ENDPOINTS).where(
        ENDPOINTS.c.id == stored, ENDPOINTS.c.enabled == true(),
        ENDPOINTS.c.failing_since <= now - timedelta(hours=settings.disable_after_hours))
        .values(enabled=False, updated_at=now, disabled_reason=f"every delivery failed for "
                f"{settings.disable_after_hours} hours (last: {error or 'no answer'})"[:200]))


def release(runtime: Runtime, owner: str) -> int:
    """Give back every lease this process still holds (shutting down): tried again at once elsewhere."""
    with runtime.db.write() as conn:
        return conn.execute(update(DELIVERIES).where(DELIVERIES.c.lease_owner == owner)
                            .values(lease_owner=None, lease_until=None)).rowcount


Send = Callable[[Work], Awaitable[Outcome]]


class Deliverer:
    """One process's delivery loop over the shops that enable webhooks."""

    def __init__(self, runtime: Runtime, senders: dict[str, Send] | None = None):
        """`senders` by endpoint kind: "http" is built in; another kind (a queue) brings its own."""
        self.runtime = runtime
        self.shops = [slug for slug, shop in runtime.settings.shops.items() if NAME in shop.plugins]
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"[:64]
        self.http = Sender()
        self.senders: dict[str, Send] = {"http": self._send_http, **(senders or {})}
        self.in_flight: dict[str, asyncio.Semaphore] = {}
        self.closers: list[Callable[[], Awaitable[None]]] = []
        self.unstored: list[tuple[Work, Outcome]] = []  # the last round's outcomes, stored with the next claim

    async def _send_http(self, work: Work) -> Outcome:
        settings = _settings(self.runtime, work.shop)
        timeouts = {"connect": settings.connect_timeout_seconds, "read": settings.read_timeout_seconds}
        return await self.http.send(work.url, signing.headers(list(work.secrets), work.message_id, work.timestamp,
                                                              work.body), work.body, timeouts)

    async def _attempt(self, work: Work) -> Outcome:
        if work.error:
            return Outcome(False, None, work.error)
        sender = self.senders.get(work.kind)
        if sender is None:
            return Outcome(False, None, f"no sender for endpoints of kind {work.kind!r} in this process")
        limit = self.in_flight.setdefault(work.url, asyncio.Semaphore(PER_ENDPOINT))
        try:
            async with limit:
                return await sender(work)
        except Exception as exc:  # a sender must not take the loop down; the attempt is retried
            log.exception("webhook delivery %s failed", work.delivery_id)
            return Outcome(False, None, f"{type(exc).__name__}: {exc}"[:500])

    async def once(self) -> int:
        """One round: store the last round's outcomes and claim (one transaction), send concurrently.
        Returns how many attempts were made."""
        stored, self.unstored = self.unstored, []
        if not self.shops or not (stored or await run_in_threadpool(anything_to_do, self.runtime, self.shops)):
            return 0
        try:
            claimed = await run_in_threadpool(claim, self.runtime, self.shops, self.owner, CLAIM_BATCH, stored)
        except Exception:
            self.unstored = stored  # kept for the next round
            raise
        if not claimed:
            return 0
        outcomes = await asyncio.gather(*(self._attempt(work) for work in claimed))
        self.unstored = list(zip(claimed, outcomes, strict=True))
        return len(claimed)

    async def run(self, stopping: asyncio.Event) -> None:
        """Deliver until `stopping` is set; then finish the round in flight and release any lease left."""
        if not self.shops:
            return
        try:
            while not stopping.is_set():
                try:
                    made = await self.once()
                except Exception:  # the database may be away for a moment: keep going
                    log.exception("webhook delivery round failed")
                    made = 0
                if not made:
                    try:
                        await asyncio.wait_for(stopping.wait(), IDLE_POLL)
                    except TimeoutError:
                        pass
        finally:
            try:
                if self.unstored:
                    await run_in_threadpool(record, self.runtime, self.owner, self.unstored)
                await run_in_threadpool(release, self.runtime, self.owner)
            finally:
                await self.http.close()


async def deliver(runtime: Runtime, stopping: asyncio.Event) -> None:
    """The webhooks service: ``memberkit serve`` runs it in every worker; ``memberkit webhooks deliver`` alone."""
    while True:
        try:
            deliverer = await run_in_threadpool(deliverer_for, runtime)
            break
        except Exception:  # the database may not be up yet
            log.exception("webhook delivery could not start; trying again in 5 s")
            try:
                await asyncio.wait_for(stopping.wait(), 5)
                return
            except TimeoutError:
                pass
    try:
        await deliverer.run(stopping)
    finally:
        for close in deliverer.closers:
            await close()


def deliverer_for(runtime: Runtime) -> Deliverer:
    """A delivery loop with a sender for every kind of endpoint the shops configure (their amqp endpoints
    brought in line with the settings first)."""
    with runtime.db.write() as conn:
        amqp.sync_endpoints(conn, runtime, clock.now())
    if not amqp.configured(runtime):
        return Deliverer(runtime)
    publisher = amqp.Publisher(runtime)
    deliverer = Deliverer(runtime, senders={amqp.KIND: publisher.send})
    deliverer.closers.append(publisher.close)
    return deliverer
