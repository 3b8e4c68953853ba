"""Erasure and the data subject's export (RULES.md section 9): ``eraseMember`` anonymises a member in one
event, ``memberDataExport`` gives back, as JSON, everything memberkit holds about one.

Erasing deletes the member's personal row (phone and email hashes, birthday), clears the tags, marks the
member erased and releases the sign-up key (``externalId`` and the sign-up event's key become a tombstone,
so the same externalId signs up afresh as a new member); plugins drop what they hold about the person
(``member_erased``); ledgers, orders and coupons stay for accounting. The phone and email survive only as
fraud hashes (core_fraud_hash: re-keyed with a key of their own, linked to no member, pruned after
MEMBERKIT_FRAUD_HASH_DAYS), so a sign-up with them is ``seen_before`` and earns no sign-up rewards again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from datetime import date, datetime, timedelta
from typing import Any, Optional

import strawberry
from sqlalchemy import delete, func, select, update
from sqlmodel import Field, SQLModel

from memberkit.core.checks import require_key
from memberkit.core.context import Context
from memberkit.core.db import upsert
from memberkit.core.hashing import keyed_hash, keyed_hashes, pii_keys
from memberkit.core.intake import EventResult, Unchanged, run_event
from memberkit.core.models import Coupon, Event, Member, MemberPersonal, Order, timestamp
from memberkit.core.runtime import Runtime
from memberkit.core.settings import Shop
from memberkit.core.types import Refused
from memberkit.schema import auth
from memberkit.schema.audit import AUDIT
from memberkit.schema.context import MAX_IDEMPOTENCY_KEY, RequestContext
from memberkit.schema.types import UserError


class FraudHash(SQLModel, table=True):
    """An erased member's phone or email as a fraud hash (its own key), linked to nobody, until `expires_at`."""

    __tablename__ = "core_fraud_hash"

    shop: str = Field(primary_key=True, max_length=64)
    hash: str = Field(primary_key=True, max_length=64)
    created_at: datetime = timestamp()
    expires_at: datetime = timestamp()


log = logging.getLogger("memberkit.erasure")
MEMBERS, PERSONAL, EVENTS, FRAUD = Member.__table__, MemberPersonal.__table__, Event.__table__, FraudHash.__table__
TOMBSTONE = "erased:"  # + member id: the erased member's externalId and sign-up key
EXPORT_ROWS = 5000  # the most rows of one list in an export (the newest); `truncated` says where it cut
KIND = "member_erased"  # the erasure's own event kind
PERSONAL_EVENTS = ("member_signup", "member_updated")  # events whose payload hash covers personal data


def fraud_hash_days() -> int:
    """How long an erased member's fraud hashes are kept: MEMBERKIT_FRAUD_HASH_DAYS, 730 (two years) unset."""
    raw = os.environ.get("MEMBERKIT_FRAUD_HASH_DAYS", "730")
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"MEMBERKIT_FRAUD_HASH_DAYS={raw!r}: expected a whole number of days, at least 1")
    return int(raw)


def fraud_hashes(stored: str) -> tuple[str, ...]:
    """An erased member's stored phone or email hash, re-keyed for core_fraud_hash: HMAC under a key of
    its own, derived from the PII key that made it (each key, for a hash from before key ids were kept)."""
    made_by = [key for kid, key in pii_keys() if stored.startswith(kid + ":")] or [key for _, key in pii_keys()]
    return tuple(hmac.new(hmac.new(key, b"memberkit:fraud-hash", hashlib.sha256).digest(), stored.encode(),
                           hashlib.sha256).hexdigest()
                 for key in made_by)


def fraud_hashes_of(value: str | None, kind: str) -> tuple[str, ...]:
    """What a new phone or email is looked up by in core_fraud_hash: each stored form of its keyed hash, re-keyed."""
    forms = keyed_hashes(value, kind) if value is not None else ()
    return tuple(dict.fromkeys(fraud for stored in forms for fraud in fraud_hashes(stored)))


def seen_before(ctx: Context, phone: str | None, email: str | None) -> bool:
    """Whether a signing-up phone or email was an erased member's (a fraud hash kept and not expired)."""
    fraud = [*fraud_hashes_of(phone, "phone"), *fraud_hashes_of(email, "email")]
    return bool(fraud) and ctx.conn.execute(select(FRAUD.c.hash).where(
        FRAUD.c.shop == ctx.shop.slug, FRAUD.c.hash.in_(fraud), FRAUD.c.expires_at > ctx.now)).first() is not None


def erase_member(runtime: Runtime, shop: Shop, api_key_id: str | None, *, member_id: str,
                 idempotency_key: str) -> EventResult:
    """Erase the member in one event; an erased member again (any key) answers erased and changes nothing."""
    try:
        key = require_key(idempotency_key, "idempotencyKey", MAX_IDEMPOTENCY_KEY)
    except Refused as refusal:
        return EventResult.refused(refusal)
    event_key = f"{member_id}:{key}"

    def validate(ctx: Context) -> None:
        row = ctx.conn.execute(select(MEMBERS.c.erased_at).where(MEMBERS.c.id == member_id,
                                                                 MEMBERS.c.shop == shop.slug)).first()
        if row is None:
            raise Refused("MEMBER_NOT_FOUND", f"no member {member_id!r} in this shop", "memberId")
        if row.erased_at is not None and not ctx.conn.execute(select(EVENTS.c.id).where(
                EVENTS.c.shop == shop.slug, EVENTS.c.kind == KIND, EVENTS.c.key == event_key)).first():
            raise Unchanged(member_id)  # erased by another key: answered erased, nothing written

    def handle(ctx: Context) -> EventResult:
        # The member's row locked first: an order or a tagging of this member in flight commits before the
        # erasure reads anything, or waits and is then refused (PostgreSQL; SQLite has one writer anyway).
        ctx.conn.execute(select(MEMBERS.c.id).where(MEMBERS.c.id == member_id).with_for_update())
        ctx.hook.member_erased(ctx=ctx, member_id=member_id)  # before core's rows change: plugins may read them
        personal = ctx.conn.execute(select(PERSONAL.c.phone_hash, PERSONAL.c.email_hash)
                                    .where(PERSONAL.c.member_id == member_id)).first()
        kept = {h for stored in (personal or ()) if stored for h in fraud_hashes(stored)}
        # and the externalId's, so that importing the same CRM file again does not bring the person back
        external_id = ctx.conn.execute(select(MEMBERS.c.external_id).where(MEMBERS.c.id == member_id)).scalar_one()
        kept.update(fraud_hashes(keyed_hash(external_id, "external_id")))
        if kept:
            # by the day, not the instant: a timestamp equal to the member's erased_at would link them again
            day = ctx.now.replace(hour=0, minute=0, second=0, microsecond=0)
            expires = day + timedelta(days=fraud_hash_days() + 1)
            ctx.conn.execute(upsert(FRAUD, on=["shop", "hash"], update={"expires_at": expires}).on(ctx.conn),
                             [{"shop": shop.slug, "hash": h, "created_at": day, "expires_at": expires}
                              for h in sorted(kept)])
        ctx.conn.execute(delete(PERSONAL).where(PERSONAL.c.member_id == member_id))
        tombstone = TOMBSTONE + member_id
        ctx.conn.execute(update(MEMBERS).where(MEMBERS.c.id == member_id).values(
            external_id=tombstone, tags=[], erased_at=ctx.now))
        auth.revoke_member_tokens(ctx.conn, shop.slug, member_id)
        # The sign-up's key is released (a retry of it is now a new sign-up); no event keeps a hash of a
        # payload that held the phone, email or birthday.
        mine = (EVENTS.c.shop == shop.slug, EVENTS.c.member_id == member_id)
        ctx.conn.execute(update(EVENTS).where(*mine, EVENTS.c.kind == "member_signup").values(key=tombstone))
        ctx.conn.execute(update(EVENTS).where(*mine, EVENTS.c.kind.in_(PERSONAL_EVENTS)).values(payload_hash="erased"))
        # Staff writes about the member stay in the audit log (who did what, when), without the reason given,
        # free text that may name the person.
        ctx.conn.execute(update(AUDIT).where(AUDIT.c.event_id.in_(select(EVENTS.c.id).where(*mine)))
                         .values(reason=None))
        ctx.emit("member.erased", member_id)
        return EventResult(member_id)

    result = run_event(runtime, shop, KIND, event_key, {"member_id": member_id}, handle, api_key_id, validate)
    if not result.errors and not result.duplicate and runtime.db.is_sqlite:
        checkpoint(runtime)
    return result


def checkpoint(runtime: Runtime) -> None:
    """Copy the WAL into the database file and truncate it, so the erased rows' old pages do not stay in
    the -wal file (secure_delete has zeroed them in the new pages). Best effort: a reader still on an old
    snapshot makes it partial; the next erasure, or SQLite's own checkpoints, finish it."""
    raw = runtime.db.engine.raw_connection()
    try:
        busy, _, _ = raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.warning("erasure: the WAL checkpoint was blocked by a reader; it completes at a later checkpoint")
    finally:
        raw.close()


def prune_fraud_hashes(ctx: Context) -> str | None:
    """The daily job: fraud hashes past their retention go."""
    gone = ctx.conn.execute(delete(FRAUD).where(FRAUD.c.shop == ctx.shop.slug, FRAUD.c.expires_at <= ctx.now)).rowcount
    return f"{gone} fraud hash(es) pruned" if gone else None


# ---------------------------------------------------------------- the export


def plain(value: Any) -> Any:
    """A value as JSON keeps it: instants and dates in ISO 8601, rows as objects."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def export_rows(ctx: Context, query: Any, *newest_first: Any) -> dict[str, Any]:
    """A list for the export: at most EXPORT_ROWS rows of `query`, newest first, and whether it was cut."""
    rows = ctx.conn.execute(query.order_by(*newest_first).limit(EXPORT_ROWS + 1)).mappings().all()
    return {"items": [plain(dict(row)) for row in rows[:EXPORT_ROWS]], "truncated": len(rows) > EXPORT_ROWS}


def export_tables(ctx: Context, tables: Any, member_id: str, column: str = "member_id") -> dict[str, Any]:
    """A plugin's ``member_data`` in one call: each of its tables' rows about the member (by `column`), by
    table name, each list as ``export_rows`` gives it."""
    found = {}
    for model in tables:
        table = getattr(model, "__table__", model)
        if column in table.c:
            newest = [c.desc() for c in table.primary_key.columns]
            found[table.name] = export_rows(ctx, select(table).where(table.c[column] == member_id), *newest)
    return found


def member_data_export(ctx: Context, member_id: str) -> dict[str, Any] | None:
    """Everything memberkit holds about the member: core's profile, coupons and orders, then each enabled
    plugin's part (``member_data``) under its name; None if the shop has no such member."""
    member = ctx.conn.execute(select(MEMBERS.c.id, MEMBERS.c.external_id, MEMBERS.c.joined_at, MEMBERS.c.tags,
                                     MEMBERS.c.created_at, MEMBERS.c.paid_orders, MEMBERS.c.erased_at)
                              .where(MEMBERS.c.id == member_id, MEMBERS.c.shop == ctx.shop.slug)).mappings().first()
    if member is None:
        return None
    personal = ctx.conn.execute(select(PERSONAL.c.phone_hash, PERSONAL.c.email_hash, PERSONAL.c.birthday,
                                       PERSONAL.c.birthday_changed_at)
                                .where(PERSONAL.c.member_id == member_id)).first()
    profile = {**plain(dict(member)), "birthday": plain(personal.birthday) if personal else None,
               "birthdayChangedAt": plain(personal.birthday_changed_at) if personal else None,
               # phone and email are never stored in plain text: only that a keyed hash of each is held
               "phoneHashHeld": bool(personal and personal.phone_hash),
               "emailHashHeld": bool(personal and personal.email_hash)}
    coupons, orders = Coupon.__table__, Order.__table__
    export: dict[str, Any] = {
        "shop": ctx.shop.slug, "exportedAt": plain(ctx.now), "rowLimit": EXPORT_ROWS, "profile": profile,
        "coupons": export_rows(ctx, select(coupons).where(coupons.c.shop == ctx.shop.slug,
                                                          coupons.c.member_id == member_id),
                               coupons.c.issued_at.desc()),
        "orders": export_rows(ctx, select(orders.c.order_id, orders.c.currency, orders.c.total, orders.c.refunded,
                                          orders.c.paid_at, orders.c.detail)
                              .where(orders.c.shop == ctx.shop.slug, orders.c.member_id == member_id),
                              orders.c.paid_at.desc(), orders.c.id.desc()),
        "events": dict(ctx.conn.execute(select(EVENTS.c.kind, func.count()).where(  # what was recorded, by kind
            EVENTS.c.shop == ctx.shop.slug, EVENTS.c.member_id == member_id).group_by(EVENTS.c.kind)).all()),
        "staffWrites": export_rows(ctx, select(AUDIT.c.operation, AUDIT.c.arguments, AUDIT.c.reason, AUDIT.c.role,
                                               AUDIT.c.created_at)
                                   .join(EVENTS, EVENTS.c.id == AUDIT.c.event_id)
                                   .where(EVENTS.c.shop == ctx.shop.slug, EVENTS.c.member_id == member_id),
                                   AUDIT.c.id.desc()),
    }
    for hook in ctx.hook.member_data.get_hookimpls():  # called one by one: each part goes under its plugin's name
        part = hook.function(ctx=ctx, member_id=member_id)
        if part is not None:
            export[hook.plugin_name] = plain(part)
    return export


# ---------------------------------------------------------------- GraphQL


@strawberry.type
class EraseMemberPayload:
    duplicate: bool
    erased: bool
    errors: list[UserError]


def contribute(builder) -> None:
    def erase(Member):
        async def resolve(info: strawberry.Info, member_id: strawberry.ID, idempotency_key: str) -> EraseMemberPayload:
            """Anonymise: personal data and tags gone, ledger kept for accounting; the externalId can sign up
            afresh (integrator). A member already erased answers erased: true and changes nothing."""
            result = await info.context.integrator_write(erase_member, member_id=str(member_id),
                                                         idempotency_key=idempotency_key)
            return EraseMemberPayload(duplicate=result.duplicate, erased=not result.errors,
                                      errors=[UserError.of(e) for e in result.errors])
        return resolve

    def export(Member):
        async def resolve(info: strawberry.Info, member_id: strawberry.ID) -> Optional[str]:
            """Everything memberkit holds about the member, as JSON text (a data subject's access request;
            each list at most 5,000 rows, the newest, with `truncated` where cut); null if no such member
            (integrator)."""
            context: RequestContext = info.context
            context.require_integrator()
            data = await context.read(lambda ctx: member_data_export(ctx, str(member_id)))
            return None if data is None else json.dumps(data, ensure_ascii=False, sort_keys=True)
        return resolve

    builder.mutation_field("erase_member", erase)
    builder.query_field("member_data_export", export)
