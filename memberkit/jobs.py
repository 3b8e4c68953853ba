"""Running plugins' jobs: every due job of every shop, one process at a time per job (a lease row); and the
queued one-off jobs (core_job_run), a batch per transaction with its progress, under a lease per run."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, text, update

from memberkit.core import clock
from memberkit.core import plugins as plugin_registry
from memberkit.core.db import upsert
from memberkit.core.runtime import Runtime
from memberkit.core.settings import Shop
from memberkit.core.types import Job
from memberkit.schema import erasure
from memberkit.schema.jobs import JobLease, JobRunRow

log = logging.getLogger("memberkit.jobs")
LEASE = timedelta(minutes=10)  # a crashed runner's lease lapses after this


@dataclass(frozen=True)
class JobRun:
    shop: str
    job: str
    status: str  # "done" | "not due" | "busy" | "failed"
    result: str | None = None


# Core's own upkeep, after the plugins' jobs of every shop.
CORE_JOBS = (Job("core.prune_fraud_hashes", timedelta(days=1), erasure.prune_fraud_hashes, "core"),)


def shop_jobs(shop: Shop) -> list[Job]:
    """The jobs of the shop's plugins, in the shop's plugin order, each named "plugin.job"; then core's."""
    return [Job(f"{name}.{job.name}", job.every, job.run, name)
            for name in shop.plugins for job in plugin_registry.load(name).jobs if job.every is not None] + [
        *CORE_JOBS]


def _acquire(runtime: Runtime, shop: str, job: str, owner: str, now: datetime) -> tuple[bool, datetime | None]:
    with runtime.db.write() as conn:
        conn.execute(upsert(JobLease.__table__).on(conn), {"shop": shop, "job": job})
        row = conn.execute(
            update(JobLease)
            .where(JobLease.shop == shop, JobLease.job == job,
                   or_(JobLease.lease_until.is_(None), JobLease.lease_until < now))
            .values(owner=owner, lease_until=now + LEASE)
            .returning(JobLease.last_run_at)
        ).first()
    return (row is not None), (row.last_run_at if row else None)


def _finish(runtime: Runtime, shop: str, job: str, owner: str, ran_at: datetime | None, result: str | None) -> None:
    values = {"owner": None, "lease_until": None}
    if ran_at is not None:
        values.update(last_run_at=ran_at, last_result=(result or "")[:500])
    with runtime.db.write() as conn:
        conn.execute(update(JobLease).where(JobLease.shop == shop, JobLease.job == job, JobLease.owner == owner)
                     .values(**values))


class _Busy(Exception):
    pass


def _exclusive(conn, shop: str, job: str) -> bool:
    """On PostgreSQL, a transaction-scoped advisory lock: holds however long the job runs, even past its
    lease. SQLite's single writer already excludes every other run of the job's write transaction."""
    if conn.dialect.name != "postgresql":
        return True
    return conn.execute(text("SELECT pg_try_advisory_xact_lock(hashtextextended(:key, 0))"),
                        {"key": f"memberkit-job:{shop}:{job}"}).scalar()


def run_due(runtime: Runtime, shop_slug: str | None = None, force: bool = False) -> list[JobRun]:
    """Run each job whose interval has passed since its last run (all of them with `force`)."""
    owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"  # unique per call, threads too
    runs = []
    for shop in runtime.settings.shops.values():
        if shop_slug and shop.slug != shop_slug:
            continue
        for job in shop_jobs(shop):
            now = clock.now()
            acquired, last_run = _acquire(runtime, shop.slug, job.name, owner, now)
            if not acquired:
                runs.append(JobRun(shop.slug, job.name, "busy"))
                continue
            if not force and last_run is not None and last_run + job.every > now:
                _finish(runtime, shop.slug, job.name, owner, None, None)
                runs.append(JobRun(shop.slug, job.name, "not due"))
                continue
            try:
                with runtime.transaction(shop, {"kind": "job", "job": job.name}) as ctx:
                    if not _exclusive(ctx.conn, shop.slug, job.name):
                        raise _Busy
                    result = job.run(ctx)
            except _Busy:
                _finish(runtime, shop.slug, job.name, owner, None, None)
                runs.append(JobRun(shop.slug, job.name, "busy"))
                continue
            except Exception:  # one failing job must not stop the others; it is retried next run
                log.error("job %s for shop %s failed:\n%s", job.name, shop.slug, traceback.format_exc())
                _finish(runtime, shop.slug, job.name, owner, None, None)
                runs.append(JobRun(shop.slug, job.name, "failed"))
                continue
            _finish(runtime, shop.slug, job.name, owner, now, result)
            runs.append(JobRun(shop.slug, job.name, "done", result))
    return runs


# ---------------------------------------------------------------- one-off jobs

RUNS = JobRunRow.__table__
Progress = Callable[[str, int, int | None], None]  # (run id, done, total) after each batch


def one_off_jobs(shop: Shop) -> dict[str, Job]:
    """The one-off jobs (``every`` None) of the shop's plugins by kind, "plugin.job"."""
    return {f"{name}.{job.name}": Job(f"{name}.{job.name}", None, job.run, name)
            for name in shop.plugins for job in plugin_registry.load(name).jobs if job.every is None}


def _claim(runtime: Runtime, run_id: str, owner: str) -> bool:
    now = clock.now()
    with runtime.db.write() as conn:
        return conn.execute(update(RUNS).where(
            RUNS.c.id == run_id, RUNS.c.status.in_(["QUEUED", "RUNNING"]),
            or_(RUNS.c.owner.is_(None), RUNS.c.lease_until < now))
            .values(owner=owner, lease_until=now + LEASE, status="RUNNING",
                    started_at=func.coalesce(RUNS.c.started_at, now))
            .returning(RUNS.c.id)).first() is not None


def _batch(runtime: Runtime, shop: Shop, job: Job, run_id: str, owner: str) -> tuple[int, int | None, bool] | None:
    """One batch, committed with the run's progress; None when the lease went to another process. The
    run's row is locked first, so a batch and its cursor are written by one process only."""
    with runtime.transaction(shop, {"kind": "job", "job": job.name, "run": run_id}) as ctx:
        mine = (RUNS.c.id == run_id, RUNS.c.owner == owner, RUNS.c.status == "RUNNING")
        row = ctx.conn.execute(update(RUNS).where(*mine).values(lease_until=ctx.now + LEASE)
                               .returning(RUNS.c.params, RUNS.c.cursor, RUNS.c.done, RUNS.c.total)).first()
        if row is None:
            return None
        count, cursor = job.run(ctx, row.params, row.cursor)
        finished = cursor is None
        ctx.conn.execute(update(RUNS).where(RUNS.c.id == run_id).values(
            done=row.done + count, cursor=cursor, status="DONE" if finished else "RUNNING",
            finished_at=ctx.now if finished else None, owner=None if finished else owner,
            lease_until=None if finished else RUNS.c.lease_until))
    return row.done + count, row.total, finished


def _fail(runtime: Runtime, run_id: str, owner: str, error: str) -> None:
    with runtime.db.write() as conn:
        conn.execute(update(RUNS).where(RUNS.c.id == run_id, RUNS.c.owner == owner).values(
            status="FAILED", error=error[:500], finished_at=clock.now(), owner=None, lease_until=None))


def run_queued(runtime: Runtime, shop_slug: str | None = None, progress: Progress | None = None) -> list[JobRun]:
    """Run every queued one-off job (and every running one whose process died: its lease ran out) to the
    end, a batch per transaction. A job that raises is FAILED with the error, its committed batches kept."""
    owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
    with runtime.db.read() as conn:
        waiting = conn.execute(select(RUNS.c.id, RUNS.c.shop, RUNS.c.kind).where(
            RUNS.c.status.in_(["QUEUED", "RUNNING"]), or_(RUNS.c.owner.is_(None), RUNS.c.lease_until < clock.now()))
            .order_by(RUNS.c.created_at)).all()
    runs = []
    for run_id, slug, kind in waiting:
        if (shop_slug and slug != shop_slug) or slug not in runtime.settings.shops:
            continue
        if not _claim(runtime, run_id, owner):
            continue
        shop = runtime.shop(slug)
        job = one_off_jobs(shop).get(kind)
        if job is None:
            _fail(runtime, run_id, owner, f"no plugin of shop {slug!r} runs jobs of kind {kind!r}")
            runs.append(JobRun(slug, kind, "failed"))
            continue
        try:
            while (step := _batch(runtime, shop, job, run_id, owner)) is not None:
                done, total, finished = step
                if progress:
                    progress(run_id, done, total)
                if finished:
                    runs.append(JobRun(slug, kind, "done", f"{done} done"))
                    break
            else:
                runs.append(JobRun(slug, kind, "busy"))  # another process took the run over
        except Exception as exc:
            log.error("one-off job %s (%s) for shop %s failed:\n%s", run_id, kind, slug, traceback.format_exc())
            _fail(runtime, run_id, owner, f"{type(exc).__name__}: {exc}")
            runs.append(JobRun(slug, kind, "failed"))
    return runs
