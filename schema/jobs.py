"""One-off jobs (a campaign, an import, a redelivery): queued by a plugin inside an event's transaction,
run a batch at a time by ``memberkit jobs run`` and the server's timer (memberkit/jobs.py), and read by
anyone holding the shop's secret key through ``job(id)``. The tables of jobs are here too: the leases of
recurring jobs (which process runs one now) and the one-off runs."""

from __future__ import annotations

import enum
import secrets
from datetime import datetime
from typing import Any, Optional

import strawberry
from sqlalchemy import JSON, Column, UniqueConstraint, select
from sqlmodel import Field, SQLModel

from memberkit.core.context import Context
from memberkit.core.db import upsert
from memberkit.core.models import timestamp
from memberkit.schema.context import RequestContext, VisibleError


# The jobs' tables (created by core's migrations): the timer's leases and the one-off runs.
class JobLease(SQLModel, table=True):
    """Which process runs a job for a shop now, and when it last finished."""

    __tablename__ = "core_job_lease"

    shop: str = Field(primary_key=True, max_length=64)
    job: str = Field(primary_key=True, max_length=120)
    owner: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = timestamp(nullable=True)
    last_run_at: datetime | None = timestamp(nullable=True)
    last_result: str | None = Field(default=None, max_length=500)


class JobRunRow(SQLModel, table=True):
    """A one-off job (a campaign, an import, a redelivery), queued once per key and run a batch at a time,
    each batch committed with its progress: a crash resumes after the last batch, a rerun repeats nothing."""

    __tablename__ = "core_job_run"
    __table_args__ = (UniqueConstraint("shop", "key", name="uq_core_job_run_shop_key"),)

    id: str = Field(primary_key=True, max_length=32)
    shop: str = Field(max_length=64)
    kind: str = Field(max_length=120)  # "plugin.job"
    key: str = Field(max_length=200)
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="QUEUED", max_length=8)  # QUEUED | RUNNING | DONE | FAILED
    total: int | None = None
    done: int = 0
    cursor: str | None = Field(default=None, max_length=200)  # where the next batch starts
    owner: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = timestamp(nullable=True)
    created_at: datetime = timestamp()
    started_at: datetime | None = timestamp(nullable=True)
    finished_at: datetime | None = timestamp(nullable=True)
    error: str | None = Field(default=None, max_length=500)


RUNS = JobRunRow.__table__


def queue_job(ctx: Context, kind: str, key: str, params: dict[str, Any], total: int | None = None) -> tuple[str, bool]:
    """Queue a one-off job of `kind` ("plugin.job", a job the plugin declares with ``every=None``) in this
    transaction, once per shop and `key`: returns its id and whether it is new (a job already queued under
    the key is returned as it is)."""
    run_id = "job_" + secrets.token_hex(12)
    added = ctx.conn.execute(upsert(RUNS, on=["shop", "key"], returning=(RUNS.c.id,)).on(ctx.conn), {
        "id": run_id, "shop": ctx.shop.slug, "kind": kind, "key": key, "params": params, "status": "QUEUED",
        "total": total, "done": 0, "created_at": ctx.now}).first()
    if added is not None:
        return added.id, True
    found = ctx.conn.execute(select(RUNS.c.id).where(RUNS.c.shop == ctx.shop.slug, RUNS.c.key == key)).scalar_one()
    return found, False


@strawberry.enum
class JobRunStatus(enum.Enum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"


@strawberry.type(description="A one-off job (a campaign, an import, a redelivery): its progress, readable while "
                             "it runs.")
class JobRun:
    id: strawberry.ID
    kind: str
    status: JobRunStatus
    total: Optional[int] = strawberry.field(description="how many items it will go through, where known")
    done: int
    started_at: Optional[datetime]
    finished_at: Optional[datetime]
    error: Optional[str]


MAX_JOBS_LISTED = 100


def _job_run(row) -> JobRun:
    return JobRun(id=strawberry.ID(row.id), kind=row.kind, status=JobRunStatus(row.status), total=row.total,
                  done=row.done, started_at=row.started_at, finished_at=row.finished_at, error=row.error)


def contribute(builder) -> None:
    def job(Member):
        async def resolve(info: strawberry.Info, id: strawberry.ID) -> Optional[JobRun]:
            """A one-off job of this shop by id, null if there is none (integrator)."""
            context: RequestContext = info.context
            context.require_integrator(allow="read")
            row = await context.read(lambda ctx: ctx.conn.execute(select(RUNS).where(
                RUNS.c.id == str(id), RUNS.c.shop == ctx.shop.slug)).first())
            return None if row is None else _job_run(row)
        return resolve

    def jobs(Member):
        async def resolve(info: strawberry.Info, first: int = 20) -> list[JobRun]:
            """The shop's one-off jobs, newest first: the first `first` (0 to 100), for the console (integrator)."""
            context: RequestContext = info.context
            context.require_integrator(allow="read")
            if not 0 <= first <= MAX_JOBS_LISTED:
                raise VisibleError(f"jobs: first is {first}: expected 0 to {MAX_JOBS_LISTED}")
            rows = await context.read(lambda ctx: ctx.conn.execute(select(RUNS).where(
                RUNS.c.shop == ctx.shop.slug).order_by(RUNS.c.created_at.desc(), RUNS.c.id.desc()).limit(first)).all())
            return [_job_run(row) for row in rows]
        return resolve

    builder.query_field("job", job)
    builder.query_field("jobs", jobs)
