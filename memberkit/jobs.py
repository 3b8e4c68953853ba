"""Running plugins' jobs: every due job of every shop, one process at a time per job (a lease row)."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, text, update

from memberkit.core import clock
from memberkit.core import plugins as plugin_registry
from memberkit.core.db import upsert
from memberkit.core.models import JobLease
from memberkit.core.runtime import Runtime
from memberkit.core.settings import Shop
from memberkit.core.types import Job

log = logging.getLogger("memberkit.jobs")
LEASE = timedelta(minutes=10)  # a crashed runner's lease lapses after this


@dataclass(frozen=True)
class JobRun:
    shop: str
    job: str
    status: str  # "done" | "not due" | "busy" | "failed"
    result: str | None = None


def shop_jobs(shop: Shop) -> list[Job]:
    """The jobs of the shop's plugins, in the shop's plugin order, each named "plugin.job"."""
    return [Job(f"{name}.{job.name}", job.every, job.run, name)
            for name in shop.plugins for job in plugin_registry.load(name).jobs]


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
