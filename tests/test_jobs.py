"""Plugins' jobs: run when due, one runner at a time per job and shop (a lease row), failures isolated."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select, update
from typer.testing import CliRunner

from memberkit import jobs
from memberkit.cli import app
from memberkit.core import clock
from memberkit.core.db import Database
from memberkit.core.models import Coupon, Member
from memberkit.core.runtime import Runtime
from memberkit.core.types import Job
from memberkit.plugin import Plugin
from memberkit.schema.jobs import JobLease
from tests.conftest import TEST_DATABASE_URL, postgres_only

SETTINGS = """
[shops.alpha]
name = "Alpha"
currency = "CNY"
timezone = "Asia/Shanghai"
plugins = ["chores"]

[shops.alpha.coupons.TEN_OFF]
title = "10 off"
kind = "FIXED"
value = 1000
valid_days = 30
"""

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MEMBER_ID = "mem_jobs"


def issue_coupon(ctx) -> str:
    """A job's work: one coupon into the member's wallet, through the job's transaction."""
    coupon = ctx.wallet.issue(MEMBER_ID, "TEN_OFF", source="chores:issue")
    return f"issued {coupon.code}"


def broken(ctx) -> str:
    issue_coupon(ctx)  # written, then rolled back with the failure
    raise RuntimeError("the job broke")


@pytest.fixture
def chores(add_plugin):
    """The in-test plugin 'chores'; `chores(*jobs)` sets the jobs it declares."""

    def set_jobs(*found: Job) -> None:
        add_plugin(Plugin("chores", jobs=found))

    set_jobs(Job("issue", timedelta(hours=1), issue_coupon))
    return set_jobs


@pytest.fixture
def shop_runtime(chores, make_runtime) -> Runtime:
    """A runtime for SETTINGS with one member in shop alpha, the clock at NOW."""
    runtime = make_runtime(SETTINGS)
    clock.set_now(NOW)
    with runtime.db.write() as conn:
        conn.execute(insert(Member).values(id=MEMBER_ID, shop="alpha", external_id="u-1", joined_at=NOW,
                                           tags=[], created_at=NOW))
    return runtime


def coupons(runtime: Runtime) -> int:
    with runtime.db.read() as conn:
        return conn.execute(select(func.count()).select_from(Coupon)).scalar()


def lease(runtime: Runtime, job: str) -> JobLease | None:
    with runtime.db.read() as conn:
        return conn.execute(select(JobLease).where(JobLease.shop == "alpha", JobLease.job == job)).first()


def plugin_runs(runs: list[jobs.JobRun]) -> list[jobs.JobRun]:
    """The runs of the test's plugin: the default plugins' (checkout.expire_checkouts, kpis.fold) and core's
    own (core.prune_fraud_hashes) run for every shop too."""
    return [run for run in runs if not run.job.startswith(("checkout.", "kpis.", "core."))]


def statuses(runs: list[jobs.JobRun]) -> list[tuple[str, str]]:
    return [(run.job, run.status) for run in plugin_runs(runs)]


def test_due_job_runs_once_then_is_not_due_until_forced_or_its_interval_passes(shop_runtime):
    runtime = shop_runtime
    [default_run, fold, run, core_run] = jobs.run_due(runtime)
    assert (default_run.job, default_run.status) == ("checkout.expire_checkouts", "done")  # a default plugin's
    assert (fold.job, fold.status) == ("kpis.fold", "done")
    assert (core_run.job, core_run.status) == ("core.prune_fraud_hashes", "done")  # core's, after the plugins'
    assert (run.shop, run.job, run.status) == ("alpha", "chores.issue", "done")
    assert run.result.startswith("issued ") and coupons(runtime) == 1
    row = lease(runtime, "chores.issue")
    assert (row.last_run_at, row.last_result, row.owner, row.lease_until) == (NOW, run.result, None, None)

    clock.set_now(NOW + timedelta(minutes=59))
    assert statuses(jobs.run_due(runtime)) == [("chores.issue", "not due")]
    assert coupons(runtime) == 1 and lease(runtime, "chores.issue").last_run_at == NOW

    assert statuses(jobs.run_due(runtime, force=True)) == [("chores.issue", "done")]
    assert coupons(runtime) == 2
    assert lease(runtime, "chores.issue").last_run_at == NOW + timedelta(minutes=59)

    clock.set_now(NOW + timedelta(minutes=59 + 60))
    assert statuses(jobs.run_due(runtime)) == [("chores.issue", "done")]
    assert coupons(runtime) == 3


def test_failing_job_is_reported_rolled_back_and_retried_without_stopping_others(shop_runtime, chores):
    runtime = shop_runtime
    chores(Job("broken", timedelta(hours=1), broken), Job("issue", timedelta(hours=1), issue_coupon))
    assert statuses(jobs.run_due(runtime)) == [("chores.broken", "failed"), ("chores.issue", "done")]
    assert coupons(runtime) == 1  # the broken job's coupon was rolled back
    row = lease(runtime, "chores.broken")
    assert (row.last_run_at, row.owner, row.lease_until) == (None, None, None)  # not advanced, lease released

    clock.set_now(NOW + timedelta(minutes=1))
    assert statuses(jobs.run_due(runtime)) == [("chores.broken", "failed"), ("chores.issue", "not due")]
    assert coupons(runtime) == 1 and lease(runtime, "chores.broken").last_run_at is None


def test_job_leased_by_another_runner_is_busy_and_does_not_run(shop_runtime):
    runtime = shop_runtime
    with runtime.db.write() as conn:
        conn.execute(insert(JobLease).values(shop="alpha", job="chores.issue", owner="elsewhere:1",
                                             lease_until=NOW + timedelta(minutes=5)))
    assert statuses(jobs.run_due(runtime)) == [("chores.issue", "busy")]
    assert statuses(jobs.run_due(runtime, force=True)) == [("chores.issue", "busy")]
    assert coupons(runtime) == 0
    row = lease(runtime, "chores.issue")
    assert (row.owner, row.lease_until) == ("elsewhere:1", NOW + timedelta(minutes=5))  # left alone

    clock.set_now(NOW + timedelta(minutes=6))  # the other runner's lease lapsed (it crashed)
    assert statuses(jobs.run_due(runtime)) == [("chores.issue", "done")]
    assert coupons(runtime) == 1


def test_jobs_run_command_prints_each_status(shop_runtime, chores, settings_file):
    runtime = shop_runtime
    chores(Job("issue", timedelta(hours=1), issue_coupon), Job("noop", timedelta(days=1), lambda ctx: None))
    config = settings_file(SETTINGS, "cli.toml")
    env = {"MEMBERKIT_CONFIG": str(config), "MEMBERKIT_DATABASE_URL": runtime.db.url}
    runner = CliRunner()
    first = runner.invoke(app, ["jobs", "run"], env=env)
    assert first.exit_code == 0, (first.output, first.exception)
    lines = first.stdout.splitlines()
    assert lines.pop(0) == "alpha checkout.expire_checkouts: done"  # the default plugins' jobs first
    assert lines.pop(0) == "alpha kpis.fold: done"
    assert lines.pop() == "alpha core.prune_fraud_hashes: done"  # core's upkeep last
    assert len(lines) == 2 and lines[0].startswith("alpha chores.issue: done (issued ")
    assert lines[0].endswith(")")
    assert lines[1] == "alpha chores.noop: done"

    again = runner.invoke(app, ["jobs", "run", "--shop", "alpha"], env=env)
    assert again.exit_code == 0
    assert again.stdout.splitlines()[2:4] == ["alpha chores.issue: not due", "alpha chores.noop: not due"]
    assert coupons(runtime) == 1

    chores(Job("broken", timedelta(hours=1), broken))
    failed = runner.invoke(app, ["jobs", "run"], env=env)
    assert failed.exit_code == 1 and failed.stdout.splitlines()[2:-1] == ["alpha chores.broken: failed"]


@postgres_only()
def test_four_runners_at_once_run_a_job_exactly_once(shop_runtime, chores):
    calls: list[str] = []
    start = threading.Barrier(4)

    def slow_issue(ctx) -> str:
        calls.append(threading.current_thread().name)
        time.sleep(0.3)  # hold the lease while the other runners arrive
        return issue_coupon(ctx)

    chores(Job("issue", timedelta(hours=1), slow_issue))
    runtimes = [Runtime(shop_runtime.settings, Database(TEST_DATABASE_URL)) for _ in range(4)]
    results: dict[int, list[jobs.JobRun]] = {}

    def runner(i: int) -> None:
        start.wait()
        results[i] = jobs.run_due(runtimes[i])

    threads = [threading.Thread(target=runner, args=(i,), name=f"runner-{i}") for i in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        for runtime in runtimes:
            runtime.db.dispose()
    assert len(results) == 4
    seen = sorted(run.status for runs in results.values() for run in plugin_runs(runs))
    assert seen.count("done") == 1 and set(seen) <= {"done", "busy", "not due"}, seen
    assert len(calls) == 1 and coupons(shop_runtime) == 1


def test_lease_is_released_after_a_run(shop_runtime):
    """A finished run leaves no lease behind, so the next runner need not wait for it to lapse."""
    runtime = shop_runtime
    jobs.run_due(runtime)
    with runtime.db.write() as conn:
        conn.execute(update(JobLease).values(last_run_at=NOW - timedelta(hours=2)))
    assert statuses(jobs.run_due(runtime)) == [("chores.issue", "done")]
