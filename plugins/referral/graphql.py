"""referral's part of the schema: Member.referral (ReferralSummary of the contract, plus a share link and
the bonuses that stand)."""

from typing import Optional

import strawberry

from memberkit.plugin import Context
from memberkit.plugins.referral import rewards
from memberkit.plugins.referral.settings import settings_of


@strawberry.type(description="The member's referral code and what it brought: friends who signed up with it "
                             "(invited) and friends whose reward stands (rewarded).")
class ReferralSummary:
    code: str
    invited: int
    rewarded: int
    bonuses: int = strawberry.field(description="bonus coupons earned (every Nth rewarded friend) that stand")
    share_link: Optional[str] = strawberry.field(description="the code in the shop's share URL; null if the "
                                                             "shop has none")


def summary_of(ctx: Context, member_id: str) -> ReferralSummary | None:
    row = rewards.summary(ctx, member_id)
    if row is None:
        return None
    return ReferralSummary(code=row.code, invited=row.invited, rewarded=row.rewarded, bonuses=row.bonuses,
                           share_link=settings_of(ctx).share_link(row.code))


async def referral(root, info: strawberry.Info) -> Optional[ReferralSummary]:
    return await info.context.read(lambda ctx: summary_of(ctx, str(root.id)))


def contribute(builder) -> None:
    builder.member_field("referral", referral,
                         description="The member's referral code and counts; null until the member has a code "
                                     "(members who joined before the shop enabled referral get one from a job).")
