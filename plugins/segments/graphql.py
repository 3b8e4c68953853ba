"""segments' part of the schema: Member.lifecycle and Member.lifecycleHistory."""

from datetime import datetime
from typing import Optional

import strawberry

from memberkit.plugins.segments import lifecycle

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


def contribute(builder) -> None:
    builder.member_field("lifecycle", member_lifecycle, description="The member's lifecycle stage.")
    builder.member_field("lifecycle_history", member_lifecycle_history,
                         description="The member's lifecycle changes, newest first.")
