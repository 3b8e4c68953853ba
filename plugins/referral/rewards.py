"""Codes, rewards and abuse checks of the referral programme (RULES.md section 3).

Everything runs inside the event's transaction (``ctx.conn``) with SQLAlchemy Core statements.

Concurrency. Every write about a referrer takes the referrer's ``referral_code`` row first (a sign-up
reads it ``FOR UPDATE`` to resolve the code; a first order or a refund locks it before paying or taking
back), then the month's counter row: one lock order, so no two events deadlock, and the counters change
with ``UPDATE ... SET n = n + 1``. The monthly cap is ``UPDATE referral_month SET rewarded = rewarded + 1
WHERE rewarded < cap``: whatever the concurrency, exactly ``cap`` updates succeed in a month. A friend is
one row keyed by the friend's member id, and a first-order reward moves it from PENDING with a conditional
UPDATE, so two orders recorded at once pay it once.

Abuse. The friend's keyed phone and email hashes (never plain values) are compared with those stored for
other members of the shop in ``core_member_personal``:
  * SELF_REFERRAL: they match the code's owner, or anyone up the chain that invited the owner (A invited
    B; A signs up again with B's code: the chain comes back to A, who would reward themselves);
  * SAME_CONTACT: they match another member (one person signing up a second time, "a code used twice by
    one person");
  * CONTACT_REQUIRED: the friend gave neither (nothing to check against; a setting);
  * REFERRAL_CODE_UNKNOWN: no such code in this shop (codes are per shop);
  * MONTHLY_CAP_REACHED: the referrer was paid ``monthly_cap`` rewards this calendar month.
A refusal never loses the sign-up: the member is created and a NO_REWARD effect says why.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError

from memberkit.plugin import (
    Context,
    Effect,
    EffectKind,
    MemberInfo,
    MemberPersonalRow,
    MemberRow,
    PaidOrder,
    Refund,
    SignUp,
    insert_rows,
    new_code,
    upsert,
)
from memberkit.plugins.referral.models import ReferralCode, ReferralFriend, ReferralMonth
from memberkit.plugins.referral.settings import NAME, ReferralSettings, settings_of

CODES, FRIENDS, MONTHS = ReferralCode.__table__, ReferralFriend.__table__, ReferralMonth.__table__
PERSONAL, MEMBERS = MemberPersonalRow.__table__, MemberRow.__table__
CODE_ATTEMPTS = 8  # a collision among 32^8 codes is rare; eight in a row is not going to happen
CHAIN_DEPTH = 20  # how far up "who invited the referrer" the self-referral check looks
JOB_BATCH = 500
CODE_COLUMN = 16  # referral_code.code: the longest code a shop can have (code_length <= 16)
WITHDRAW_RULE = "referral.withdraw_on_full_refund"

# PENDING: waits for the friend's first order; REWARDED; REFUSED (reason); WITHDRAWN (first order refunded).
PENDING, REWARDED, REFUSED, WITHDRAWN = "PENDING", "REWARDED", "REFUSED", "WITHDRAWN"

# Prebuilt statements (compiled once per dialect).
_INSERT_CODE, _INSERT_MONTH = upsert(CODES), upsert(MONTHS)
_OWNER_OF_CODE = (select(CODES.c.member_id)
                  .where(CODES.c.shop == bindparam("p_shop"), CODES.c.code == bindparam("p_code"))
                  .with_for_update())
_LOCK_REFERRER = (select(CODES.c.member_id).where(CODES.c.member_id == bindparam("p_referrer"))
                  .with_for_update())
_TAKE_MONTH = (update(MONTHS)
               .where(MONTHS.c.referrer_id == bindparam("p_referrer"), MONTHS.c.month == bindparam("p_month"),
                      MONTHS.c.rewarded < bindparam("p_cap"))
               .values(rewarded=MONTHS.c.rewarded + 1))
_COUNT_REWARD = (update(CODES).where(CODES.c.member_id == bindparam("p_referrer"))
                 .values(rewarded=CODES.c.rewarded + 1).returning(CODES.c.rewarded, CODES.c.bonuses))
_START_FIRST_ORDER = (update(FRIENDS)
                      .where(FRIENDS.c.friend_id == bindparam("p_friend"), FRIENDS.c.shop == bindparam("p_shop"),
                             FRIENDS.c.status == PENDING)
                      .values(status=REWARDED, order_id=bindparam("p_order"), rewarded_at=bindparam("p_now"))
                      .returning(FRIENDS.c.referrer_id))
_INVITER = select(FRIENDS.c.referrer_id).where(FRIENDS.c.friend_id == bindparam("p_friend"))


def normalise(code: str) -> str:
    """What a member typed or a link carried: case, spaces and dashes do not matter."""
    return "".join(c for c in code.upper() if not c.isspace() and c != "-")


def no_reward(code: str, description: str, rule: str) -> Effect:
    return Effect(NAME, EffectKind.NO_REWARD, description, code=code, rule=f"referral.{rule}")


# ---------------------------------------------------------------- codes


def assign_code(ctx: Context, member_id: str, s: ReferralSettings) -> str | None:
    """Give the member a random code unless they have one; None if they already had one."""
    statement = _INSERT_CODE.on(ctx.conn)
    for _ in range(CODE_ATTEMPTS):
        code = new_code(s.code_length)
        inserted = ctx.conn.execute(statement, {
            "member_id": member_id, "shop": ctx.shop.slug, "code": code, "invited": 0, "rewarded": 0,
            "bonuses": 0, "created_at": ctx.now}).rowcount
        if inserted:
            return code
        if ctx.conn.execute(select(CODES.c.code).where(CODES.c.member_id == member_id)).first():
            return None  # assigned already (the job and a sign-up never race: a new member is not visible)
    raise RuntimeError(f"no free referral code after {CODE_ATTEMPTS} attempts: raise code_length")


def assign_imported_codes(ctx: Context, member_ids: list[str]) -> None:
    """Imported members get their own codes in one multi-row write (where a drawn code is taken, the batch's
    codes are drawn one by one instead); an import is no sign-up with a friend's code, so it rewards no one."""
    s = settings_of(ctx)
    try:
        with ctx.conn.begin_nested():
            insert_rows(ctx.conn, CODES, [
                {"member_id": member_id, "shop": ctx.shop.slug, "code": new_code(s.code_length), "invited": 0,
                 "rewarded": 0, "bonuses": 0, "created_at": ctx.now} for member_id in member_ids])
    except IntegrityError:  # a code drawn twice or already held: this batch's codes one by one instead
        for member_id in member_ids:
            assign_code(ctx, member_id, s)


def assign_missing_codes(ctx: Context) -> str:
    """The job: members who joined before the shop enabled referral get a code (erased members none: erasure
    took theirs). Idempotent."""
    s = settings_of(ctx)
    assigned = 0
    while True:
        missing = ctx.conn.execute(
            select(MEMBERS.c.id)
            .where(MEMBERS.c.shop == ctx.shop.slug, MEMBERS.c.erased_at.is_(None),
                   ~select(CODES.c.member_id).where(CODES.c.member_id == MEMBERS.c.id).exists())
            .order_by(MEMBERS.c.id).limit(JOB_BATCH)).scalars().all()
        for member_id in missing:
            assigned += assign_code(ctx, member_id, s) is not None
        if len(missing) < JOB_BATCH:
            return f"{assigned} referral code(s) assigned" if assigned else None


def summary(ctx: Context, member_id: str) -> Any | None:
    """The member's code and counters, or None until a code is assigned (reads never write)."""
    return ctx.conn.execute(
        select(CODES.c.code, CODES.c.invited, CODES.c.rewarded, CODES.c.bonuses)
        .where(CODES.c.member_id == member_id, CODES.c.shop == ctx.shop.slug)).first()


# ---------------------------------------------------------------- sign-up


def on_signup(ctx: Context, member: MemberInfo, signup: SignUp) -> list[Effect]:
    s = settings_of(ctx)
    assign_code(ctx, member.id, s)
    if not signup.referral_code:
        return []
    code = normalise(signup.referral_code)
    referrer = None
    if 0 < len(code) <= CODE_COLUMN:
        referrer = ctx.conn.execute(_OWNER_OF_CODE, {"p_shop": ctx.shop.slug, "p_code": code}).scalar()
    if referrer is None:
        shown = code if len(code) <= CODE_COLUMN else code[:CODE_COLUMN] + "..."
        return [no_reward("REFERRAL_CODE_UNKNOWN", f"no reward: no referral code {shown!r} in this shop",
                          "code")]
    ctx.conn.execute(update(CODES).where(CODES.c.member_id == referrer).values(invited=CODES.c.invited + 1))
    refusal = abuse(ctx, s, member.id, referrer, signup)
    at_signup = refusal is None and s.reward_on == "signup"
    ctx.conn.execute(FRIENDS.insert(), {
        "friend_id": member.id, "shop": ctx.shop.slug, "referrer_id": referrer, "code": code,
        "status": REFUSED if refusal else REWARDED if at_signup else PENDING,
        "reason": refusal.code if refusal else None, "created_at": ctx.now,
        "rewarded_at": ctx.now if at_signup else None})
    if refusal:
        return [refusal]
    if not at_signup:
        return [Effect(NAME, "REFERRAL_PENDING",
                       f"referred by code {code}: rewards when this member's first order is paid",
                       rule="referral.reward_on")]
    return pay(ctx, s, member.id, referrer)


def abuse(ctx: Context, s: ReferralSettings, friend: str, referrer: str, signup: SignUp) -> Effect | None:
    """Why the friend gets no reward, compared on keyed hashes only; None: nothing against it."""
    if signup.seen_before:
        return no_reward("SEEN_BEFORE", "no reward: the friend's phone or email is that of an erased member "
                         "(signing up again after erasure earns no second reward)", "seen_before")
    phones = signup.phone_hashes or ((signup.phone_hash,) if signup.phone_hash else ())
    emails = signup.email_hashes or ((signup.email_hash,) if signup.email_hash else ())
    hashes = [PERSONAL.c.phone_hash.in_(phones)] if phones else []
    hashes += [PERSONAL.c.email_hash.in_(emails)] if emails else []
    if not hashes:
        if s.require_contact:
            return no_reward("CONTACT_REQUIRED", "no reward: the friend gave neither phone nor email",
                             "require_contact")
        return None
    same = (select(PERSONAL.c.member_id)
            .where(PERSONAL.c.shop == ctx.shop.slug, PERSONAL.c.member_id != friend, or_(*hashes)))
    chain = inviters(ctx, referrer)
    if ctx.conn.execute(same.where(PERSONAL.c.member_id == referrer).limit(1)).first():
        return no_reward("SELF_REFERRAL", "no reward: the friend's phone or email is the referrer's own",
                         "self_referral")
    if chain and ctx.conn.execute(same.where(PERSONAL.c.member_id.in_(chain)).limit(1)).first():
        return no_reward("SELF_REFERRAL", "no reward: the friend's phone or email is that of a member who "
                         "invited the referrer (a chain back to the referrer)", "self_referral")
    if ctx.conn.execute(same.limit(1)).first():
        return no_reward("SAME_CONTACT", "no reward: the friend's phone or email belongs to another member "
                         "(one person signing up twice)", "same_contact")
    return None


def inviters(ctx: Context, member_id: str) -> list[str]:
    """Who invited the member, who invited them, ... (at most CHAIN_DEPTH, stops at a loop)."""
    found: list[str] = []
    current = member_id
    for _ in range(CHAIN_DEPTH):
        current = ctx.conn.execute(_INVITER, {"p_friend": current}).scalar()
        if current is None or current == member_id or current in found:
            break
        found.append(current)
    return found


# ---------------------------------------------------------------- rewards


def pay(ctx: Context, s: ReferralSettings, friend: str, referrer: str) -> list[Effect]:
    """Reward a friend whose row is already REWARDED: the cap first, then the coupons and the bonus."""
    ctx.conn.execute(_LOCK_REFERRER, {"p_referrer": referrer})  # the lock order: code row, then month row
    if s.monthly_cap:
        month = ctx.shop.local(ctx.now).strftime("%Y-%m")
        ctx.conn.execute(_INSERT_MONTH.on(ctx.conn),
                         {"referrer_id": referrer, "month": month, "shop": ctx.shop.slug, "rewarded": 0})
        taken = ctx.conn.execute(_TAKE_MONTH, {"p_referrer": referrer, "p_month": month,
                                               "p_cap": s.monthly_cap}).rowcount
        if not taken:
            ctx.conn.execute(update(FRIENDS).where(FRIENDS.c.friend_id == friend)
                             .values(status=REFUSED, reason="MONTHLY_CAP_REACHED", rewarded_at=None))
            return [no_reward("MONTHLY_CAP_REACHED", f"no reward: the referrer already earned {s.monthly_cap} "
                              f"referral rewards in {month}", "monthly_cap")]
    effects: list[Effect] = []
    ids: dict[str, str | None] = {}
    if s.friend_coupon:
        ids["friend_coupon_id"] = issue(ctx, friend, s.friend_coupon, "friend_coupon", "this member", effects)
    if s.referrer_coupon:
        ids["referrer_coupon_id"] = issue(ctx, referrer, s.referrer_coupon, "referrer_coupon",
                                          f"the referrer {referrer}", effects)
    rewarded, bonuses = ctx.conn.execute(_COUNT_REWARD, {"p_referrer": referrer}).one()
    if s.bonus_every and rewarded // s.bonus_every > bonuses:
        ctx.conn.execute(update(CODES).where(CODES.c.member_id == referrer).values(bonuses=CODES.c.bonuses + 1))
        ids["bonus_coupon_id"] = issue(ctx, referrer, s.bonus_coupon, "bonus_every",
                                       f"the referrer {referrer} for friend number {rewarded}", effects)
    ctx.conn.execute(update(FRIENDS).where(FRIENDS.c.friend_id == friend).values(**ids))
    ctx.emit("referral.rewarded", referrer, friendId=friend, friendNumber=rewarded, rule=f"referral.{s.reward_on}",
             friendCouponId=ids.get("friend_coupon_id"), referrerCouponId=ids.get("referrer_coupon_id"),
             bonusCouponId=ids.get("bonus_coupon_id"))
    return effects


def issue(ctx: Context, member_id: str, template: str, rule: str, whom: str, effects: list[Effect]) -> str | None:
    """Issue a coupon through core's wallet; a template the shop lacks is a CONFLICT, never a lost event."""
    if template not in ctx.shop.coupons:
        effects.append(Effect(NAME, EffectKind.CONFLICT, f"coupon template {template} is not among the shop's "
                              "coupons: nothing issued", code="COUPON_TEMPLATE_UNKNOWN", rule=f"referral.{rule}"))
        return None
    coupon = ctx.wallet.issue(member_id, template, source=f"{NAME}:{rule}")
    shown = f" ({coupon.code})" if whom == "this member" else ""
    effects.append(Effect(NAME, EffectKind.COUPON_ISSUED, f"coupon {coupon.title}{shown} issued to {whom}",
                          rule=f"referral.{rule}"))
    return coupon.id


def on_order_paid(ctx: Context, order: PaidOrder) -> list[Effect]:
    """The friend's first paid order pays a PENDING referral: one conditional UPDATE, so only one order can."""
    if order.number != 1:
        return []
    referrer = ctx.conn.execute(_START_FIRST_ORDER, {"p_friend": order.member_id, "p_shop": ctx.shop.slug,
                                                     "p_order": order.order_id, "p_now": ctx.now}).scalar()
    if referrer is None:
        return []
    return pay(ctx, settings_of(ctx), order.member_id, referrer)


def on_order_refunded(ctx: Context, refund: Refund) -> list[Effect]:
    """A fully refunded first order takes back the referral coupons it paid that are still unused."""
    s = settings_of(ctx)
    if not (refund.is_full and s.withdraw_on_full_refund):
        return []
    row = ctx.conn.execute(
        update(FRIENDS)
        .where(FRIENDS.c.friend_id == refund.order.member_id, FRIENDS.c.shop == ctx.shop.slug,
               FRIENDS.c.order_id == refund.order.order_id, FRIENDS.c.status == REWARDED)
        .values(status=WITHDRAWN, withdrawn_at=ctx.now)
        .returning(FRIENDS.c.referrer_id, FRIENDS.c.friend_coupon_id, FRIENDS.c.referrer_coupon_id,
                   FRIENDS.c.bonus_coupon_id)).first()
    if row is None:
        return []
    ctx.conn.execute(_LOCK_REFERRER, {"p_referrer": row.referrer_id})
    reason = f"referral: order {refund.order.order_id} fully refunded"
    effects: list[Effect] = []
    bonus_back = False
    for coupon_id, rule, whom in ((row.friend_coupon_id, "friend_coupon", "this member"),
                                  (row.referrer_coupon_id, "referrer_coupon", "the referrer"),
                                  (row.bonus_coupon_id, "bonus_every", "the referrer")):
        if coupon_id is None:
            continue
        if ctx.wallet.withdraw(coupon_id, reason):
            bonus_back |= rule == "bonus_every"
            effects.append(Effect(NAME, "COUPON_WITHDRAWN", f"{rule.replace('_', ' ')} coupon of {whom} "
                                  "withdrawn: the first order was fully refunded", rule=WITHDRAW_RULE))
        else:
            effects.append(Effect(NAME, EffectKind.CONFLICT, f"{rule.replace('_', ' ')} coupon of {whom} was "
                                  "already used (or is held by a checkout): not withdrawn",
                                  code="REFERRAL_COUPON_ALREADY_USED", rule=WITHDRAW_RULE))
    # The friend no longer counts; a bonus that came back no longer counts either, so the next friend to
    # complete a group earns it again, while a bonus already used stays counted and is never paid twice.
    ctx.conn.execute(update(CODES).where(CODES.c.member_id == row.referrer_id).values(
        rewarded=CODES.c.rewarded - 1, bonuses=CODES.c.bonuses - (1 if bonus_back else 0)))
    return effects


def forget(ctx: Context, member_id: str) -> None:
    """``member_erased``: the member's code goes (it no longer finds them, so nobody earns them a reward);
    the friend rows stay as the record of coupons paid, by member id only."""
    ctx.conn.execute(CODES.delete().where(CODES.c.member_id == member_id))
