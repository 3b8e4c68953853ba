"""Points in the schema: Member.points, the rewards catalogue, redeeming, check-in, actions, adjustments."""

from datetime import datetime
from typing import Optional

import strawberry

from memberkit.plugin import (
    Coupon,
    Effect,
    EventResult,
    PageInfo,
    Refused,
    RequestContext,
    StaffWrite,
    UserError,
    VisibleError,
    acting_member_field,
    clock,
    coupon_view,
    event_mutation,
    id_after,
    id_cursor,
    load_member,
    load_member_view,
)
from memberkit.plugins.points import ledger
from memberkit.plugins.points.settings import NAME, settings_of

MAX_PAGE = 100


@strawberry.type
class PointsExpiry:
    points: int
    expires_at: datetime


@strawberry.type
class PointsEntry:
    id: strawberry.ID
    delta: int
    reason: str
    rule: str
    order_id: Optional[str]
    note: Optional[str]
    created_at: datetime


@strawberry.type
class PointsEntryEdge:
    node: PointsEntry
    cursor: str


@strawberry.type
class PointsEntryConnection:
    edges: list[PointsEntryEdge]
    page_info: PageInfo


@strawberry.type(description="A member's points: spendable balance, pending, what expires next, and every entry.")
class PointsAccount:
    member_id: strawberry.Private[str]
    balance: int
    pending: int
    lifetime_earned: int
    held: int = strawberry.field(description="Points an open checkout holds: out of the balance until paid or "
                                             "released.")

    @strawberry.field(description="The next dates on which points expire, with how many.")
    async def expiring(self, info: strawberry.Info) -> list[PointsExpiry]:
        rows = await info.context.read(lambda ctx: ledger.expiring(ctx, self.member_id))
        return [PointsExpiry(points=points, expires_at=moment) for points, moment in rows]

    @strawberry.field(description="Ledger entries, newest first.")
    async def history(self, info: strawberry.Info, first: Optional[int] = 20,
                      after: Optional[str] = None) -> PointsEntryConnection:
        size = 20 if first is None else first
        if not 0 <= size <= MAX_PAGE:
            raise VisibleError(f"history: first must be from 0 to {MAX_PAGE}")
        before_id = id_after("entry", after, "history")
        rows = await info.context.read(lambda ctx: ledger.history(ctx, self.member_id, size, before_id))
        edges = [PointsEntryEdge(cursor=id_cursor("entry", row.id), node=PointsEntry(
            id=strawberry.ID(str(row.id)), delta=row.delta, reason=row.reason, rule=row.rule,
            order_id=row.order_id, note=row.note, created_at=row.created_at)) for row in rows[:size]]
        return PointsEntryConnection(edges=edges, page_info=PageInfo(
            has_next_page=len(rows) > size, end_cursor=edges[-1].cursor if edges else None))


async def points(root, info: strawberry.Info) -> Optional[PointsAccount]:
    view = await info.context.read(lambda ctx: ledger.account_view(ctx, root.id))
    return PointsAccount(member_id=root.id, balance=view.balance, pending=view.pending,
                         lifetime_earned=view.lifetime_earned, held=view.held)


@strawberry.type
class Reward:
    id: strawberry.ID
    title: str
    cost_points: int


@strawberry.input
class RedeemRewardInput:
    reward_id: strawberry.ID
    idempotency_key: str
    member_id: Optional[strawberry.ID] = acting_member_field()


@strawberry.input
class MemberActionInput:
    member_id: strawberry.ID
    action: str
    idempotency_key: str


@strawberry.input
class AdjustPointsInput:
    member_id: strawberry.ID
    delta: int
    reason: str
    idempotency_key: str


def _rewards(Member):
    def resolve(info: strawberry.Info) -> list[Reward]:
        """The shop's rewards catalogue: what points buy."""
        settings = info.context.shop.settings_for(NAME)
        return [Reward(id=strawberry.ID(r.id), title=r.title, cost_points=r.cost_points) for r in settings.rewards]
    return resolve


def _redeem_reward(Member):
    @strawberry.type
    class RedeemRewardPayload:
        coupon: Optional[Coupon]
        points_spent: int
        member: Optional[Member]
        duplicate: bool
        errors: list[UserError]

    async def resolve(info: strawberry.Info, input: RedeemRewardInput) -> RedeemRewardPayload:
        """Exchange points for a reward's coupon, for the member (a member token's, or memberId with the
        secret key)."""
        context: RequestContext = info.context
        member_id = context.acting_member(input.member_id)

        def handle(ctx) -> EventResult:
            load_member(ctx.conn, ctx.shop.slug, member_id)
            reward = settings_of(ctx).reward(input.reward_id)
            if reward is None:
                raise Refused("REWARD_NOT_FOUND", f"no reward {input.reward_id!r} in this shop", "rewardId")
            if reward.coupon_template not in ctx.shop.coupons:
                raise Refused("REWARD_UNAVAILABLE", f"reward {reward.id!r} cannot be issued now", "rewardId")
            ledger.spend(ctx, member_id, reward.cost_points, "SPEND", f"reward:{reward.id}",
                         note=f"key {input.idempotency_key}")
            coupon = ctx.wallet.issue(member_id, reward.coupon_template, source=f"points:reward:{reward.id}")
            effects = [Effect(NAME, "POINTS_SPENT", f"points -{reward.cost_points} ({reward.title})",
                              rule=f"reward:{reward.id}"), ctx.wallet.issued_effect(NAME, coupon)]
            return EventResult(member_id, effects, data={"coupon_id": coupon.id, "points_spent": reward.cost_points})

        result = await context.event("points.redeem_reward", member_id, {"reward_id": input.reward_id}, handle,
                                     idempotency_key=input.idempotency_key)
        coupon = None
        if result.data.get("coupon_id"):
            coupon = await context.read(lambda ctx: coupon_view(ctx.wallet.coupon(result.data["coupon_id"]), ctx))
        member = await _member(info, Member, result.member_id)
        return RedeemRewardPayload(coupon=coupon, points_spent=result.data.get("points_spent", 0), member=member,
                                   duplicate=result.duplicate, errors=[UserError.of(e) for e in result.errors])
    return resolve


async def _member(info, Member, member_id):
    return await load_member_view(info, Member, member_id) if member_id else None


async def check_in(info: strawberry.Info) -> EventResult:
    """Daily check-in for the signed-in member: points once per day in the shop's timezone."""
    context: RequestContext = info.context
    member_id = context.require_member()

    def handle(ctx) -> EventResult:
        load_member(ctx.conn, ctx.shop.slug, member_id)
        return EventResult(member_id, ledger.reward_action(ctx, member_id, "check_in"))

    day = context.shop.local(clock.now()).date().isoformat()
    return await context.event("points.check_in", f"{member_id}:{day}", {}, handle)


async def record_member_action(info: strawberry.Info, input: MemberActionInput) -> EventResult:
    """An action that earns points (a review, a share), reported by the integrator; capped per day."""
    context: RequestContext = info.context
    context.require_integrator()

    def handle(ctx) -> EventResult:
        load_member(ctx.conn, ctx.shop.slug, input.member_id)
        return EventResult(input.member_id, ledger.reward_action(ctx, input.member_id, input.action))

    return await context.event("points.action", None, {"member_id": input.member_id, "action": input.action},
                               handle, idempotency_key=input.idempotency_key)


async def adjust_points(info: strawberry.Info, input: AdjustPointsInput) -> EventResult:
    """Change a balance by hand with a reason; the entry records which key did it (the secret key, or a staff
    key with the operator role: then kept in the audit log too)."""
    context: RequestContext = info.context
    key = context.require_integrator(allow="operate").key_id

    def handle(ctx) -> EventResult:
        load_member(ctx.conn, ctx.shop.slug, input.member_id)
        reason = input.reason.strip()
        if not reason or len(reason) > 200:
            raise Refused("INVALID_REASON", f"reason is {len(reason)} characters: expected 1 to 200", "reason")
        if input.delta == 0:
            raise Refused("INVALID_AMOUNT", "delta is 0: expected points to add or take", "delta")
        if input.delta > 0:
            locked = ledger.lock(ctx, input.member_id)
            ledger.require_room(locked, input.delta)
            ledger.earn(ctx, input.member_id, input.delta, "ADJUST", "manual", locked, actor=key, note=reason)
        elif settings_of(ctx).allow_negative_balance:
            ledger.take_back(ctx, input.member_id, -input.delta, "ADJUST", "manual", None, key, reason)
        else:
            ledger.spend(ctx, input.member_id, -input.delta, "ADJUST", "manual", actor=key, note=reason)
        sign = "+" if input.delta > 0 else ""
        return EventResult(input.member_id, [Effect(NAME, "POINTS_ADJUSTED", f"points {sign}{input.delta} ({reason})",
                                                    rule="manual")])

    payload = {"member_id": input.member_id, "delta": input.delta, "reason": input.reason}
    return await context.event("points.adjust", None, payload, handle, idempotency_key=input.idempotency_key,
                               audit=StaffWrite("adjustPoints", {**payload, "idempotency_key": input.idempotency_key}))


def contribute(builder) -> None:
    builder.member_field("points", points, description="The member's points; null where the shop has none.")
    builder.query_field("rewards", _rewards)
    builder.mutation_field("redeem_reward", _redeem_reward)
    builder.mutation_field("check_in", event_mutation("CheckInPayload", check_in))
    builder.mutation_field("record_member_action", event_mutation("MemberActionPayload", record_member_action))
    builder.mutation_field("adjust_points", event_mutation("AdjustPointsPayload", adjust_points))
