"""Per-request GraphQL context: who calls, for which shop, and how resolvers reach the database."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import weakref
from asyncio import to_thread
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from sqlalchemy import Engine
from sqlalchemy import event as sa_event

from memberkit.core.checks import require_key
from memberkit.core.context import Context
from memberkit.core.intake import EventResult, run_event
from memberkit.core.runtime import Runtime
from memberkit.core.settings import Shop
from memberkit.core.types import Refused
from memberkit.schema.audit import AuditedRuntime, StaffWrite
from memberkit.schema.auth import STAFF_PERMISSIONS, Principal

T = TypeVar("T")
StaffPermission = Literal["read", "operate"]
MAX_IDEMPOTENCY_KEY = 120  # leaves room in the event key (200) for the scope it is recorded under


class VisibleError(Exception):
    """An error meant for the caller, shown even where other errors are masked."""

    code = "BAD_REQUEST"

    def __init__(self, message: str):
        super().__init__(message)
        self.extensions = {"code": self.code}


class TooManyItems(VisibleError):
    """A list longer than its field allows: refused before anything runs, naming the field and the limit."""

    code = "TOO_MANY_ITEMS"

    def __init__(self, field: str, limit: int, count: int):
        super().__init__(f"{field}: {count} items, at most {limit} allowed")
        self.extensions.update(field=field, limit=limit)


def check_list_length(values: list | None, field: str, limit: int) -> None:
    """Refuse a list argument of more than `limit` items (TOO_MANY_ITEMS)."""
    if values is not None and len(values) > limit:
        raise TooManyItems(field, limit, len(values))


class AccessError(VisibleError):
    """A caller reaching for an operation its credential does not allow."""

    code = "FORBIDDEN"


# Set while a write runs on the event loop (RequestContext._one_event): its BEGIN IMMEDIATE then fails at once
# where another process holds SQLite's write lock, instead of waiting in SQLite's busy loop.
NOW_OR_NEVER: ContextVar[bool] = ContextVar("memberkit_now_or_never", default=False)
_HURRIED = "memberkit_hurried"  # on a connection's info: its busy timeout is 0 now
_busy_seconds: weakref.WeakKeyDictionary[Engine, float] = weakref.WeakKeyDictionary()  # engines set up
WRITER_POLL = 0.001  # seconds between looks at a busy writer


def writes_on_the_loop(engine: Engine) -> None:
    """Lets an event's write run on the event loop (`RequestContext._one_event`); for a SQLite engine, once,
    before it serves. Before each write's BEGIN (ahead of core's listener, which issues it) the writer's busy
    timeout becomes 0 for a write on the loop and the engine's own for any other, changed only when it
    differs, so a run of writes on the loop costs no statement more."""
    if engine in _busy_seconds:
        return
    with engine.connect() as conn:
        waits = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()

    def _busy_timeout(conn) -> None:
        if conn.get_execution_options().get("memberkit_read"):
            return
        info, hurry = conn.connection.info, NOW_OR_NEVER.get()
        if info.get(_HURRIED, False) != hurry:
            conn.connection.driver_connection.execute(f"PRAGMA busy_timeout={0 if hurry else waits}")
            info[_HURRIED] = hurry

    # ahead of core's listener, which issues the BEGIN (SQLAlchemy's `insert=True` is ignored for engines)
    begins = list(engine.dispatch.begin)
    for listener in begins:
        sa_event.remove(engine, "begin", listener)
    for listener in (_busy_timeout, *begins):
        sa_event.listen(engine, "begin", listener)
    _busy_seconds[engine] = waits / 1000


@dataclass
class RequestContext:
    runtime: Runtime
    principal: Principal
    shop: Shop
    request: Any = None
    cache: dict[str, Any] = field(default_factory=dict)  # per-request loaders and memoised reads

    # -- who may call what

    def require_integrator(self, allow: StaffPermission | None = None) -> Principal:
        """Integrator operations need the shop's secret key; `allow` names what a staff key's role must grant
        to run it too: "read" (viewer and operator) or "operate" (operator only). Without it, staff may not."""
        principal = self.principal
        if principal.role == "secret" or (allow is not None and principal.may(allow)):
            return principal
        if allow is None:
            raise AccessError("this operation needs the shop's secret key"
                              + (" (staff keys may not run it)" if principal.role == "staff" else ""))
        roles = " or ".join(role for role, granted in STAFF_PERMISSIONS.items() if allow in granted)
        own = f" (this staff key's role is {principal.staff_role})" if principal.role == "staff" else ""
        raise AccessError(f"this operation needs the shop's secret key or a staff key with the role {roles}{own}")

    def require_member(self) -> str:
        """Storefront writes act for the member of the token, never for a member named in input."""
        if self.principal.role != "member" or not self.principal.member_id:
            raise AccessError("this operation needs a member token")
        return self.principal.member_id

    def acting_member(self, member_id: str | None, required: bool = True) -> str | None:
        """The member a storefront or a platform's backend acts for: a member token's own (naming another
        is FORBIDDEN); with the secret key, the member named in `memberId`; a publishable key names none."""
        role = self.principal.role
        if role == "member":
            if member_id is not None and member_id != self.principal.member_id:
                raise AccessError("memberId: a member token acts only for its own member")
            return self.principal.member_id
        if member_id is not None:
            if role != "secret":
                raise AccessError("memberId: only the shop's secret key may name a member")
            return member_id
        if required:
            raise AccessError("this operation needs a member token, or the secret key and memberId")
        return None

    @property
    def member_id(self) -> str | None:
        """The signed-in member (a member token), or None for a key."""
        return self.principal.member_id if self.principal.role == "member" else None

    # -- database access off the event loop: asyncio's own thread hop (the loop's executor, which the
    # server sizes), a good deal lighter on every request than anyio's

    async def read(self, fn: Callable[[Context], T]) -> T:
        def run() -> T:
            with self.runtime.reading(self.shop) as ctx:
                return fn(ctx)

        return await to_thread(run)

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking work (an event, a write) in the thread pool."""
        return await to_thread(fn, *args, **kwargs)

    async def integrator_write(self, fn: Callable[..., T], *, allow: StaffPermission | None = None,
                               audit: StaffWrite | None = None, one_event: bool = False, **kwargs: Any) -> T:
        """An integrator's write: needs the secret key (or a staff role granting `allow`, the write then
        recorded in the audit log as `audit` says), then `fn(runtime, shop, key_id, **kwargs)` off the loop,
        or on it where `fn` is one event (`one_event`: see `_one_event`)."""
        key_id = self.require_integrator(allow).key_id
        run = self._one_event if one_event else to_thread
        return await run(fn, self.audited(audit), self.shop, key_id, **kwargs)

    async def _one_event(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn`, one ``run_event`` (a single short transaction, only pure work before it), where it costs
        least. On SQLite it runs right here on the event loop: the hop to a thread costs an order more than its
        SQL, as the GIL changes hands at every sqlite3 call (bench/README.md). It never blocks the loop: while
        another writer holds or awaits the lock (a thread of this process, or another process) it waits its
        turn by polling, as SQLite's busy handler would but letting the loop serve meanwhile, up to the same
        busy timeout. On PostgreSQL it runs in a thread."""
        db = self.runtime.db
        busy_seconds = _busy_seconds.get(db.engine)
        if busy_seconds is None:
            return await to_thread(fn, *args, **kwargs)
        deadline = time.monotonic() + busy_seconds
        while time.monotonic() < deadline:
            if not db.writing:
                hurry = NOW_OR_NEVER.set(True)
                try:
                    return fn(*args, **kwargs)
                except sqlite3.OperationalError as exc:  # raised by BEGIN, before anything was written
                    if "locked" not in str(exc):
                        raise
                finally:
                    NOW_OR_NEVER.reset(hurry)
            await asyncio.sleep(WRITER_POLL)
        return await to_thread(fn, *args, **kwargs)  # still busy: as long again, then SQLite says it is locked

    def audited(self, write: StaffWrite | None) -> Runtime:
        """The runtime a write runs on: for a staff key, one whose transaction also writes the audit row."""
        if self.principal.role != "staff":
            return self.runtime
        if write is None:  # a write that does not say what the audit log keeps is not open to staff
            raise AccessError("this operation needs the shop's secret key (staff keys may not run it)")
        if not self.principal.may("operate"):  # whatever the resolver asked for: staff writes are operators'
            raise AccessError("this operation needs the shop's secret key or a staff key with the role operator "
                              f"(this staff key's role is {self.principal.staff_role})")
        return AuditedRuntime(self.runtime, self.principal, write)  # type: ignore[return-value]

    async def event(self, kind: str, key: str | None, payload: dict[str, Any],
                    handler: Callable[[Context], Any], *, idempotency_key: str | None = None,
                    audit: StaffWrite | None = None) -> Any:
        """A plugin's own idempotent event (``run_event``), recorded under the caller's key.

        `idempotency_key`, the caller's own, is checked (1 to 120 characters) and scoped by `key` (e.g. the
        member: two members' equal keys are different events). A staff key's event is recorded in the audit
        log as `audit` says."""
        if idempotency_key is not None:
            try:
                own = require_key(idempotency_key, "idempotencyKey", MAX_IDEMPOTENCY_KEY)
            except Refused as refusal:
                return EventResult.refused(refusal)
            key = f"{key}:{own}" if key else own
        return await to_thread(run_event, self.audited(audit), self.shop, kind, key, payload, handler,
                               self.principal.key_id)
