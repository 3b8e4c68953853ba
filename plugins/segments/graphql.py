"""segments' part of the schema: Member.lifecycle, lifecycleHistory, rfm and segments; the shop's segments,
the member search and the integrator's tagMembers."""

from datetime import datetime
from functools import cache
from typing import Any, Optional

import strawberry

from memberkit.plugin import (
    Context,
    PageInfo,
    RequestContext,
    UserError,
    VisibleError,
    id_after,
    id_cursor,
    limited_list,
)
from memberkit.plugins.segments import campaigns, lifecycle, rfm, rules, tags
from memberkit.plugins.segments.settings import settings_of

MAX_HISTORY = 100

LifecycleStage = strawberry.enum(lifecycle.Stage, name="LifecycleStage",
                                 description="NEW until a first paid order; then by days since the last one.")
LifecycleReason = strawberry.enum(lifecycle.Reason, name="LifecycleReason",
                                  description="What moved a member: an order, a refund or time passing.")


@strawberry.type(description="The member's lifecycle stage, since when, and the last paid order it counts from.")
class Lifecycle:
    stage: LifecycleStage
    since: datetime
    last_order_at: Optional[datetime]


@strawberry.type(description="One change of the member's lifecycle stage and why.")
class LifecycleChange:
    from_stage: Optional[LifecycleStage]
    to_stage: LifecycleStage
    reason: LifecycleReason
    reference: Optional[str]
    created_at: datetime


async def member_lifecycle(root, info: strawberry.Info) -> Optional[Lifecycle]:
    row = await info.context.read(lambda ctx: lifecycle.lifecycle_of(ctx, str(root.id)))
    if row is None:
        return None
    return Lifecycle(stage=lifecycle.Stage(row.stage), since=row.since, last_order_at=row.last_order_at)


async def member_lifecycle_history(root, info: strawberry.Info, first: Optional[int] = 20) -> list[LifecycleChange]:
    """The member's lifecycle changes, newest first (at most 100)."""
    count = max(0, min(first if first is not None else 20, MAX_HISTORY))
    rows = await info.context.read(lambda ctx: lifecycle.history_of(ctx, str(root.id), count))
    return [LifecycleChange(from_stage=lifecycle.Stage(r.from_stage) if r.from_stage else None,
                            to_stage=lifecycle.Stage(r.to_stage), reason=lifecycle.Reason(r.reason),
                            reference=r.reference, created_at=r.created_at) for r in rows]


@strawberry.type(description="RFM scores, 1 (worst) to 5 (best), by the shop's quintile cut-offs at computedAt: "
                             "equal values always get equal scores.")
class RfmScore:
    recency: int
    frequency: int
    monetary: int
    band: Optional[str] = strawberry.field(description="the first of the shop's named bands that matches")
    computed_at: datetime


@strawberry.type(description="What one score stood for in the last run: its lowest and highest value.")
class RfmCutoff:
    score: int
    min: int
    max: int
    members: int


@strawberry.type(description="The shop's last RFM run: recency in days since the last order, frequency in "
                             "orders, monetary in minor units, each score's range of values.")
class RfmRun:
    computed_at: datetime
    window_days: int
    members: int
    recency: list[RfmCutoff]
    frequency: list[RfmCutoff]
    monetary: list[RfmCutoff]


async def member_rfm(root, info: strawberry.Info) -> Optional[RfmScore]:
    row = await info.context.read(lambda ctx: rfm.score_of(ctx, str(root.id)))
    if row is None:
        return None
    return RfmScore(recency=row.recency, frequency=row.frequency, monetary=row.monetary, band=row.band,
                    computed_at=row.computed_at)


def rfm_run(Member):
    async def resolve(info: strawberry.Info) -> Optional[RfmRun]:
        """The shop's last RFM run and its cut-offs, so a score can be explained (integrator)."""
        context: RequestContext = info.context
        context.require_integrator(allow="read")
        row = await context.read(rfm.last_run)
        if row is None:
            return None
        cutoffs = {name: [RfmCutoff(**c) for c in row.cutoffs.get(name, [])] for name in rfm.DIMENSIONS}
        return RfmRun(computed_at=row.computed_at, window_days=row.window_days, members=row.members, **cutoffs)
    return resolve


@strawberry.input(description="Tags to add to and remove from many members at once.")
class TagMembersInput:
    member_ids: list[strawberry.ID] = limited_list(tags.MAX_MEMBERS, required=True)
    add: Optional[list[str]] = limited_list(50, "Tags every member gets.")
    remove: Optional[list[str]] = limited_list(50, "Tags no member keeps.")
    idempotency_key: str


@strawberry.type
class TagMembersPayload:
    duplicate: bool
    changed: int = strawberry.field(description="members whose tags changed (a member who had them all: none)")
    errors: list[UserError]


def tag_members(Member):
    async def resolve(info: strawberry.Info, input: TagMembersInput) -> TagMembersPayload:
        """Add and remove tags on up to 1,000 members in one call; retried with the same idempotencyKey it
        changes nothing more (integrator)."""
        context: RequestContext = info.context
        result = await context.integrator_write(tags.tag_members, member_ids=[str(i) for i in input.member_ids],
                                                add=input.add, remove=input.remove,
                                                idempotency_key=input.idempotency_key)
        return TagMembersPayload(duplicate=result.duplicate, changed=result.data.get("changed", 0),
                                 errors=[UserError.of(e) for e in result.errors])
    return resolve


@strawberry.type(description="A named segment of the shop's settings, and how many members are in it now.")
class Segment:
    code: str
    name: str = strawberry.field(description="shown to people, e.g. 运动鞋爱好者")
    member_count: int


async def member_segments(root, info: strawberry.Info) -> list[str]:
    return await info.context.read(lambda ctx: rules.segments_of(ctx, str(root.id)))


def segments(Member):
    async def resolve(info: strawberry.Info) -> list[Segment]:
        """The shop's segments in the settings' order, with their members counted (integrator)."""
        context: RequestContext = info.context
        context.require_integrator(allow="read")

        def read(ctx: Context) -> list[Segment]:
            counts = rules.counts(ctx)
            return [Segment(code=rule.code, name=rule.name, member_count=counts.get(rule.code, 0))
                    for rule in settings_of(ctx).segments]
        return await context.read(read)
    return resolve


MAX_MEMBERS_PAGE = 200


@strawberry.input(description="Members who meet every condition given (none: every member).")
class MemberFilter:
    tier: Optional[str] = strawberry.field(default=None, description="a tier code, e.g. GOLD")
    tags_all: Optional[list[str]] = limited_list(50, "Every one of these tags.")
    tags_any: Optional[list[str]] = limited_list(50, "At least one of these tags.")
    lifecycle: Optional[LifecycleStage] = None
    segment: Optional[str] = strawberry.field(default=None, description="a segment code, e.g. sneaker_fans")
    rfm_band: Optional[str] = strawberry.field(default=None, description="an RFM band, e.g. AT_RISK")
    joined_from: Optional[datetime] = strawberry.field(default=None, description="joined at or after")
    joined_to: Optional[datetime] = strawberry.field(default=None, description="joined before")


def _where(ctx: Context, given: MemberFilter | None) -> Any:
    """The filter in SQL; a name the shop does not define is an error that says which are."""
    if given is None:
        return rules.condition(ctx)
    settings = settings_of(ctx)
    known = {
        "tier": [t.code for t in ctx.hook.tier_catalog(ctx=ctx) or []],
        "segment": [s.code for s in settings.segments],
        "rfmBand": [b.code for b in settings.rfm_bands],
    }
    for field, value in (("tier", given.tier), ("segment", given.segment), ("rfmBand", given.rfm_band)):
        if value is not None and value not in known[field]:
            raise VisibleError(f"members: filter.{field} {value!r} is not one of this shop's "
                               f"({', '.join(known[field]) or 'none defined'})")
    for field, moment in (("joinedFrom", given.joined_from), ("joinedTo", given.joined_to)):
        if moment is not None and moment.tzinfo is None:
            raise VisibleError(f"members: filter.{field} has no UTC offset: expected e.g. 2026-11-23T20:00:00+08:00")
    return rules.condition(
        ctx, tiers=[given.tier] if given.tier else None, tags_all=given.tags_all, tags_any=given.tags_any,
        lifecycle=[given.lifecycle.value] if given.lifecycle else None, segment=given.segment,
        rfm_bands=[given.rfm_band] if given.rfm_band else None, joined_from=given.joined_from,
        joined_to=given.joined_to)


@cache
def member_connection(Member):
    """The connection types for this schema's composed Member."""

    @strawberry.type(name="MemberEdge")
    class MemberEdge:
        node: Member
        cursor: str

    @strawberry.type(name="MemberConnection", description="A page of members, ordered by id.")
    class MemberConnection:
        edges: list[MemberEdge]
        page_info: PageInfo
        count: strawberry.Private[Any]

        @strawberry.field(description="Every member the filter matches (counted only when asked for).")
        async def total_count(self) -> int:
            return await self.count()

    return MemberEdge, MemberConnection


def members(Member):
    MemberEdge, MemberConnection = member_connection(Member)

    async def resolve(info: strawberry.Info, filter: Optional[MemberFilter] = None, first: Optional[int] = 50,
                      after: Optional[str] = None) -> MemberConnection:
        """Members of the shop meeting every condition of `filter`, a page at a time by a keyset cursor
        (at most 200 a page; integrator)."""
        context: RequestContext = info.context
        context.require_integrator(allow="read")
        first = 50 if first is None else first
        if not 1 <= first <= MAX_MEMBERS_PAGE:
            raise VisibleError(f"members: first is {first}: expected 1 to {MAX_MEMBERS_PAGE}")
        start = id_after("member", after, "members", str)
        rows = await context.read(lambda ctx: rules.search(ctx, _where(ctx, filter), first, start))
        edges = [MemberEdge(node=Member(id=strawberry.ID(r.id), external_id=r.external_id, joined_at=r.joined_at,
                                        birthday=r.birthday, tags=list(r.tags)), cursor=id_cursor("member", r.id))
                 for r in rows[:first]]
        return MemberConnection(
            edges=edges, page_info=PageInfo(has_next_page=len(rows) > first,
                                            end_cursor=edges[-1].cursor if edges else None),
            count=lambda: context.read(lambda ctx: rules.count(ctx, _where(ctx, filter))))
    return resolve


@strawberry.input(description="A coupon of `template` for every member of `segment`, by a one-off job.")
class IssueCouponsInput:
    segment: str
    template: str = strawberry.field(description="a coupon template of the shop's [coupons]")
    idempotency_key: str


@strawberry.type
class IssueCouponsPayload:
    duplicate: bool
    job_id: Optional[strawberry.ID] = strawberry.field(description="the job issuing them, each member at most once "
                                                                   "per idempotencyKey: read its progress with job(id)")
    errors: list[UserError]


def issue_coupons_to_segment(Member):
    async def resolve(info: strawberry.Info, input: IssueCouponsInput) -> IssueCouponsPayload:
        """Queue a job that gives every member of the segment a coupon of the template (integrator)."""
        context: RequestContext = info.context
        context.require_integrator()
        result = await context.event(campaigns.KIND, "issue_coupons", {"segment": input.segment,
                                                                       "template": input.template},
                                     lambda ctx: campaigns.queue(ctx, input.segment, input.template,
                                                                 input.idempotency_key.strip()),
                                     idempotency_key=input.idempotency_key)
        job_id = result.data.get("job_id") if not result.errors else None
        return IssueCouponsPayload(duplicate=result.duplicate, job_id=strawberry.ID(job_id) if job_id else None,
                                   errors=[UserError.of(e) for e in result.errors])
    return resolve


def contribute(builder) -> None:
    builder.member_field("lifecycle", member_lifecycle, description="The member's lifecycle stage.")
    builder.member_field("lifecycle_history", member_lifecycle_history,
                         description="The member's lifecycle changes, newest first.")
    builder.member_field("rfm", member_rfm, description="The member's RFM scores; null without an order in "
                                                        "the window.")
    builder.member_field("segments", member_segments,
                         description="The codes of the shop's segments the member is in (never among tags).")
    builder.query_field("rfm_run", rfm_run)
    builder.query_field("segments", segments)
    builder.query_field("members", members)
    builder.mutation_field("tag_members", tag_members)
    builder.mutation_field("issue_coupons_to_segment", issue_coupons_to_segment)
