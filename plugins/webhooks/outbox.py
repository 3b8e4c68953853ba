"""The outbox: writing a transaction's events in one statement, fanning them out to endpoints, requeueing
and pruning.

Each event carries the member's ``sequence``: on PostgreSQL the statement's first part upserts the
member's row of ``webhooks_sequence`` (a row lock: two transactions of one member number their events
one after the other, in commit order, and a transaction that waited reads the number the other committed);
on SQLite, whose one writer already orders transactions, it counts on from the member's newest event (or
the number kept when old events were pruned). Either way the whole batch is one INSERT, compiled once per
shape of batch.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Boolean,
    Integer,
    String,
    Text,
    and_,
    bindparam,
    case,
    cast,
    false,
    func,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy import update as sa_update
from sqlalchemy.dialects import postgresql, sqlite

from memberkit.plugin import Context, MemberRow, Prepared, UTCDateTime, export_rows, upsert
from memberkit.plugins.webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent, WebhookSequence
from memberkit.plugins.webhooks.settings import settings_of
from memberkit.plugins.webhooks.signing import encode_data

EVENTS, SEQUENCES = WebhookEvent.__table__, WebhookSequence.__table__
ENDPOINTS, DELIVERIES = WebhookEndpoint.__table__, WebhookDelivery.__table__
MEMBERS = MemberRow.__table__
COLUMNS = ("shop", "type", "member_id", "external_id", "sequence", "data", "created_at", "fanned")
ERASED = "member.erased"
FAN_OUT_BATCH = 500
CHUNK = 100  # events per INSERT (an order's few are always one)


def _external_id(member: Any):
    return select(MEMBERS.c.external_id).where(MEMBERS.c.id == member).scalar_subquery()


def _not_erased(member: Any, i: int):
    """An erased member's events are not written, but for the one that says so: filtered inside the batch's
    one INSERT, so no job or refund can tell the platform more about them, at no statement of its own."""
    erased = select(MEMBERS.c.id).where(MEMBERS.c.id == member, MEMBERS.c.erased_at.is_not(None)).exists()
    return or_(cast(bindparam(f"t{i}"), String) == ERASED, ~erased)


def _rows(shape: tuple[int, ...], sequence_of) -> Any:
    """One SELECT per event (``shape[i]``: the index of its member in the batch, -1 for none)."""
    selects, seen = [], Counter()
    for i, slot in enumerate(shape):
        member = cast(bindparam(f"m{slot}"), String) if slot >= 0 else literal(None, String)
        if slot >= 0:
            seen[slot] += 1
            sequence = sequence_of(slot, member, seen[slot])
        else:
            sequence = literal(None, Integer)
        row = select(cast(bindparam("shop"), String), cast(bindparam(f"t{i}"), String), member,
                     _external_id(member) if slot >= 0 else literal(None, String), sequence,
                     cast(bindparam(f"d{i}"), Text), bindparam("now", type_=UTCDateTime), cast(false(), Boolean))
        selects.append(row.where(_not_erased(member, i)) if slot >= 0 else row)
    return selects[0] if len(selects) == 1 else selects[0].union_all(*selects[1:])


def _postgres(shape: tuple[int, ...]) -> Any:
    members = sorted({slot for slot in shape if slot >= 0})
    if not members:
        return EVENTS.insert().from_select(COLUMNS, _rows(shape, None))
    counts = Counter(slot for slot in shape if slot >= 0)
    # members in batch order: m0 < m1 < ... (the caller sorts them), so concurrent batches lock alike
    taken = postgresql.insert(SEQUENCES).values(
        [{"member_id": bindparam(f"m{slot}"), "last": literal(counts[slot])} for slot in members])
    taken = taken.on_conflict_do_update(index_elements=["member_id"],
                                        set_={"last": SEQUENCES.c.last + taken.excluded.last})
    numbers = taken.returning(SEQUENCES.c.member_id, SEQUENCES.c.last).cte("numbers")

    def sequence_of(slot, member, k):
        return (select(numbers.c.last - counts[slot] + k).where(numbers.c.member_id == member)
                .scalar_subquery())

    return EVENTS.insert().from_select(COLUMNS, _rows(shape, sequence_of)).add_cte(numbers)


def _sqlite(shape: tuple[int, ...]) -> Any:
    def sequence_of(slot, member, k):
        newest = select(func.max(EVENTS.c.sequence)).where(EVENTS.c.member_id == member).scalar_subquery()
        kept = select(SEQUENCES.c.last).where(SEQUENCES.c.member_id == member).scalar_subquery()
        return func.coalesce(newest, kept, 0) + k

    return EVENTS.insert().from_select(COLUMNS, _rows(shape, sequence_of))


_WRITES: dict[tuple[str, tuple[int, ...]], Prepared] = {}


def write(ctx: Context, events: list) -> None:
    """The ``outbound_events`` hook: every event of the transaction in one INSERT; a job's thousands of
    events in INSERTs of at most CHUNK (each member's in the order emitted), so no statement grows past
    what compiles and plans in a moment."""
    for start in range(0, len(events), CHUNK):
        _write(ctx, events[start:start + CHUNK])


def _write(ctx: Context, events: list) -> None:
    members = sorted({event.member_id for event in events if event.member_id})
    slot = {member: i for i, member in enumerate(members)}
    # a member's events in the order they were emitted; members in id order
    ordered = sorted(events, key=lambda event: slot.get(event.member_id, len(members)))
    shape = tuple(slot.get(event.member_id, -1) for event in ordered)
    dialect = ctx.conn.dialect.name
    statement = _WRITES.get((dialect, shape))
    if statement is None:
        statement = _WRITES[(dialect, shape)] = Prepared((_postgres if dialect == "postgresql" else _sqlite)(shape))
    common = {"cause": ctx.cause, "settingsVersion": ctx.shop.version}
    params: dict[str, Any] = {"shop": ctx.shop.slug, "now": ctx.now}
    for member, i in slot.items():
        params[f"m{i}"] = member
    for i, event in enumerate(ordered):
        params[f"t{i}"] = event.type
        params[f"d{i}"] = encode_data({**event.data, **common})
    statement.cursor(ctx.conn, params)


# ---------------------------------------------------------------- the delivery side


def subscribed(endpoint: Any, event_type: str) -> bool:
    return not endpoint.event_types or event_type in endpoint.event_types


def _fanned_to(events: Any, dialect: str) -> Any:
    """Pairs of a new event (from `events`) and each enabled endpoint of its shop subscribed to its type and
    created before it. An event of a member erased since it was written (a refund committed while the
    erasure ran) goes nowhere: after ``member.erased`` nothing more about them is told."""
    listed = (func.json_array_elements_text if dialect == "postgresql" else func.json_each)(
        ENDPOINTS.c.event_types).table_valued("value")
    erased = select(MEMBERS.c.id).where(MEMBERS.c.id == events.c.member_id, MEMBERS.c.erased_at.is_not(None)).exists()
    return (select(events.c.shop, ENDPOINTS.c.id, events.c.id, literal("PENDING"), literal(0),
                   bindparam("now", type_=UTCDateTime), bindparam("now", type_=UTCDateTime))
            .join_from(events, ENDPOINTS, and_(
                ENDPOINTS.c.shop == events.c.shop, ENDPOINTS.c.enabled == true(),
                ENDPOINTS.c.created_at <= events.c.created_at,
                or_(func.json_array_length(ENDPOINTS.c.event_types) == 0,
                    select(listed.c.value).where(listed.c.value == events.c.type).exists())))
            .where(or_(events.c.type == ERASED, ~erased)).order_by(events.c.id, ENDPOINTS.c.id))


FANNED_COLUMNS = ("shop", "endpoint_id", "event_id", "status", "attempts", "next_attempt_at", "created_at")
_FAN_OUTS: dict[tuple[str, tuple[str, ...]], tuple] = {}


def _fan_out_statements(dialect: str, shops: tuple[str, ...]) -> tuple:
    """The fan-out, set-based (a round's hundreds of events cost a few statements, not rows through Python:
    the delivery loop holds SQLite's one write lock, which the orders wait for, meanwhile). On PostgreSQL one
    statement: the batch is marked fanned under ``FOR UPDATE SKIP LOCKED`` (so concurrent processes take
    different events) and the marked rows are fanned out. On SQLite, whose one writer is this transaction:
    the batch's last id, then the deliveries of the events up to it, then the mark."""
    new = and_(EVENTS.c.fanned == false(), EVENTS.c.shop.in_([literal(shop) for shop in shops]))
    if dialect == "postgresql":
        batch = (sa_update(EVENTS).where(EVENTS.c.id.in_(
            select(EVENTS.c.id).where(new).order_by(EVENTS.c.id).limit(FAN_OUT_BATCH)
            .with_for_update(skip_locked=True))).values(fanned=True)
            .returning(EVENTS.c.id, EVENTS.c.shop, EVENTS.c.type, EVENTS.c.member_id, EVENTS.c.created_at)
            .cte("batch"))
        fan = postgresql.insert(DELIVERIES).from_select(FANNED_COLUMNS, _fanned_to(batch, dialect)).add_cte(batch)
        return (Prepared(fan.on_conflict_do_nothing()),)
    batch = select(EVENTS.c.id).where(new).order_by(EVENTS.c.id).limit(FAN_OUT_BATCH).subquery()
    upto = Prepared(select(func.max(batch.c.id)))
    up_to = and_(new, EVENTS.c.id <= bindparam("upto"))
    fan = sqlite.insert(DELIVERIES).from_select(FANNED_COLUMNS, _fanned_to(EVENTS, dialect).where(up_to))
    mark = sa_update(EVENTS).where(up_to).values(fanned=True)
    return upto, Prepared(fan.on_conflict_do_nothing()), Prepared(mark)


def fan_out(conn, now: datetime, shops: list[str]) -> None:
    """Turn up to FAN_OUT_BATCH new events into one PENDING delivery per endpoint they go to (`_fanned_to`)."""
    dialect = conn.dialect.name
    statements = _FAN_OUTS.get((dialect, tuple(shops)))
    if statements is None:
        statements = _FAN_OUTS[(dialect, tuple(shops))] = _fan_out_statements(dialect, tuple(shops))
    if dialect == "postgresql":
        statements[0].cursor(conn, {"now": now})
        return
    upto, fan, mark = statements
    last = upto.scalar(conn, {})
    if last is not None:
        fan.cursor(conn, {"now": now, "upto": last})
        mark.cursor(conn, {"upto": last})


def requeue(conn, shop: str, endpoint: Any, since: datetime, now: datetime) -> int:
    """Queue again, as new, every event of the endpoint's types committed since `since`."""
    query = select(EVENTS.c.id).where(EVENTS.c.shop == shop, EVENTS.c.created_at >= since,
                                      EVENTS.c.fanned == true(), EVENTS.c.type != "webhook.test")
    if endpoint.event_types:
        query = query.where(EVENTS.c.type.in_(endpoint.event_types))
    ids = conn.execute(query).scalars().all()
    if not ids:
        return 0
    statement = upsert(DELIVERIES, on=["endpoint_id", "event_id"], update=lambda excluded: {
        "status": "PENDING", "attempts": 0, "next_attempt_at": excluded.next_attempt_at, "lease_owner": None,
        "lease_until": None}).on(conn)
    for start in range(0, len(ids), 1000):
        conn.execute(statement, [{"shop": shop, "endpoint_id": endpoint.id, "event_id": event_id,
                                  "status": "PENDING", "attempts": 0, "next_attempt_at": now, "created_at": now}
                                 for event_id in ids[start:start + 1000]])
    return len(ids)


def prune(ctx: Context, batch: int = 5000, batches: int = 20) -> str | None:
    """The retention job: events older than the retention period go, with their deliveries, a batch at a
    time. Each member's last sequence number is kept first, so numbering never starts again."""
    cutoff = ctx.now - timedelta(days=settings_of(ctx).retention_days)
    conn, gone = ctx.conn, 0
    keep = upsert(SEQUENCES, update=lambda excluded: {
        "last": case((SEQUENCES.c.last > excluded.last, SEQUENCES.c.last), else_=excluded.last)}).on(conn)
    for _ in range(batches):
        ids = conn.execute(select(EVENTS.c.id).where(EVENTS.c.shop == ctx.shop.slug, EVENTS.c.created_at < cutoff)
                           .order_by(EVENTS.c.id).limit(batch)).scalars().all()
        if not ids:
            break
        last = conn.execute(select(EVENTS.c.member_id, func.max(EVENTS.c.sequence))
                            .where(EVENTS.c.id.in_(ids), EVENTS.c.member_id.is_not(None))
                            .group_by(EVENTS.c.member_id)).all()
        if last:
            conn.execute(keep, [{"member_id": member, "last": sequence} for member, sequence in last])
        conn.execute(DELIVERIES.delete().where(DELIVERIES.c.event_id.in_(ids)))
        gone += conn.execute(EVENTS.delete().where(EVENTS.c.id.in_(ids))).rowcount
    return f"{gone} event(s) pruned" if gone else None


def forget(ctx: Context, member_id: str) -> None:
    """``member_erased``: the member's events go with their deliveries (undelivered ones never go out), their
    last sequence number kept so that the ``member.erased`` event written next numbers on."""
    mine = (EVENTS.c.shop == ctx.shop.slug, EVENTS.c.member_id == member_id)
    last = ctx.conn.execute(select(func.max(EVENTS.c.sequence)).where(*mine)).scalar()
    if last is None:
        return
    ctx.conn.execute(upsert(SEQUENCES, update=lambda excluded: {
        "last": case((SEQUENCES.c.last > excluded.last, SEQUENCES.c.last), else_=excluded.last)}).on(ctx.conn),
        {"member_id": member_id, "last": last})
    ctx.conn.execute(DELIVERIES.delete().where(DELIVERIES.c.event_id.in_(select(EVENTS.c.id).where(*mine))))
    ctx.conn.execute(EVENTS.delete().where(*mine))


def held_about(ctx: Context, member_id: str) -> dict[str, Any]:
    """``member_data``: the member's outbound events (what was told about them) and their deliveries by
    status; the payloads are the member's own, so they are given too."""
    mine = (EVENTS.c.shop == ctx.shop.slug, EVENTS.c.member_id == member_id)
    statuses = ctx.conn.execute(select(DELIVERIES.c.status, func.count())
                                .join(EVENTS, EVENTS.c.id == DELIVERIES.c.event_id)
                                .where(*mine).group_by(DELIVERIES.c.status)).all()
    events = export_rows(ctx, select(EVENTS.c.id, EVENTS.c.type, EVENTS.c.sequence, EVENTS.c.created_at,
                                     EVENTS.c.data).where(*mine), EVENTS.c.id.desc())
    for event in events["items"]:
        event["data"] = json.loads(event["data"])
    return {"events": events, "deliveries": dict(statuses)}
