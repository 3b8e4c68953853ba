"""Event intake: validate, record once under the idempotency key, run the shop's plugins, commit once."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

from memberkit.core import auth
from memberkit.core.context import Context
from memberkit.core.db import Prepared
from memberkit.core.models import Event, Member, MemberPersonal, Order
from memberkit.core.runtime import Runtime
from memberkit.core.settings import Shop
from memberkit.core.types import (
    Effect,
    EffectKind,
    MemberChanges,
    MemberInfo,
    OrderLine,
    PaidOrder,
    Redemption,
    RedemptionRefused,
    Refund,
    Refused,
    SignUp,
)
from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

log = logging.getLogger("memberkit.events")

MAX_KEY_LENGTH = 200
MAX_TAGS, MAX_TAG_LENGTH = 50, 64


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
        return {"member_id": self.member_id, "effects": [e.as_dict() for e in self.effects], "data": self.data}

    @classmethod
    def from_stored(cls, stored: dict[str, Any]) -> EventResult:
        return cls(stored["member_id"], [Effect(**e) for e in stored["effects"]], [], True, stored.get("data", {}))


# Hot-path statements on the tables themselves, compiled once per dialect and run at driver level.
EVENTS, MEMBERS, ORDERS = Event.__table__, Member.__table__, Order.__table__
_INSERT_EVENT = Prepared({
    name: dialect.insert(EVENTS).on_conflict_do_nothing(index_elements=["shop", "kind", "key"]).returning(EVENTS.c.id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
})
_STORED_EVENT = Prepared(select(EVENTS.c.payload_hash, EVENTS.c.result).where(
    EVENTS.c.shop == bindparam("p_shop"), EVENTS.c.kind == bindparam("p_kind"), EVENTS.c.key == bindparam("p_key")))
_FINISH_EVENT = Prepared(EVENTS.update().where(EVENTS.c.id == bindparam("p_id")).values(
    result=bindparam("p_result"), member_id=bindparam("p_member_id")))
_MEMBER = Prepared(select(MEMBERS.c.id, MEMBERS.c.external_id, MEMBERS.c.joined_at, MEMBERS.c.tags).where(
    MEMBERS.c.id == bindparam("p_id"), MEMBERS.c.shop == bindparam("p_shop")))
# Counting the order also checks the member is this shop's and locks the member's row until commit.
_COUNT_ORDER = Prepared(MEMBERS.update().where(MEMBERS.c.id == bindparam("p_id"), MEMBERS.c.shop == bindparam("p_shop"))
                        .values(paid_orders=MEMBERS.c.paid_orders + 1).returning(MEMBERS.c.paid_orders))
_INSERT_ORDER = Prepared(ORDERS.insert())


def _insert_ignoring_conflict(conn: Connection, values: dict[str, Any]) -> int | None:
    """INSERT the event row unless its key exists; the unique constraint decides, not a prior read."""
    return _INSERT_EVENT.scalar(conn, values)


class Unchanged(Exception):
    """Raised by a `validate` that finds the event would change nothing: answered without writing."""

    def __init__(self, member_id: str | None):
        self.member_id = member_id


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


def run_event(runtime: Runtime, shop: Shop, kind: str, key: str | None, payload: dict[str, Any],
              handler: Callable[[Context], EventResult], api_key_id: str | None = None,
              validate: Callable[[Context], None] | None = None) -> EventResult:
    """Run `handler` once per (shop, kind, key) in one transaction with the event row.

    A repeat with the same payload returns the stored result marked duplicate and runs nothing; the same
    key with another payload is refused with IDEMPOTENCY_CONFLICT. `validate` runs first and may refuse
    before anything is written. `key=None` records the event under a fresh key (not retry-safe).
    """
    if key is not None and len(key) > MAX_KEY_LENGTH:  # a caller's key plus its scope, e.g. "member:key"
        return EventResult.refused(Refused("INVALID_KEY", f"the key must be at most {MAX_KEY_LENGTH} characters",
                                           "idempotencyKey"))
    digest = auth.payload_hash(_canonical({"kind": kind, **payload}))
    try:
        with runtime.db.write() as conn:
            ctx = runtime.context(shop, conn, api_key_id=api_key_id)
            if validate:
                validate(ctx)
            event_id = _insert_ignoring_conflict(conn, {
                "shop": shop.slug, "kind": kind, "key": key or "auto:" + secrets.token_hex(12),
                "payload_hash": digest, "api_key_id": api_key_id, "settings_version": shop.version,
                "created_at": ctx.now,
            })
            if event_id is None:
                stored = _STORED_EVENT.first(conn, {"p_shop": shop.slug, "p_kind": kind, "p_key": key})
                if stored.payload_hash != digest:
                    raise Refused("IDEMPOTENCY_CONFLICT",
                                  f"{kind} {key!r} was already received with a different payload", "key")
                return EventResult.from_stored(stored.result)
            ctx.event_id = event_id
            result = handler(ctx)
            _FINISH_EVENT.cursor(conn, {"p_id": event_id, "p_result": result.stored(),
                                        "p_member_id": result.member_id})
            for write in ctx.last:
                write()
            return result
    except Refused as refusal:
        return EventResult.refused(refusal)
    except Unchanged as unchanged:
        return EventResult(unchanged.member_id)


# ---------------------------------------------------------------- input checks


def require_aware(moment: datetime | None, field_name: str) -> None:
    if moment is not None and moment.tzinfo is None:
        raise Refused("TIMESTAMP_WITHOUT_OFFSET",
                      f"{field_name} must carry a UTC offset, e.g. 2026-11-23T20:00:00+08:00", field_name)


def require_key(value: str, field_name: str, longest: int = MAX_KEY_LENGTH) -> str:
    value = value.strip()
    if not value or len(value) > longest:
        raise Refused("INVALID_KEY", f"{field_name} must be 1 to {longest} characters", field_name)
    return value


def check_tags(tags: list[str] | None) -> tuple[str, ...] | None:
    if tags is None:
        return None
    cleaned = tuple(dict.fromkeys(t.strip() for t in tags if t.strip()))
    if len(cleaned) > MAX_TAGS or any(len(t) > MAX_TAG_LENGTH for t in cleaned):
        raise Refused("INVALID_TAGS", f"at most {MAX_TAGS} tags of at most {MAX_TAG_LENGTH} characters", "tags")
    return cleaned


def phone_hash(phone: str | None) -> str | None:
    if phone is None:
        return None
    digits = sum(c.isdigit() for c in phone)
    if not 5 <= digits <= 20 or any(not (c.isdigit() or c in "+- ()") for c in phone):
        raise Refused("INVALID_PHONE", "phone must be 5 to 20 digits, optionally with + - ( ) and spaces", "phone")
    return auth.keyed_hash(phone, "phone")


def email_hash(email: str | None) -> str | None:
    if email is None:
        return None
    local, _, domain = email.strip().partition("@")
    if not local or "." not in domain or len(email) > 254:
        raise Refused("INVALID_EMAIL", "email must look like name@example.com", "email")
    return auth.keyed_hash(email, "email")


def check_birthday(birthday: date | None, today: date) -> None:
    if birthday is not None and not (date(1900, 1, 1) <= birthday <= today):
        raise Refused("INVALID_BIRTHDAY", "birthday must be a past date after 1900-01-01", "birthday")


def load_member(conn: Connection, shop: str, member_id: str) -> MemberInfo:
    row = _MEMBER.first(conn, {"p_id": member_id, "p_shop": shop})
    if row is None:
        raise Refused("MEMBER_NOT_FOUND", f"no member {member_id!r} in this shop", "memberId")
    return MemberInfo(row.id, shop, row.external_id, row.joined_at, tuple(row.tags))


def _collect(plugin_results: list[list[Effect] | None]) -> list[Effect]:
    return [effect for effects in plugin_results if effects for effect in effects]


# ---------------------------------------------------------------- the core events


def sign_up_member(runtime: Runtime, shop: Shop, api_key_id: str | None, *, external_id: str,
                   phone: str | None = None, email: str | None = None, birthday: date | None = None,
                   referral_code: str | None = None, tags: list[str] | None = None,
                   joined_at: datetime | None = None) -> EventResult:
    payload = {"external_id": external_id, "phone": phone, "email": email, "birthday": birthday,
               "referral_code": referral_code, "tags": tags, "joined_at": joined_at}
    checked: dict[str, Any] = {}

    def validate(ctx: Context) -> None:
        checked["external_id"] = require_key(external_id, "externalId")
        require_aware(joined_at, "joinedAt")
        check_birthday(birthday, ctx.shop.local(ctx.now).date())
        checked["tags"] = check_tags(tags) or ()
        checked["signup"] = SignUp(referral_code.strip() if referral_code else None,
                                   phone_hash(phone), email_hash(email), birthday)

    def handle(ctx: Context) -> EventResult:
        member = MemberInfo("mem_" + secrets.token_hex(12), shop.slug, checked["external_id"],
                            joined_at or ctx.now, checked["tags"])
        signup: SignUp = checked["signup"]
        ctx.conn.execute(insert(Member).values(
            id=member.id, shop=shop.slug, external_id=member.external_id, joined_at=member.joined_at,
            tags=list(member.tags), created_at=ctx.now))
        ctx.conn.execute(insert(MemberPersonal).values(
            member_id=member.id, shop=shop.slug, phone_hash=signup.phone_hash, email_hash=signup.email_hash,
            birthday=signup.birthday))
        effects = _collect(ctx.hook.member_signup(ctx=ctx, member=member, signup=signup))
        return EventResult(member.id, effects)

    return run_event(runtime, shop, "member_signup", external_id.strip(), payload, handle, api_key_id, validate)


def update_member(runtime: Runtime, shop: Shop, api_key_id: str | None, *, member_id: str,
                  phone: str | None = None, email: str | None = None, birthday: date | None = None,
                  tags: list[str] | None = None) -> EventResult:
    """Change a member's data; plugins hear only what differs, and a repeat that changes nothing writes nothing."""
    payload = {"member_id": member_id, "phone": phone, "email": email, "birthday": birthday, "tags": tags}
    checked: dict[str, Any] = {}

    def validate(ctx: Context) -> None:
        member = load_member(ctx.conn, shop.slug, member_id)
        check_birthday(birthday, shop.local(ctx.now).date())
        new_tags, new_phone, new_email = check_tags(tags), phone_hash(phone), email_hash(email)
        stored = ctx.conn.execute(select(MemberPersonal.phone_hash, MemberPersonal.email_hash, MemberPersonal.birthday)
                                  .where(MemberPersonal.member_id == member.id)).one()
        changes = MemberChanges(
            new_phone if new_phone and new_phone != stored.phone_hash else None,
            new_email if new_email and new_email != stored.email_hash else None,
            birthday if birthday and birthday != stored.birthday else None,
            stored.birthday,
            new_tags if new_tags is not None and new_tags != member.tags else None)
        if changes == MemberChanges(previous_birthday=stored.birthday):
            raise Unchanged(member.id)
        checked["member"], checked["changes"] = member, changes

    def handle(ctx: Context) -> EventResult:
        member, changes = checked["member"], checked["changes"]
        # Plugins hear of the change before it is written, so they can still read what was stored (e.g.
        # when a birthday was last changed) and veto it.
        effects = _collect(ctx.hook.member_updated(ctx=ctx, member=member, changes=changes))
        values: dict[str, Any] = {}
        if changes.phone_hash:
            values["phone_hash"] = changes.phone_hash
        if changes.email_hash:
            values["email_hash"] = changes.email_hash
        if changes.birthday:
            values["birthday"] = changes.birthday
            if changes.previous_birthday is not None:  # recording a first birthday is not a change
                values["birthday_changed_at"] = ctx.now
        if values:
            ctx.conn.execute(update(MemberPersonal).where(MemberPersonal.member_id == member.id).values(**values))
        if changes.tags is not None:
            ctx.conn.execute(update(Member).where(Member.id == member.id).values(tags=list(changes.tags)))
        return EventResult(member.id, effects)

    return run_event(runtime, shop, "member_updated", None, payload, handle, api_key_id, validate)


def _order_lines(lines: list[dict[str, Any]] | None) -> tuple[OrderLine, ...]:
    result = []
    for index, line in enumerate(lines or []):
        where = f"lines[{index}]"
        if not line["sku"].strip():
            raise Refused("INVALID_LINE", f"{where}.sku must not be empty", f"{where}.sku")
        if line["quantity"] <= 0:
            raise Refused("INVALID_LINE", f"{where}.quantity must be at least 1", f"{where}.quantity")
        if line["unit_price"] < 0:
            raise Refused("NEGATIVE_AMOUNT", f"{where}.unitPrice must not be negative", f"{where}.unitPrice")
        result.append(OrderLine(line["sku"].strip(), line["quantity"], line["unit_price"], line.get("category")))
    return tuple(result)


def record_order_paid(runtime: Runtime, shop: Shop, api_key_id: str | None, *, order_id: str, member_id: str,
                      total: int, lines: list[dict[str, Any]] | None = None,
                      coupon_codes: list[str] | None = None, points_redeemed: int | None = None,
                      reservation_ids: list[str] | None = None, checkout_id: str | None = None,
                      paid_at: datetime | None = None) -> EventResult:
    from memberkit.core.wallet import normalise_code

    payload = {"order_id": order_id, "member_id": member_id, "total": total, "lines": lines,
               "coupon_codes": coupon_codes, "points_redeemed": points_redeemed,
               "reservation_ids": reservation_ids, "checkout_id": checkout_id, "paid_at": paid_at}
    checked: dict[str, Any] = {}

    def validate(ctx: Context) -> None:
        checked["order_id"] = require_key(order_id, "orderId")
        require_aware(paid_at, "paidAt")
        if total < 0:
            raise Refused("NEGATIVE_AMOUNT", "total must not be negative", "total")
        if (points_redeemed or 0) < 0:
            raise Refused("NEGATIVE_AMOUNT", "pointsRedeemed must not be negative", "pointsRedeemed")
        order_lines = _order_lines(lines)
        if order_lines and total > sum(line.amount for line in order_lines):
            raise Refused("TOTAL_EXCEEDS_LINES", "total is more than the sum of its lines at list price", "total")
        codes = [normalise_code(c) for c in coupon_codes or []]
        if len(set(codes)) != len(codes) or not all(codes):
            raise Refused("INVALID_COUPON_CODES", "couponCodes must be distinct and not empty", "couponCodes")
        checked["order"] = PaidOrder(
            checked["order_id"], member_id, total, shop.currency, paid_at or ctx.now, order_lines, tuple(codes),
            points_redeemed or 0, tuple(reservation_ids or ()), checkout_id)

    def handle(ctx: Context) -> EventResult:
        number = _COUNT_ORDER.scalar(ctx.conn, {"p_id": member_id, "p_shop": shop.slug})
        if number is None:
            raise Refused("MEMBER_NOT_FOUND", f"no member {member_id!r} in this shop", "memberId")
        order: PaidOrder = replace(checked["order"], number=number)
        effects: list[Effect] = []
        held_points = 0
        if order.checkout_id:
            # The checkout decides what the order uses: completed, its holds turn into use (order.checkout_id
            # stays set for plugins to capture theirs); expired, released or unknown, a CONFLICT says so and
            # what is still free is taken below as for an order without a checkout (checkout_id cleared).
            from memberkit.core.checkout import checkout_for_order

            order, effects, held_points = checkout_for_order(ctx, order)
        _INSERT_ORDER.cursor(ctx.conn, dict(
            shop=shop.slug, order_id=order.order_id, member_id=order.member_id, currency=order.currency,
            total=order.total, refunded=0, paid_at=order.paid_at,
            detail={"lines": [line.__dict__ for line in order.lines], "coupon_codes": list(order.coupon_codes),
                    "points_redeemed": order.points_redeemed, "reservation_ids": list(order.reservation_ids),
                    "checkout_id": order.checkout_id, "number": order.number,
                    **({"checkout_sent": checkout_id} if checkout_id else {})}))
        spend = sum(line.amount for line in order.lines) if order.lines else order.total
        effects += ctx.wallet.use(order.member_id, order.coupon_codes, order.order_id, spend, order.checkout_id)
        if order.points_redeemed > held_points:  # held points are captured by their plugin in order_paid
            effects += redeem_for_order(ctx, order, order.points_redeemed - held_points)
        effects += _collect(ctx.hook.order_paid(ctx=ctx, order=order))
        return EventResult(order.member_id, effects)

    return run_event(runtime, shop, "order_paid", order_id.strip(), payload, handle, api_key_id, validate)


def redeem_for_order(ctx: Context, order: PaidOrder, points: int | None = None) -> list[Effect]:
    """Points as cash: the plugin that owns points spends them; what it cannot spend is a CONFLICT."""
    points = order.points_redeemed if points is None else points
    order = replace(order, points_redeemed=points)
    redemption = Redemption("points", points, "order", order.order_id)
    try:
        with ctx.conn.begin_nested():  # a refusal undoes what the plugin wrote, and only that
            result = ctx.hook.redemption(ctx=ctx, member_id=order.member_id, redemption=redemption)
    except RedemptionRefused as refusal:
        return [Effect("core", EffectKind.CONFLICT, f"{order.points_redeemed} points not taken: {refusal.message}",
                       code=refusal.code, rule="points_as_cash")]
    if result is None:
        return [Effect("core", EffectKind.CONFLICT,
                       f"{order.points_redeemed} points not taken: this shop has no points plugin",
                       code="REDEMPTION_UNSUPPORTED", rule="points_as_cash")]
    return list(result.effects)


def stored_order(conn: Connection, shop: str, order_id: str) -> tuple[int, PaidOrder, int]:
    row = conn.execute(select(Order).where(Order.shop == shop, Order.order_id == order_id)).first()
    if row is None:
        raise Refused("ORDER_NOT_FOUND", f"no paid order {order_id!r} in this shop", "orderId")
    detail = row.detail
    order = PaidOrder(row.order_id, row.member_id, row.total, row.currency, row.paid_at,
                      tuple(OrderLine(**line) for line in detail.get("lines", [])),
                      tuple(detail.get("coupon_codes", [])), detail.get("points_redeemed", 0),
                      tuple(detail.get("reservation_ids", [])), detail.get("checkout_id"), detail.get("number", 0))
    return row.id, order, row.refunded


def record_order_refunded(runtime: Runtime, shop: Shop, api_key_id: str | None, *, order_id: str,
                          refund_id: str, amount: int, refunded_at: datetime | None = None) -> EventResult:
    payload = {"order_id": order_id, "refund_id": refund_id, "amount": amount, "refunded_at": refunded_at}
    checked: dict[str, Any] = {}

    def validate(ctx: Context) -> None:
        require_key(refund_id, "refundId")
        require_key(order_id, "orderId")
        require_aware(refunded_at, "refundedAt")
        if amount <= 0:
            raise Refused("INVALID_AMOUNT", "amount must be more than zero", "amount")
        checked["row_id"], checked["order"], _ = stored_order(ctx.conn, shop.slug, order_id.strip())

    def handle(ctx: Context) -> EventResult:
        order: PaidOrder = checked["order"]
        # One conditional UPDATE: two refunds racing can never refund more than was paid.
        refunded = ctx.conn.execute(
            update(Order).where(Order.id == checked["row_id"], Order.refunded + amount <= Order.total)
            .values(refunded=Order.refunded + amount).returning(Order.refunded)).scalar()
        if refunded is None:
            raise Refused("REFUND_EXCEEDS_ORDER", "amount is more than what is left to refund of the order", "amount")
        refund = Refund(refund_id.strip(), order, amount, refunded, refunded_at or ctx.now)
        effects = _collect(ctx.hook.order_refunded(ctx=ctx, refund=refund))
        return EventResult(order.member_id, effects)

    return run_event(runtime, shop, "order_refunded", refund_id.strip(), payload, handle, api_key_id, validate)
