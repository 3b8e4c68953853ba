"""Reaching a segment (RULES.md section 7): a flash sale and a product rule for a segment's members only
(NOT_IN_SEGMENT, through core's member_segments hook), and issueCouponsToSegment, a one-off job that gives
each member of the segment one coupon per key, whatever crashes, reruns or second processes happen."""

from __future__ import annotations

import csv
import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from memberkit import jobs
from memberkit.core.models import Coupon
from memberkit.plugin import Plugin, hookimpl
from memberkit.plugins.segments import campaigns

DEMO = (Path(__file__).resolve().parents[1] / "plugins.toml").read_text()
SHOES = [{"sku": "SNEAKER-1", "quantity": 1, "unitPrice": 50000, "category": "shoes"}]
CREATE_SALE = """mutation($input: FlashSaleInput!) { createFlashSale(input: $input) {
  flashSale { id segment } errors { code field message } } }"""
UPDATE_SALE = """mutation($input: UpdateFlashSaleInput!) { updateFlashSale(input: $input) {
  flashSale { segment } errors { code } } }"""
RESERVE = """mutation($input: ReserveFlashSaleInput!) { reserveFlashSale(input: $input) {
  reservation { quantity } errors { code field message } } }"""
UPSERT_RULE = """mutation($input: ProductRuleInput!) { upsertProductRule(input: $input) {
  access { segment canPurchase reasonCode } errors { code field message } } }"""
ACCESS = """query($skus: [String!]!) { productAccess(skus: $skus) { sku segment canPurchase reasonCode reason } }"""
ISSUE = """mutation($input: IssueCouponsInput!) { issueCouponsToSegment(input: $input) {
  duplicate jobId errors { code field message } } }"""
JOB = "query($id: ID!) { job(id: $id) { id kind status total done startedAt finishedAt error } }"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text + "+08:00").astimezone(UTC)


@pytest.fixture
def shop(memberkit):
    programme = memberkit(DEMO)
    programme.clock.set(at("2026-03-10T12:00:00"))
    return programme


def sneaker_fan(shop, external_id: str) -> str:
    member_id = shop.sign_up("demo", external_id)
    for n in (1, 2):
        shop.pay("demo", member_id, f"{external_id}-shoes-{n}", 50000, lines=SHOES)
    return member_id


def coupons_from_campaigns(shop) -> dict[str, int]:
    with shop.runtime.db.read() as conn:
        return dict(conn.execute(select(Coupon.member_id, func.count()).where(Coupon.source == "segments:sneaker_fans")
                                 .group_by(Coupon.member_id)).all())


def test_a_flash_sale_for_a_segment_refuses_everyone_else(shop):
    api = shop.integrator("demo")
    sale = {"sku": "AJ-1", "title": "Sneaker drop", "price": 59900, "startsAt": "2026-03-10T10:00:00+08:00",
            "endsAt": "2026-03-11T10:00:00+08:00", "stock": 10, "perMemberLimit": 1, "membersOnly": True}
    [refused] = api(CREATE_SALE, {"input": {**sale, "segment": "skaters"}})["createFlashSale"]["errors"]
    assert (refused["code"], refused["field"]) == ("UNKNOWN_SEGMENT", "segment")
    assert refused["message"] == ("segment 'skaters' is not one of this shop's: expected one of sneaker_fans, "
                                  "vip_at_risk")
    created = api(CREATE_SALE, {"input": {**sale, "segment": "sneaker_fans"}})["createFlashSale"]
    sale_id = created["flashSale"]["id"]
    assert created["flashSale"]["segment"] == "sneaker_fans"

    fan, other = sneaker_fan(shop, "crm-fan"), shop.sign_up("demo", "crm-other")
    reserve = {"saleId": sale_id, "quantity": 1}
    [denied] = shop.member("demo", other)(RESERVE, {"input": {**reserve, "idempotencyKey": "r-1"}})[
        "reserveFlashSale"]["errors"]
    assert (denied["code"], denied["field"]) == ("NOT_IN_SEGMENT", "saleId")
    reserved = shop.member("demo", fan)(RESERVE, {"input": {**reserve, "idempotencyKey": "r-2"}})["reserveFlashSale"]
    assert reserved["errors"] == [] and reserved["reservation"]["quantity"] == 1

    opened = api(UPDATE_SALE, {"input": {"saleId": sale_id, "segment": ""}})["updateFlashSale"]
    assert opened == {"flashSale": {"segment": None}, "errors": []}
    reserved = shop.member("demo", other)(RESERVE, {"input": {**reserve, "idempotencyKey": "r-3"}})["reserveFlashSale"]
    assert reserved["errors"] == []


def test_a_product_for_a_segment_is_sold_to_its_members_only(shop):
    api = shop.integrator("demo")
    rule = {"sku": "AJ-RARE", "memberOnly": True, "segment": "sneaker_fans"}
    saved = api(UPSERT_RULE, {"input": rule})["upsertProductRule"]
    assert saved["errors"] == [] and saved["access"]["segment"] == "sneaker_fans"
    [refused] = api(UPSERT_RULE, {"input": {**rule, "memberOnly": False}})["upsertProductRule"]["errors"]
    assert (refused["code"], refused["field"]) == ("SEGMENT_NEEDS_MEMBER_ONLY", "memberOnly")
    [refused] = api(UPSERT_RULE, {"input": {**rule, "segment": "skaters"}})["upsertProductRule"]["errors"]
    assert refused["code"] == "UNKNOWN_SEGMENT"

    fan, other = sneaker_fan(shop, "crm-fan"), shop.sign_up("demo", "crm-other")
    [access] = shop.member("demo", other)(ACCESS, {"skus": ["AJ-RARE"]})["productAccess"]
    assert (access["canPurchase"], access["reasonCode"]) == (False, "NOT_IN_SEGMENT")
    assert access["reason"] == "For members of the segment 'sneaker_fans' only"
    [access] = shop.member("demo", fan)(ACCESS, {"skus": ["AJ-RARE"]})["productAccess"]
    assert (access["canPurchase"], access["reasonCode"]) == (True, None)
    [access] = shop.storefront("demo")(ACCESS, {"skus": ["AJ-RARE"]})["productAccess"]
    assert access["reasonCode"] == "MEMBERS_ONLY"


def test_issue_coupons_to_a_segment_by_a_job_once_per_key(shop):
    api = shop.integrator("demo")
    fans = sorted(sneaker_fan(shop, f"crm-{n}") for n in range(3))
    shop.sign_up("demo", "crm-not-a-fan")
    call = {"input": {"segment": "sneaker_fans", "template": "WINBACK_20", "idempotencyKey": "spring-drop"}}
    queued = api(ISSUE, call)["issueCouponsToSegment"]
    assert queued["errors"] == [] and queued["duplicate"] is False
    job = api(JOB, {"id": queued["jobId"]})["job"]
    assert (job["kind"], job["status"], job["total"], job["done"], job["startedAt"]) == (
        "segments.issue_coupons", "QUEUED", 3, 0, None)

    runs = shop.run_jobs("demo")
    assert runs["segments.issue_coupons"].status == "done"
    job = api(JOB, {"id": queued["jobId"]})["job"]
    assert (job["status"], job["done"], job["error"]) == ("DONE", 3, None) and job["finishedAt"]
    assert coupons_from_campaigns(shop) == {fan: 1 for fan in fans}

    again = api(ISSUE, call)["issueCouponsToSegment"]
    assert again == {"duplicate": True, "jobId": queued["jobId"], "errors": []}
    shop.run_jobs("demo")
    assert coupons_from_campaigns(shop) == {fan: 1 for fan in fans}

    for changes, code in (({"template": "NOPE"}, "UNKNOWN_TEMPLATE"), ({"segment": "skaters"}, "UNKNOWN_SEGMENT")):
        bad = {"input": {**call["input"], **changes, "idempotencyKey": f"bad-{code}"}}
        [refused] = api(ISSUE, bad)["issueCouponsToSegment"]["errors"]
        assert refused["code"] == code
    assert api(JOB, {"id": "job_nope"})["job"] is None
    assert shop.storefront("demo").errors(JOB, {"id": queued["jobId"]})  # integrators only


def test_a_job_resumes_after_a_crash_and_two_processes_issue_nothing_twice(shop, monkeypatch):
    monkeypatch.setattr(campaigns, "BATCH", 2)
    api = shop.integrator("demo")
    fans = sorted(sneaker_fan(shop, f"crm-{n}") for n in range(5))
    job_id = api(ISSUE, {"input": {"segment": "sneaker_fans", "template": "WINBACK_20",
                                   "idempotencyKey": "k-1"}})["issueCouponsToSegment"]["jobId"]
    runtime, shop_settings = shop.runtime, shop.runtime.shop("demo")
    [job] = jobs.one_off_jobs(shop_settings).values()
    # a process claims the job, commits one batch and dies (its lease stays behind)
    assert jobs._claim(runtime, job_id, "dead-process")
    assert jobs._batch(runtime, shop_settings, job, job_id, "dead-process")[:2] == (2, 5)
    assert shop.run_jobs("demo").get("segments.issue_coupons") is None  # the lease still holds
    assert api(JOB, {"id": job_id})["job"]["status"] == "RUNNING"
    shop.clock.set(shop.clock.now() + jobs.LEASE + timedelta(seconds=1))

    def work() -> None:  # two processes take it up at once when the lease runs out
        jobs.run_queued(runtime, "demo")

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert coupons_from_campaigns(shop) == {fan: 1 for fan in fans}
    job = api(JOB, {"id": job_id})["job"]
    assert (job["status"], job["done"]) == ("DONE", 5)


def test_a_failing_job_says_why_and_keeps_what_it_committed(shop, monkeypatch):
    monkeypatch.setattr(campaigns, "BATCH", 2)
    api = shop.integrator("demo")
    for n in range(3):
        sneaker_fan(shop, f"crm-{n}")
    job_id = api(ISSUE, {"input": {"segment": "sneaker_fans", "template": "WINBACK_20",
                                   "idempotencyKey": "k-1"}})["issueCouponsToSegment"]["jobId"]
    calls = []
    real = campaigns.issue_batch

    def second_batch_fails(ctx, params, cursor):
        calls.append(cursor)
        if len(calls) == 2:
            raise RuntimeError("the database went away")
        return real(ctx, params, cursor)

    [(_, job)] = jobs.one_off_jobs(shop.runtime.shop("demo")).items()
    monkeypatch.setattr(jobs, "one_off_jobs", lambda s: {job.name: type(job)(job.name, None, second_batch_fails,
                                                                            job.plugin)})
    assert shop.run_jobs("demo")["segments.issue_coupons"].status == "failed"
    found = api(JOB, {"id": job_id})["job"]
    assert (found["status"], found["done"], found["error"]) == ("FAILED", 2, "RuntimeError: the database went away")
    assert sum(coupons_from_campaigns(shop).values()) == 2


def test_members_export_streams_the_filter_to_csv_and_jobs_run_works_through_queued_jobs(shop, settings_file,
                                                                                        monkeypatch, tmp_path):
    from memberkit import export
    from memberkit.cli import app

    monkeypatch.setattr(export, "PAGE", 2)  # several pages
    fans = sorted(sneaker_fan(shop, f"crm-{n}") for n in range(3))
    shop.sign_up("demo", "crm-other", tags=["vip"])
    env = {"MEMBERKIT_CONFIG": str(settings_file(DEMO, "cli.toml")), "MEMBERKIT_DATABASE_URL": shop.runtime.db.url}
    out = tmp_path / "fans.csv"
    done = CliRunner().invoke(app, ["members", "export", "--shop", "demo", "--segment", "sneaker_fans", "--csv",
                                    str(out)], env=env)
    assert done.exit_code == 0, (done.output, done.exception)
    assert "3 member(s) written to" in done.stderr
    rows = list(csv.DictReader(out.open()))
    assert [row["id"] for row in rows] == fans
    # 1,000 yuan of shoes: silver
    assert {(row["tier"], row["lifecycle"], row["segments"]) for row in rows} == {("SILVER", "ACTIVE", "sneaker_fans")}
    assert set(rows[0]) == {"id", "externalId", "joinedAt", "tags", "tier", "lifecycle", "segments"}  # no phone

    refused = CliRunner().invoke(app, ["members", "export", "--shop", "demo", "--tier", "PLATINUM", "--csv",
                                       str(out)], env=env)
    assert refused.exit_code == 1 and "filter.tier 'PLATINUM' is not one of this shop's" in refused.stderr

    shop.integrator("demo")(ISSUE, {"input": {"segment": "sneaker_fans", "template": "WINBACK_20",
                                              "idempotencyKey": "k-cli"}})
    ran = CliRunner().invoke(app, ["jobs", "run", "--shop", "demo"], env=env)
    assert ran.exit_code == 0, (ran.output, ran.exception)
    assert "demo segments.issue_coupons: done (3 done)" in ran.stdout
    assert coupons_from_campaigns(shop) == {fan: 1 for fan in fans}


class Club:
    """A third party's segments: one segment, "club", of the members it names."""

    def __init__(self):
        self.members: set[str] = set()

    @hookimpl
    def segment_codes(self, ctx):
        return ["club"]

    @hookimpl
    def member_segments(self, ctx, member_id):
        return ["club"] if member_id in self.members else []


def test_any_plugin_that_keeps_segments_answers_the_sale_through_core_hooks(memberkit):
    """flash_sale never imports segments: with a third party's plugin in its place, its segment decides."""
    club = Club()
    settings = re.sub(r"(?ms)^\[shops\.demo\.settings\.segments\]\n.*?(?=^\[shops\.)", "", DEMO)
    shop = memberkit(settings.replace('"segments", "webhooks"]', '"club", "webhooks"]'),
                     plugins=[Plugin("club", hooks=club)])
    shop.clock.set(at("2026-03-10T12:00:00"))
    sale = {"sku": "AJ-1", "title": "Club drop", "price": 59900, "startsAt": "2026-03-10T10:00:00+08:00",
            "endsAt": "2026-03-11T10:00:00+08:00", "stock": 10, "perMemberLimit": 1, "membersOnly": True,
            "segment": "club"}
    sale_id = shop.integrator("demo")(CREATE_SALE, {"input": sale})["createFlashSale"]["flashSale"]["id"]
    inside, outside = shop.sign_up("demo", "crm-in"), shop.sign_up("demo", "crm-out")
    club.members.add(inside)
    for member_id, errors in ((inside, []), (outside, ["NOT_IN_SEGMENT"])):
        reserved = shop.member("demo", member_id)(RESERVE, {"input": {"saleId": sale_id, "quantity": 1,
                                                                      "idempotencyKey": member_id}})
        assert [e["code"] for e in reserved["reserveFlashSale"]["errors"]] == errors
