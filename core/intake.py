"""Event intake: record an event once under its idempotency key and run it in one transaction.

Every write of memberkit, core's and plugins', goes through :func:`run_event`: validate, insert the event
row (the unique constraint on shop, kind and key decides whether it is new, never a prior read), run the
handler (the plugins' hooks), store its result, run ``ctx.last``, commit once. A repeat returns the stored
result; a refusal writes nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, select

from memberkit.core.context import Context
from memberkit.core.db import Prepared, upsert
from memberkit.core.hashing import keyed_hash, keyed_hashes
from memberkit.core.models import Event
from memberkit.core.runtime import Runtime
from memberkit.core.settings import Shop
from memberkit.core.types import Effect, Refused

MAX_KEY_LENGTH = 200  # core_event.key: a caller's key plus its scope, e.g. "member:key"


@dataclass(frozen=True)
class UserErrorData:
    code: str
    message: str
    field: str | None = None


@dataclass
class EventResult:
    """What a write returns: the member it concerns, what each plugin did, or why it was refused."""

    member_id: str | None = None
    effects: list[Effect] = field(default_factory=list)
    errors: list[UserErrorData] = field(default_factory=list)
    duplicate: bool = False
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def refused(cls, refusal: Refused) -> EventResult:
        return cls(errors=[UserErrorData(refusal.code, refusal.message, refusal.field)])

    def stored(self) -> dict[str, Any]:
        return {"member_id": self.member_id, "effects": [asdict(e) for e in self.effects], "data": self.data}

    @classmethod
    def from_stored(cls, stored: dict[str, Any]) -> EventResult:
        return cls(stored["member_id"], [Effect(**e) for e in stored["effects"]], [], True, stored.get("data", {}))


class Unchanged(Exception):
    """Raised by a `validate` that finds the event would change nothing: answered without writing."""

    def __init__(self, member_id: str | None):
        self.member_id = member_id


EVENTS = Event.__table__
_INSERT_EVENT = Prepared(upsert(EVENTS, on=["shop", "kind", "key"], returning=(EVENTS.c.id,)))
_STORED_EVENT = Prepared(select(EVENTS.c.payload_hash, EVENTS.c.result).where(
    EVENTS.c.shop == bindparam("p_shop"), EVENTS.c.kind == bindparam("p_kind"), EVENTS.c.key == bindparam("p_key")))
_FINISH_EVENT = Prepared(EVENTS.update().where(EVENTS.c.id == bindparam("p_id")).values(
    result=bindparam("p_result"), member_id=bindparam("p_member_id")))


def _canonical(value: Any) -> Any:
    """What a payload means, not how it was spelt: trimmed text, instants in UTC."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).isoformat()
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def collect(plugin_results: list[list[Any] | None]) -> list[Any]:
    """The answers of a collect-all hook, one list (plugins that answered None or nothing left out)."""
    return [item for items in plugin_results if items for item in items]


def run_event(runtime: Runtime, shop: Shop, kind: str, key: str | None, payload: dict[str, Any],
              handler: Callable[[Context], EventResult], api_key_id: str | None = None,
              validate: Callable[[Context], None] | None = None, key_field: str = "idempotencyKey") -> EventResult:
    """Run `handler` once per (shop, kind, key) in one transaction with the event row.

    A repeat with the same payload returns the stored result marked duplicate and runs nothing; the same
    key with another payload is refused with IDEMPOTENCY_CONFLICT. `validate` runs first and may refuse
    before anything is written. `key=None` records the event under a fresh key (not retry-safe).
    `key_field` is the input field the key came from, named in the refusals about it.
    """
    if key is not None and len(key) > MAX_KEY_LENGTH:
        return EventResult.refused(Refused("INVALID_KEY", f"{key_field} is {len(key)} characters: expected at "
                                           f"most {MAX_KEY_LENGTH}", key_field))
    canonical = _canonical({"kind": kind, **payload})
    digest = keyed_hash(canonical)
    try:
        with runtime.db.write() as conn:
            ctx = runtime.context(shop, conn, api_key_id=api_key_id)
            if validate:
                validate(ctx)
            event_id = _INSERT_EVENT.scalar(conn, {
                "shop": shop.slug, "kind": kind, "key": key or "auto:" + secrets.token_hex(12),
                "payload_hash": digest, "api_key_id": api_key_id, "settings_version": shop.version,
                "created_at": ctx.now,
            })
            if event_id is None:
                stored = _STORED_EVENT.first(conn, {"p_shop": shop.slug, "p_kind": kind, "p_key": key})
                if stored.payload_hash != digest and stored.payload_hash not in keyed_hashes(canonical):
                    raise Refused("IDEMPOTENCY_CONFLICT",
                                  f"{kind} {key!r} was already received with a different payload", key_field)
                return EventResult.from_stored(stored.result)
            ctx.event_id, ctx.cause = event_id, {"kind": kind, "key": key, "eventId": event_id}
            result = handler(ctx)
            _FINISH_EVENT.cursor(conn, {"p_id": event_id, "p_result": result.stored(),
                                        "p_member_id": result.member_id})
            ctx.flush_outbound()  # before `last`: the hot rows stay locked for one statement
            for write in ctx.last:
                write()
            return result
    except Refused as refusal:
        return EventResult.refused(refusal)
    except Unchanged as unchanged:
        return EventResult(unchanged.member_id)
