"""``tagMembers``: the integrator adds and removes tags on up to 1,000 members in one idempotent call.

Tags are core's (``Member.tags``, the integrator's own); each member whose tags change is told to plugins
through ``member_updated`` and to the platform as ``member.updated``, as ``updateMember`` does.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select, update

from memberkit.plugin import (
    MAX_IDEMPOTENCY_KEY,
    MAX_TAGS,
    Context,
    EventResult,
    MemberChanges,
    MemberInfo,
    MemberRow,
    Refused,
    Runtime,
    Shop,
    check_tags,
    collect,
    require_key,
    run_event,
)

MEMBERS = MemberRow.__table__
MAX_MEMBERS = 1000
_SET_TAGS = update(MEMBERS).where(MEMBERS.c.id == bindparam("p_id")).values(tags=bindparam("p_tags"))


def _changes(ctx: Context, member_ids: list[str], add: tuple[str, ...], remove: tuple[str, ...]) -> list:
    ids = list(dict.fromkeys(member_id.strip() for member_id in member_ids))
    rows = {row.id: row for row in ctx.conn.execute(
        select(MEMBERS.c.id, MEMBERS.c.external_id, MEMBERS.c.joined_at, MEMBERS.c.tags, MEMBERS.c.erased_at)
        .where(MEMBERS.c.shop == ctx.shop.slug, MEMBERS.c.id.in_(ids)))}
    missing = [member_id for member_id in ids if member_id not in rows]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise Refused("MEMBER_NOT_FOUND", f"memberIds: no member {missing[0]!r} in this shop{more}", "memberIds")
    erased = [member_id for member_id in ids if rows[member_id].erased_at is not None]
    if erased:
        raise Refused("MEMBER_ERASED", f"memberIds: member {erased[0]!r} was erased: expected members who were "
                      "not", "memberIds")
    changes = []
    for member_id in ids:
        row = rows[member_id]
        tags = tuple(dict.fromkeys([*(t for t in row.tags if t not in remove), *add]))
        if len(tags) > MAX_TAGS:
            raise Refused("INVALID_TAGS", f"member {member_id!r} would have {len(tags)} tags: at most {MAX_TAGS}",
                          "add")
        if tags != tuple(row.tags):
            changes.append((MemberInfo(row.id, ctx.shop.slug, row.external_id, row.joined_at, tuple(row.tags)), tags))
    return changes


def tag_members(runtime: Runtime, shop: Shop, api_key_id: str | None, *, member_ids: list[str],
                add: list[str] | None, remove: list[str] | None, idempotency_key: str) -> EventResult:
    payload = {"member_ids": member_ids, "add": add, "remove": remove}
    checked: dict[str, Any] = {}
    try:
        key = "tag_members:" + require_key(idempotency_key, "idempotencyKey", MAX_IDEMPOTENCY_KEY)
    except Refused as refusal:
        return EventResult.refused(refusal)

    def validate(ctx: Context) -> None:
        if not member_ids or len(member_ids) > MAX_MEMBERS:
            raise Refused("TOO_MANY_ITEMS" if member_ids else "NOTHING_TO_CHANGE",
                          f"memberIds has {len(member_ids)} ids: expected 1 to {MAX_MEMBERS} (split larger calls)",
                          "memberIds")
        adding, removing = check_tags(add) or (), check_tags(remove) or ()
        if not adding and not removing:
            raise Refused("NOTHING_TO_CHANGE", "add and remove are both empty: expected tags in one of them", "add")
        if both := sorted(set(adding) & set(removing)):
            raise Refused("TAG_CONFLICT", f"{both[0]!r} is both added and removed: expected it in one list", "remove")
        checked["changes"] = _changes(ctx, member_ids, adding, removing)

    def handle(ctx: Context) -> EventResult:
        changes = checked["changes"]
        effects = []
        for member, tags in changes:
            effects += collect(ctx.hook.member_updated(ctx=ctx, member=member, changes=MemberChanges(tags=tags)))
        if changes:
            ctx.conn.execute(_SET_TAGS, [{"p_id": member.id, "p_tags": list(tags)} for member, tags in changes])
        for member, tags in changes:
            ctx.emit("member.updated", member.id, changed=["tags"], tags=list(tags))
        return EventResult(None, effects, data={"changed": len(changes)})

    return run_event(runtime, shop, "tag_members", key, payload, handle, api_key_id, validate)
