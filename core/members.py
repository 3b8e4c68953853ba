"""The member events: signing up and changing a member's data. Personal data is kept only in
``core_member_personal``, phone and email as keyed hashes, so erasing a member is deleting one row."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from memberkit.core.checks import check_birthday, check_tags, email_hash, phone_hash, require_key, require_moment
from memberkit.core.context import Context
from memberkit.core.db import Prepared
from memberkit.core.hashing import keyed_hashes
from memberkit.core.intake import EventResult, Unchanged, collect, run_event
from memberkit.core.models import Member, MemberPersonal
from memberkit.core.runtime import Runtime
from memberkit.core.settings import Shop
from memberkit.core.types import MemberChanges, MemberInfo, Refused, SignUp

MEMBERS = Member.__table__
_MEMBER = Prepared(select(MEMBERS.c.id, MEMBERS.c.external_id, MEMBERS.c.joined_at, MEMBERS.c.tags, MEMBERS.c.erased_at)
                   .where(MEMBERS.c.id == bindparam("p_id"), MEMBERS.c.shop == bindparam("p_shop")))


def load_member(conn: Connection, shop: str, member_id: str) -> MemberInfo:
    """The member of `shop`, or ``Refused("MEMBER_NOT_FOUND")`` (``MEMBER_ERASED``: nothing more is done for them)."""
    row = _MEMBER.first(conn, {"p_id": member_id, "p_shop": shop})
    if row is None:
        raise Refused("MEMBER_NOT_FOUND", f"no member {member_id!r} in this shop", "memberId")
    if row.erased_at is not None:
        raise Refused("MEMBER_ERASED", f"member {member_id!r} was erased: expected a member who was not", "memberId")
    return MemberInfo(row.id, shop, row.external_id, row.joined_at, tuple(row.tags))


def sign_up_member(runtime: Runtime, shop: Shop, api_key_id: str | None, *, external_id: str,
                   phone: str | None = None, email: str | None = None, birthday: date | None = None,
                   referral_code: str | None = None, tags: list[str] | None = None,
                   joined_at: datetime | None = None,
                   seen_before: Callable[[Context, str | None, str | None], bool] | None = None) -> EventResult:
    """Sign a member up; `seen_before(ctx, phone, email)` says whether an erased member had that phone or
    email (then plugins give no sign-up rewards)."""
    payload = {"external_id": external_id, "phone": phone, "email": email, "birthday": birthday,
               "referral_code": referral_code, "tags": tags, "joined_at": joined_at}
    checked: dict[str, Any] = {}

    def validate(ctx: Context) -> None:
        checked["external_id"] = require_key(external_id, "externalId")
        require_moment(joined_at, "joinedAt", ctx.now)
        check_birthday(birthday, ctx.shop.local(ctx.now).date())
        checked["tags"] = check_tags(tags) or ()
        checked["signup"] = SignUp(
            referral_code.strip() if referral_code else None, phone_hash(phone), email_hash(email), birthday,
            keyed_hashes(phone, "phone") if phone else (), keyed_hashes(email, "email") if email else (),
            seen_before is not None and seen_before(ctx, phone, email))

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
        ctx.emit("member.signed_up", member.id, joinedAt=member.joined_at, tags=list(member.tags),
                 referred=bool(signup.referral_code))
        return EventResult(member.id, collect(ctx.hook.member_signup(ctx=ctx, member=member, signup=signup)))

    try:
        return run_event(runtime, shop, "member_signup", external_id.strip(), payload, handle, api_key_id, validate,
                         "externalId")
    except IntegrityError:  # a member without a sign-up event (imported) holds the externalId: the same member
        with runtime.db.read() as conn:
            found = conn.execute(select(MEMBERS.c.id).where(MEMBERS.c.shop == shop.slug,
                                                            MEMBERS.c.external_id == external_id.strip())).scalar()
        if found is None:
            raise
        return EventResult(found, duplicate=True)


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
            # unchanged whichever key made the stored hash (a rotation is not a change)
            new_phone if new_phone and stored.phone_hash not in keyed_hashes(phone, "phone") else None,
            new_email if new_email and stored.email_hash not in keyed_hashes(email, "email") else None,
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
        effects = collect(ctx.hook.member_updated(ctx=ctx, member=member, changes=changes))
        values = {column: value for column, value in (
            ("phone_hash", changes.phone_hash), ("email_hash", changes.email_hash), ("birthday", changes.birthday),
            # recording a first birthday is not a change
            ("birthday_changed_at", ctx.now if changes.birthday and changes.previous_birthday else None)) if value}
        if values:
            ctx.conn.execute(update(MemberPersonal).where(MemberPersonal.member_id == member.id).values(**values))
        if changes.tags is not None:
            ctx.conn.execute(update(Member).where(Member.id == member.id).values(tags=list(changes.tags)))
        fields = (("phone", changes.phone_hash), ("email", changes.email_hash), ("birthday", changes.birthday),
                  ("tags", changes.tags))
        changed = [name for name, value in fields if value is not None]
        ctx.emit("member.updated", member.id, changed=changed,
                 **({"tags": list(changes.tags)} if changes.tags is not None else {}))
        return EventResult(member.id, effects)

    return run_event(runtime, shop, "member_updated", None, payload, handle, api_key_id, validate)
