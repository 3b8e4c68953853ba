"""perks' part of the schema: Member.perks, what the member's perks are today (the coupons themselves are
in core's Member.coupons)."""

from datetime import date
from typing import Optional

import strawberry

from memberkit.plugins.perks import rules


@strawberry.type(description="The member's perks today, in the shop's calendar.")
class Perks:
    first_order_discount: bool = strawberry.field(description="the next paid order is the first: its discount applies")
    birthday_month: bool = strawberry.field(description="this is the member's birthday month")
    birthday_percent: int = strawberry.field(description="percent off this birthday month; 0 outside it")
    birthday_coupon_year: Optional[int] = strawberry.field(description="the last year a birthday coupon was given")
    member_day: bool = strawberry.field(description="today is member day")
    next_member_day: Optional[date] = strawberry.field(description="today if it is member day, else the next")
    monthly_coupon_month: Optional[str] = strawberry.field(
        description="the last month (YYYY-MM) a monthly tier coupon was given")


def perks_of(ctx, member_id: str) -> Optional[Perks]:
    found = rules.view(ctx, member_id)
    return Perks(**found.__dict__) if found else None


async def perks(root, info: strawberry.Info) -> Optional[Perks]:
    return await info.context.read(lambda ctx: perks_of(ctx, str(root.id)))


def contribute(builder) -> None:
    builder.member_field("perks", perks, description="The member's perks today (first order, birthday, "
                                                     "member day, monthly coupon).")
