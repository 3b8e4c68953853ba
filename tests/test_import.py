"""``memberkit import members``: a dry run that finds every bad row and writes nothing; an import that keeps
the CRM's history (tiers, points with their dates, stages, orders), hashes personal data as sign-up does,
gives no gifts and emits one event; reruns and resumes that write nothing twice."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from memberkit import importer
from memberkit.cli import app
from memberkit.core.hashing import keyed_hashes
from memberkit.core.models import Coupon, Event, Member, MemberPersonal
from memberkit.plugin import Plugin, hookimpl
from memberkit.plugins.points.models import PointsEntry, PointsLot
from memberkit.plugins.referral import rewards
from memberkit.plugins.referral.models import ReferralCode
from memberkit.plugins.segments.models import SegmentsLifecycle, SegmentsMember
from memberkit.plugins.tiering.models import TierChange
from memberkit.plugins.webhooks.models import WebhookEvent
from tests.conftest import ROOT

DEMO = (ROOT / "plugins.toml").read_text()
NOW = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
HEADER = list(importer.COLUMNS)
MEMBER = """query($id: String!) { member(externalId: $id) {
  id joinedAt tags birthday tier { code } tierHistory { fromCode toCode reason note }
  points { balance lifetimeEarned expiring { points expiresAt } history { edges { node { delta reason rule } } } }
  lifecycle { stage lastOrderAt } segments perks { firstOrderDiscount } coupons(status: null) { source }
  referral { code } } }"""


def write_csv(path: Path, rows: list[dict], header: list[str] = HEADER) -> Path:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def count(shop, table, *where) -> int:
    with shop.runtime.db.read() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar()


def event_types(shop) -> list[str]:
    with shop.runtime.db.read() as conn:
        return list(conn.execute(select(WebhookEvent.type).order_by(WebhookEvent.id)).scalars())


def run(shop, path: Path, **options) -> importer.Report:
    demo = shop.runtime.shop("demo")
    return importer.run(shop.runtime, demo, path, **options)


@pytest.fixture
def shop(memberkit):
    programme = memberkit(DEMO)
    programme.clock.set(NOW)
    return programme


CRM = [  # a GOLD customer active last month, a SILVER one dormant, a new one, one whose tier comes from spend
    {"externalId": "crm-1", "phone": "138 0000 0001", "email": "Wang.Fang@Example.com", "birthday": "1990-03-15",
     "joinedAt": "2021-05-01", "tier": "gold", "tags": "vip|sneakers", "lifetimeSpend": "250000",
     "orderCount": "14", "lastOrderAt": "2026-11-20T19:20:00+08:00", "points": "1200",
     "pointsEarnedAt": "2026-06-01", "pointsExpireAt": "2027-06-30T23:59:59+08:00"},
    {"externalId": "crm-2", "phone": "13800000002", "joinedAt": "2023-02-11T10:00:00+08:00", "tier": "SILVER",
     "lifetimeSpend": "52000", "orderCount": "3", "lastOrderAt": "2026-07-01", "points": "300",
     "pointsEarnedAt": "2026-07-01"},
    {"externalId": "crm-3", "joinedAt": "2024-12-24", "tags": "newsletter"},
    {"externalId": "crm-4", "lifetimeSpend": "600000", "orderCount": "40", "lastOrderAt": "2026-08-01T10:00:00Z"},
]


def test_a_dry_run_reports_every_bad_row_with_line_column_and_what_was_expected_and_writes_nothing(shop, tmp_path):
    bad = [
        {"externalId": "ok-1", "birthday": "1990-01-31"},
        {"externalId": "bad-1", "birthday": "1990-13-01", "phone": "12", "email": "nobody"},
        {"externalId": "bad-2", "tier": "PLATINUM", "lifetimeSpend": "12.50", "joinedAt": "2026-11-20T10:00:00"},
        {"externalId": "ok-1"},
        {"externalId": "", "points": "-5"},
        {"externalId": "bad-3", "lastOrderAt": "2026-01-01", "pointsExpireAt": "2026-06-01", "points": "10"},
        {"externalId": "bad-4", "joinedAt": "2027-01-01", "tags": "|".join(f"t{i}" for i in range(51))},
    ]
    path = write_csv(tmp_path / "crm.csv", bad)
    errors = tmp_path / "errors.csv"
    with errors.open("w", newline="") as out:
        report = importer.check(shop.runtime, shop.runtime.shop("demo"), path, out)
    assert (report.rows, report.invalid, report.skipped) == (7, 6, 0)
    assert [str(e) for e in report.errors] == [
        "line 3, column phone: phone has 2 digits or other characters: expected 5 to 20 digits, optionally with "
        "+ - ( ) and spaces",
        "line 3, column email: email is not an address: expected one like name@example.com",
        "line 3, column birthday: not a date YYYY-MM-DD (e.g. 1990-03-15)",
        "line 4, column joinedAt: joinedAt must carry a UTC offset, e.g. 2026-11-23T20:00:00+08:00",
        'line 4, column tier: "PLATINUM" is not a tier of this shop: expected one of REGULAR, SILVER, GOLD, DIAMOND',
        'line 4, column lifetimeSpend: "12.50" is not a whole number from 0 to 2147483647',
        'line 5, column externalId: "ok-1" is on an earlier line too: expected each externalId once',
        "line 6, column externalId: empty: expected the CRM's id of the customer",
        'line 6, column points: "-5" is not a whole number from 0 to 2147483647',
        "line 7, column orderCount: empty or 0 while lastOrderAt is set: expected the number of orders, 1 or more",
        "line 7, column pointsExpireAt: 2026-05-31T16:00:00+00:00 is not after the points were earned and after "
        "now: expected a later time (expired points are not imported)",
        "line 8, column joinedAt: joinedAt is 2026-12-31T16:00:00+00:00: expected from 2000-01-01T00:00:00+00:00 "
        "to 2026-12-01T04:05:00+00:00 (five minutes past the server's clock)",
        "line 8, column tags: at most 50 tags of at most 64 characters",
    ]
    with errors.open(newline="") as found:
        rows = list(csv.DictReader(found))
    assert [(r["externalId"], r["birthday"]) for r in rows][:2] == [("bad-1", "1990-13-01"), ("bad-2", "")]
    assert rows[0]["error"].startswith("line 3, column phone: ") and "; line 3, column birthday" in rows[0]["error"]
    assert len(rows) == 6
    # nothing written: no member, no event, and the personal values are in no message
    assert count(shop, Member) == count(shop, Event) == 0
    assert not any("1990-13-01" in str(e) or "nobody" in str(e) for e in report.errors)
    # a real run refuses the file as it is
    refused = run(shop, path)
    assert (refused.invalid, refused.imported) == (6, 0) and count(shop, Member) == 0


def test_unknown_columns_are_refused_by_name_with_the_known_ones_listed(shop, tmp_path):
    path = write_csv(tmp_path / "crm.csv", [{"externalId": "a", "mobile": "1"}], ["externalId", "mobile"])
    with pytest.raises(importer.ImportFileError) as refused:
        importer.check(shop.runtime, shop.runtime.shop("demo"), path)
    assert str(refused.value) == ("line 1: unknown column(s) 'mobile'; the known columns are externalId, phone, "
                                  "email, birthday, joinedAt, tier, tags, lifetimeSpend, orderCount, lastOrderAt, "
                                  "points, pointsEarnedAt, pointsExpireAt")


def test_an_import_keeps_the_crms_history_and_gives_no_gifts(shop, tmp_path):
    report = run(shop, write_csv(tmp_path / "crm.csv", CRM), batch=3)
    assert (report.rows, report.imported, report.skipped, report.invalid) == (4, 4, 0, 0)
    gql = shop.integrator("demo")
    gold = gql(MEMBER, {"id": "crm-1"})["member"]
    assert gold["joinedAt"] == "2021-04-30T16:00:00+00:00"  # a date: midnight in Shanghai
    assert (gold["tags"], gold["birthday"], gold["tier"]["code"]) == (["vip", "sneakers"], "1990-03-15", "GOLD")
    assert gold["tierHistory"] == [{"fromCode": None, "toCode": "GOLD", "reason": "IMPORTED",
                                    "note": "imported as GOLD; lifetime spend 2500.00 CNY, 14 orders"}]
    points = gold["points"]
    assert (points["balance"], points["lifetimeEarned"]) == (1200, 1200)
    assert points["expiring"] == [{"points": 1200, "expiresAt": "2027-06-30T15:59:59+00:00"}]
    assert [e["node"] for e in points["history"]["edges"]] == [{"delta": 1200, "reason": "ADJUST", "rule": "import"}]
    assert gold["lifecycle"] == {"stage": "ACTIVE", "lastOrderAt": "2026-11-20T11:20:00+00:00"}
    assert gold["perks"]["firstOrderDiscount"] is False  # 14 orders: the next is no first order
    assert gold["coupons"] == [] and gold["referral"]["code"]  # no welcome gift; a code to invite friends with
    silver = gql(MEMBER, {"id": "crm-2"})["member"]
    assert (silver["tier"]["code"], silver["lifecycle"]["stage"]) == ("SILVER", "DORMANT")  # 153 days
    with shop.runtime.db.read() as conn:  # no expiry given: the shop's rule from when they were earned
        lot = conn.execute(select(PointsLot.available_at, PointsLot.expires_at)
                           .where(PointsLot.member_id == silver["id"])).one()
    assert (lot.available_at.isoformat(), lot.expires_at.isoformat()) == (
        "2026-06-30T16:00:00+00:00", "2027-07-31T16:00:00+00:00")  # end of the 12th month after July, Shanghai
    new = gql(MEMBER, {"id": "crm-3"})["member"]
    assert (new["tier"]["code"], new["lifecycle"]["stage"], new["points"]["balance"]) == ("REGULAR", "NEW", 0)
    assert new["perks"]["firstOrderDiscount"] is True
    spender = gql(MEMBER, {"id": "crm-4"})["member"]
    assert spender["tier"]["code"] == "DIAMOND" and spender["tierHistory"][0]["reason"] == "IMPORTED"
    assert spender["lifecycle"]["stage"] == "DORMANT"
    # personal data: hashed as sign-up hashes it, so a lookup by the phone as typed elsewhere finds them
    with shop.runtime.db.read() as conn:
        found = conn.execute(select(MemberPersonal.member_id).where(
            MemberPersonal.phone_hash.in_(keyed_hashes("13800000001", "phone")))).scalars().all()
        by_email = conn.execute(select(MemberPersonal.member_id).where(
            MemberPersonal.email_hash.in_(keyed_hashes("wang.fang@example.com", "email")))).scalars().all()
        paid_orders = conn.execute(select(Member.paid_orders).where(Member.external_id == "crm-1")).scalar()
    assert found == by_email == [gold["id"]] and paid_orders == 14
    # no outbound event per member: one for the import
    assert event_types(shop) == ["members.imported"]
    assert count(shop, Coupon) == 0


KPIS = """query($from: DateTime!, $to: DateTime!) { programmeKpis(from: $from, to: $to) {
  members newMembers tierDistribution { tier members } points { opening adjusted closing } } }"""


def test_imported_members_count_in_the_kpis_when_they_joined_with_their_opening_points_and_tiers(shop, tmp_path):
    # 30 more, each joined in an hour of its own: a batch counts more figures than one compiled INSERT holds
    hourly = [{"externalId": f"h-{n}", "joinedAt": f"2026-11-{1 + n // 24:02}T{n % 24:02}:30:00+08:00"}
              for n in range(30)]
    run(shop, write_csv(tmp_path / "crm.csv", CRM + hourly), batch=40)
    gql = shop.integrator("demo")
    this_year = gql(KPIS, {"from": "2026-01-01T00:00:00+08:00", "to": "2027-01-01T00:00:00+08:00"})["programmeKpis"]
    # crm-1, crm-2 and crm-3 joined in 2021-2024: members of the shop, not new this year; crm-4 gave no date
    assert (this_year["members"], this_year["newMembers"]) == (34, 31)
    tiers = {row["tier"]: row["members"] for row in this_year["tierDistribution"]}
    assert (tiers["REGULAR"], tiers["SILVER"], tiers["GOLD"], tiers["DIAMOND"]) == (31, 1, 1, 1)
    # the opening balances are adjustments recorded by the import (now), so the liability adds up to them
    assert this_year["points"] == {"opening": 0, "adjusted": 1500, "closing": 1500}


def test_imported_members_are_judged_into_segments_as_a_sign_up_is(shop, tmp_path):
    rows = [{"externalId": "vip", "tier": "GOLD", "orderCount": "5", "lastOrderAt": "2026-07-15"},
            {"externalId": "fan", "tier": "SILVER", "orderCount": "5", "lastOrderAt": "2026-07-15"}]
    run(shop, write_csv(tmp_path / "crm.csv", rows))
    gql = shop.integrator("demo")
    assert gql(MEMBER, {"id": "vip"})["member"]["segments"] == ["vip_at_risk"]  # GOLD and dormant
    assert gql(MEMBER, {"id": "fan"})["member"]["segments"] == []
    assert count(shop, SegmentsMember) == 1


def test_a_rerun_writes_nothing_twice_and_a_sign_up_meanwhile_keeps_its_member(shop, tmp_path):
    path = write_csv(tmp_path / "crm.csv", CRM)
    signed_up = shop.sign_up("demo", "crm-3")
    first = run(shop, path)
    assert (first.imported, first.skipped) == (3, 1)
    before = {table: count(shop, table) for table in (Member, PointsLot, PointsEntry, TierChange, SegmentsLifecycle,
                                                        ReferralCode, WebhookEvent)}
    second = run(shop, path)
    assert (second.imported, second.skipped) == (0, 4)
    assert {table: count(shop, table) for table in before} == before  # not even a second members.imported
    assert event_types(shop).count("members.imported") == 1
    assert shop.integrator("demo")(MEMBER, {"id": "crm-3"})["member"]["id"] == signed_up


class Crash:
    """Fails the third batch (the one holding crm-10) after core's rows of it are written, as a crash or Ctrl-C
    mid-batch would. By its rows, not by the hook's calls: on PostgreSQL two batches are written at once, and
    the fourth may reach the hook first."""

    def __init__(self):
        self.armed = True

    @hookimpl
    def members_imported(self, ctx, members):
        if self.armed and any(member.external_id == "crm-10" for member in members):
            raise KeyboardInterrupt


def test_an_interrupted_import_resumes_and_each_member_and_lot_is_there_once(memberkit, tmp_path):
    crash = Crash()
    shop = memberkit(DEMO.replace('"segments", "webhooks"]', '"segments", "webhooks", "crash"]'),
                     plugins=[Plugin("crash", hooks=crash)])
    shop.clock.set(NOW)
    rows = [{"externalId": f"crm-{i}", "points": str(100 + i), "pointsEarnedAt": "2026-10-01", "tier": "SILVER",
             "lifetimeSpend": "60000", "orderCount": "2", "lastOrderAt": "2026-10-01"} for i in range(25)]
    path = write_csv(tmp_path / "crm.csv", rows)
    with pytest.raises(KeyboardInterrupt):
        run(shop, path, batch=5)
    # the batches before the third committed, the third rolled back whole (on PostgreSQL the fourth, written
    # beside it, may have committed too)
    written = count(shop, Member)
    assert written in ((10,) if shop.runtime.db.is_sqlite else (10, 15))
    assert count(shop, PointsLot) == count(shop, TierChange) == count(shop, ReferralCode) == written
    assert event_types(shop) == []  # the import's event comes when it completes
    crash.armed = False
    resumed = run(shop, path, batch=5)
    assert (resumed.imported, resumed.skipped) == (25 - written, written)
    with shop.runtime.db.read() as conn:
        per_member = conn.execute(select(Member.external_id, func.count(PointsLot.id), func.sum(PointsLot.amount))
                                  .join(PointsLot, PointsLot.member_id == Member.id)
                                  .group_by(Member.external_id)).all()
    assert sorted(per_member) == sorted((f"crm-{i}", 1, 100 + i) for i in range(25))
    for table in (Member, PointsEntry, TierChange, SegmentsLifecycle, ReferralCode):
        assert count(shop, table) == 25, table
    assert event_types(shop) == ["members.imported"]


def test_signing_up_an_imported_external_id_answers_duplicate_with_that_member(shop, tmp_path):
    run(shop, write_csv(tmp_path / "crm.csv", CRM))
    imported = shop.integrator("demo")(MEMBER, {"id": "crm-1"})["member"]["id"]
    members, events = count(shop, Member), count(shop, Event)
    payload = shop.integrator("demo")("""mutation { signUpMember(input: {externalId: "crm-1", phone: "13900000000"})
        { duplicate member { id } effects { kind } errors { code } } }""")["signUpMember"]
    assert payload == {"duplicate": True, "member": {"id": imported}, "effects": [], "errors": []}
    assert (count(shop, Member), count(shop, Event), count(shop, Coupon)) == (members, events, 0)


def test_a_refund_of_a_later_order_keeps_the_tier_the_imported_spend_earns(shop, tmp_path):
    run(shop, write_csv(tmp_path / "crm.csv", CRM))
    gold = shop.integrator("demo")(MEMBER, {"id": "crm-1"})["member"]["id"]
    paid = shop.pay("demo", gold, "o-1", 300000)  # 2,500 + 3,000 yuan: DIAMOND
    assert not any(e["rule"] == "first_order" for e in paid["effects"])  # the 15th order is no first order
    assert shop.integrator("demo")(MEMBER, {"id": "crm-1"})["member"]["tier"]["code"] == "DIAMOND"
    shop.refund("demo", "o-1", "r-1", 300000)
    history = shop.integrator("demo")(MEMBER, {"id": "crm-1"})["member"]["tierHistory"]
    assert [(h["fromCode"], h["toCode"], h["reason"]) for h in history] == [
        ("DIAMOND", "GOLD", "REFUND"), ("GOLD", "DIAMOND", "ORDER"), (None, "GOLD", "IMPORTED")]


def test_a_refund_keeps_the_imported_tier_in_a_rolling_window_too(memberkit, tmp_path):
    shop = memberkit(DEMO.replace("window_months = 0            # lifetime", "window_months = 12"))
    shop.clock.set(NOW)
    run(shop, write_csv(tmp_path / "crm.csv", CRM))
    gold = shop.integrator("demo")(MEMBER, {"id": "crm-1"})["member"]["id"]
    shop.pay("demo", gold, "o-1", 300000)
    shop.refund("demo", "o-1", "r-1", 300000)
    assert shop.integrator("demo")(MEMBER, {"id": "crm-1"})["member"]["tier"]["code"] == "GOLD"


@pytest.mark.parametrize("setting, coupons", [("false", []), ("true", ["perks:welcome"])])
def test_the_sign_up_gift_goes_to_imported_members_only_where_the_shop_says_so(memberkit, tmp_path, setting,
                                                                               coupons):
    shop = memberkit(DEMO.replace("welcome_imported = false", f"welcome_imported = {setting}"))
    shop.clock.set(NOW)
    run(shop, write_csv(tmp_path / "crm.csv", CRM[:1]))
    found = shop.integrator("demo")(MEMBER, {"id": "crm-1"})["member"]["coupons"]
    assert [c["source"] for c in found] == coupons
    assert event_types(shop) == ["coupon.issued"] * len(coupons) + ["members.imported"]


def test_the_command_checks_refuses_bad_files_skips_bad_rows_on_request_and_resumes(shop, tmp_path, monkeypatch):
    monkeypatch.setenv("MEMBERKIT_DATABASE_URL", shop.runtime.db.url)
    config = ["--config", shop.runtime.settings.path]
    path = write_csv(tmp_path / "crm.csv", [*CRM, {"externalId": "bad", "birthday": "15/03/1990"}])
    errors = tmp_path / "errors.csv"
    runner = CliRunner()
    dry = runner.invoke(app, ["import", "members", str(path), "--shop", "demo", "--dry-run", "--errors", str(errors),
                              *config])
    assert dry.exit_code == 1, dry.output
    assert "line 6, column birthday: not a date YYYY-MM-DD" in dry.output
    assert "5 row(s), 1 bad, 0 already member(s) of demo, 4 to import" in dry.output
    assert "15/03/1990" in errors.read_text() and count(shop, Member) == 0
    refused = runner.invoke(app, ["import", "members", str(path), "--shop", "demo", *config])
    assert refused.exit_code == 1 and "nothing imported" in refused.output and count(shop, Member) == 0
    done = runner.invoke(app, ["import", "members", str(path), "--shop", "demo", "--skip-invalid", "--batch", "2",
                               *config])
    assert done.exit_code == 0, done.output
    assert "imported 4 member(s); 0 already member(s), 1 bad row(s) skipped" in done.output
    again = runner.invoke(app, ["import", "members", str(path), "--shop", "demo", "--skip-invalid", *config])
    assert "imported 0 member(s); 4 already member(s)" in again.output and count(shop, Member) == 4
    # the corrected errors file imports as it is (its error column is ignored)
    errors.write_text(errors.read_text().replace("15/03/1990", "1990-03-15"))
    fixed = runner.invoke(app, ["import", "members", str(errors), "--shop", "demo", *config])
    assert fixed.exit_code == 0 and "imported 1 member(s)" in fixed.output, fixed.output


def test_a_referral_code_drawn_twice_in_a_batch_is_drawn_again_and_every_member_gets_one(shop, tmp_path,
                                                                                          monkeypatch):
    taken = shop.sign_up("demo", "signed-up")
    with shop.runtime.db.read() as conn:
        code = conn.execute(select(ReferralCode.code).where(ReferralCode.member_id == taken)).scalar()
    draws = iter([code] * 2)  # the batch's first codes collide with a code held already
    real = rewards.new_code
    monkeypatch.setattr(rewards, "new_code", lambda length: next(draws, None) or real(length))
    run(shop, write_csv(tmp_path / "crm.csv", CRM))
    with shop.runtime.db.read() as conn:
        codes = dict(conn.execute(select(ReferralCode.member_id, ReferralCode.code)).all())
    assert len(codes) == 5 and len(set(codes.values())) == 5 and codes[taken] == code


def test_importing_the_same_file_after_an_erasure_does_not_bring_the_member_back(shop, tmp_path):
    from memberkit.schema import erasure

    path = write_csv(tmp_path / "crm.csv", CRM)
    assert run(shop, path).imported == 4
    with shop.runtime.db.read() as conn:
        gold = conn.execute(select(Member.id).where(Member.external_id == "crm-1")).scalar_one()
    demo = shop.runtime.shop("demo")
    assert erasure.erase_member(shop.runtime, demo, None, member_id=gold, idempotency_key="e-1").errors == []
    again = run(shop, path)
    assert (again.imported, again.skipped) == (0, 4)  # three members the shop has, one it erased
    assert count(shop, Member) == 4 and count(shop, PointsEntry) == 2  # crm-1's 1,200 points not given twice
    # a sign-up with the erased externalId is still a new member (the key was released)
    assert shop.sign_up("demo", "crm-1") != gold
