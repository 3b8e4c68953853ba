"""The operator console's sign-in: a staff key exchanged for a session (a cookie) and its CSRF token, and the
audit log as GraphQL reads it.

A session id and its CSRF token are random; only their SHA-256 hashes are stored. Every cookie request reads
the session joined to its staff key, so signing out, the session's expiry and the key's revocation all end
it at once, in every process.
"""

from __future__ import annotations

import hmac
import json
import secrets
from datetime import datetime, timedelta
from typing import Optional

import strawberry
from sqlalchemy import Connection, delete, insert, select
from sqlmodel import Field, SQLModel

from memberkit.core import clock
from memberkit.core.models import timestamp
from memberkit.schema.audit import AUDIT
from memberkit.schema.auth import ApiKey, Principal, key_principal, secret_hash
from memberkit.schema.context import RequestContext, VisibleError
from memberkit.schema.types import PageInfo, id_after, id_cursor

SESSION_HOURS = 8  # a session ends this long after sign-in, whatever it did since
MAX_AUDIT_PAGE = 100


class StaffSession(SQLModel, table=True):
    __tablename__ = "core_staff_session"

    id_hash: str = Field(primary_key=True, max_length=64)  # SHA-256 of the cookie's session id
    csrf_hash: str = Field(max_length=64)  # SHA-256 of the CSRF token every cookie request must carry
    key_id: str = Field(max_length=32, index=True)
    created_at: datetime = timestamp()
    expires_at: datetime = timestamp(index=True)


def open_session(conn: Connection, key_id: str) -> tuple[str, str, datetime]:
    """A new session for the staff key: (session id, CSRF token, expiry), both values shown once. Sessions
    past their expiry go at the same time, so the table holds only live ones."""
    now = clock.now()
    conn.execute(delete(StaffSession).where(StaffSession.expires_at <= now))
    session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    expires = now + timedelta(hours=SESSION_HOURS)
    conn.execute(insert(StaffSession).values(id_hash=secret_hash(session_id), csrf_hash=secret_hash(csrf),
                                             key_id=key_id, created_at=now, expires_at=expires))
    return session_id, csrf, expires


def close_session(conn: Connection, session_id: str) -> bool:
    """Sign out: the session ends now; False if there was none."""
    return bool(conn.execute(delete(StaffSession).where(StaffSession.id_hash == secret_hash(session_id))).rowcount)


def session_principal(conn: Connection, session_id: str, csrf: str | None) -> tuple[Principal | None, bool]:
    """The staff key a live session of a live key stands for (None otherwise), and whether `csrf` is the
    session's own CSRF token."""
    row = conn.execute(
        select(ApiKey.id, ApiKey.shop, ApiKey.kind, ApiKey.role, ApiKey.label, StaffSession.csrf_hash)
        .join(ApiKey, ApiKey.id == StaffSession.key_id)
        .where(StaffSession.id_hash == secret_hash(session_id), StaffSession.expires_at > clock.now(),
               ApiKey.revoked_at.is_(None), ApiKey.kind == "staff")).first()
    if row is None:
        return None, False
    return key_principal(row), csrf is not None and hmac.compare_digest(secret_hash(csrf), row.csrf_hash)


# ---------------------------------------------------------------- the audit log in GraphQL


@strawberry.type
class AuditArgument:
    name: str
    value: str = strawberry.field(description="the value as JSON")


@strawberry.type(description="One staff write: who made it, what it was, when, and the reason given.")
class AuditEntry:
    id: strawberry.ID
    key_id: str = strawberry.field(description="the staff key that made the write")
    key_label: str
    role: str = strawberry.field(description="the key's role then: viewer or operator")
    operation: str = strawberry.field(description="the mutation, e.g. adjustPoints")
    arguments: list[AuditArgument] = strawberry.field(description="its arguments, without personal data or "
                                                                  "the reason")
    reason: Optional[str]
    created_at: datetime


@strawberry.type
class AuditEntryEdge:
    node: AuditEntry
    cursor: str


@strawberry.type
class AuditEntryConnection:
    edges: list[AuditEntryEdge]
    page_info: PageInfo


def contribute(builder) -> None:
    def audit_log(Member):
        async def resolve(info: strawberry.Info, first: Optional[int] = 20,
                          after: Optional[str] = None) -> AuditEntryConnection:
            """The shop's staff writes, newest first (integrator, or any staff key)."""
            context: RequestContext = info.context
            context.require_integrator(allow="read")
            size = 20 if first is None else first
            if not 0 <= size <= MAX_AUDIT_PAGE:
                raise VisibleError(f"auditLog: first must be from 0 to {MAX_AUDIT_PAGE}")
            before = id_after("audit", after, "after")
            query = select(AUDIT).where(AUDIT.c.shop == context.shop.slug)
            if before is not None:
                query = query.where(AUDIT.c.id < before)
            rows = await context.read(lambda ctx: ctx.conn.execute(
                query.order_by(AUDIT.c.id.desc()).limit(size + 1)).all())
            edges = [AuditEntryEdge(node=AuditEntry(
                id=strawberry.ID(str(r.id)), key_id=r.key_id, key_label=r.key_label, role=r.role,
                operation=r.operation, reason=r.reason, created_at=r.created_at,
                arguments=[AuditArgument(name=k, value=json.dumps(v)) for k, v in r.arguments.items()]),
                cursor=id_cursor("audit", r.id)) for r in rows[:size]]
            return AuditEntryConnection(edges=edges, page_info=PageInfo(
                has_next_page=len(rows) > size, end_cursor=edges[-1].cursor if edges else None))
        return resolve

    builder.query_field("audit_log", audit_log)
