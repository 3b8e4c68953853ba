"""segments' part of the schema: Member.lifecycle and Member.lifecycleHistory; the integrator's tagMembers."""

from datetime import datetime
from typing import Optional

import strawberry

from memberkit.plugin import RequestContext, UserError, limited_list
from memberkit.plugins.segments import lifecycle, rfm, tags

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
        context.require_integrator()
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


def contribute(builder) -> None:
    builder.member_field("lifecycle", member_lifecycle, description="The member's lifecycle stage.")
    builder.member_field("lifecycle_history", member_lifecycle_history,
                         description="The member's lifecycle changes, newest first.")
    builder.member_field("rfm", member_rfm, description="The member's RFM scores; null without an order in "
                                                        "the window.")
    builder.query_field("rfm_run", rfm_run)
    builder.mutation_field("tag_members", tag_members)
