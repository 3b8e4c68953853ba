"""The audit log of staff writes: who (the staff key, its label and role), what (the operation and its
arguments, no personal data), when, and the reason given. Each row is written in the transaction of the write
it records, so it exists exactly when that write committed: a refusal or a repeat writes none."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Column, Connection, Index, insert
from sqlmodel import Field, SQLModel

from memberkit.core.context import Context
from memberkit.core.models import timestamp
from memberkit.core.runtime import Runtime
from memberkit.core.settings import Shop
from memberkit.schema.auth import Principal

MAX_REASON = 500  # more than any write's own reason limit: the audit row never refuses what the write took


class AuditEntry(SQLModel, table=True):
    __tablename__ = "core_audit_log"
    __table_args__ = (Index("ix_core_audit_log_shop_id", "shop", "id"),  # a shop's log, newest first
                      Index("ix_core_audit_log_event_id", "event_id"))  # a member's writes (erasure, export)

    id: int | None = Field(default=None, primary_key=True)
    shop: str = Field(max_length=64)
    key_id: str = Field(max_length=32)
    key_label: str = Field(default="", max_length=200)
    role: str = Field(max_length=16)
    operation: str = Field(max_length=64)  # the GraphQL mutation, e.g. "adjustPoints"
    arguments: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    reason: str | None = Field(default=None, max_length=MAX_REASON)
    event_id: int | None = None  # the core_event the write was recorded as
    created_at: datetime = timestamp()


AUDIT = AuditEntry.__table__


@dataclass(frozen=True)
class StaffWrite:
    """What the audit log keeps of one staff write: the operation and the arguments that say what it did,
    without personal data (the resolver chooses them); `reason` is the one the caller gave, if any."""

    operation: str
    arguments: dict[str, Any] = field(default_factory=dict)

    @property
    def reason(self) -> str | None:
        reason = self.arguments.get("reason")
        return str(reason).strip()[:MAX_REASON] if reason is not None else None


def _plain(value: Any) -> Any:
    """Arguments as JSON: instants and dates as ISO text, enums by value."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return getattr(value, "value", value)


def record(conn: Connection, shop: str, principal: Principal, write: StaffWrite, event_id: int | None,
           now: datetime) -> None:
    arguments = {k: _plain(v) for k, v in write.arguments.items() if k != "reason"}
    conn.execute(insert(AuditEntry).values(
        shop=shop, key_id=principal.key_id, key_label=principal.label, role=principal.staff_role or "",
        operation=write.operation, arguments=arguments, reason=write.reason, event_id=event_id, created_at=now))


class AuditedRuntime:
    """The runtime as one staff write sees it: the event transaction it opens (core.intake.run_event) also
    writes the audit row, among the writes run just before commit (``ctx.last``), so a refusal (rolled back)
    or a repeat (answered before ``last`` runs) records nothing. Everything else is the runtime's own."""

    def __init__(self, runtime: Runtime, principal: Principal, write: StaffWrite):
        self._runtime, self._principal, self._write = runtime, principal, write

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runtime, name)

    def context(self, shop: Shop, conn, now: datetime | None = None, **extra) -> Context:
        ctx = self._runtime.context(shop, conn, now, **extra)
        ctx.last.append(lambda: record(ctx.conn, shop.slug, self._principal, self._write, ctx.event_id, ctx.now))
        return ctx

    transaction = Runtime.transaction  # a write outside an event is recorded too (through `context` above)
