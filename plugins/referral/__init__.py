"""referral: invite friends (RULES.md section 3), all of it settings per shop.

Every member gets a random code at sign-up (members who joined before the shop enabled referral get one
from the idempotent ``assign_codes`` job; ``Member.referral`` is null until then, since reads never write).
A friend who signs up with a code gets a coupon and so does the referrer, at sign-up or when the friend's
first order is paid (``reward_on``); every ``bonus_every``-th friend earns the referrer a bonus coupon; a
fully refunded first order takes back the referral coupons still unused. Self-referral, a chain back to
the referrer, one person signing up twice, unknown codes and the monthly cap give no reward, and a
NO_REWARD effect says why; the sign-up itself always stands. Coupons go through core's wallet; nothing
here imports another plugin. See ``rewards.py`` for the rules and the concurrency argument.
"""

from __future__ import annotations

from datetime import timedelta

from memberkit.plugin import (
    Context,
    Effect,
    ImportedMember,
    Job,
    MemberInfo,
    PaidOrder,
    Plugin,
    Refund,
    SignUp,
    export_tables,
    hookimpl,
)
from memberkit.plugins.referral import graphql, models, rewards
from memberkit.plugins.referral.settings import NAME, ReferralSettings

plugin = Plugin(NAME, settings=ReferralSettings, graphql=graphql.contribute,
                tables=(models.ReferralCode, models.ReferralFriend, models.ReferralMonth),
                jobs=(Job("assign_codes", timedelta(hours=1), rewards.assign_missing_codes),),
                event_types=("referral.rewarded",))


@hookimpl
def member_signup(ctx: Context, member: MemberInfo, signup: SignUp) -> list[Effect]:
    return rewards.on_signup(ctx, member, signup)


@hookimpl
def members_imported(ctx: Context, members: list[ImportedMember]) -> None:
    rewards.assign_imported_codes(ctx, [member.id for member in members])


@hookimpl
def order_paid(ctx: Context, order: PaidOrder) -> list[Effect]:
    return rewards.on_order_paid(ctx, order)


@hookimpl
def order_refunded(ctx: Context, refund: Refund) -> list[Effect]:
    return rewards.on_order_refunded(ctx, refund)


@hookimpl
def member_erased(ctx: Context, member_id: str) -> None:
    rewards.forget(ctx, member_id)


@hookimpl
def member_data(ctx: Context, member_id: str) -> dict:
    """The member's code and counters, who invited them, and the friends they invited (member ids only)."""
    held = export_tables(ctx, plugin.tables, member_id)
    held["invited"] = export_tables(ctx, [models.ReferralFriend], member_id, "referrer_id")["referral_friend"]
    held["invited_by"] = export_tables(ctx, [models.ReferralFriend], member_id, "friend_id")["referral_friend"]
    return held
