"""Erasure and the data subject's export (RULES.md section 9): eraseMember anonymises a member and keeps the
books; the sign-up key is released; segments, campaigns and outbound events lose the member; a fraud hash
keeps erasure from farming sign-up rewards until it is pruned; no trace of the phone or email (plain or as
core's keyed hashes) is left in the database files; memberDataExport gives back what is held."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Text, cast, column, func, literal, select, table, text
from typer.testing import CliRunner

from memberkit.cli import app
from memberkit.core.hashing import keyed_hashes
from memberkit.core.models import Coupon, Event, Member, Order
from memberkit.plugins.webhooks import outbox
from memberkit.plugins.webhooks.models import WebhookDelivery, WebhookEvent
from memberkit.schema import erasure
from memberkit.schema.erasure import FraudHash
from tests.conftest import ROOT

DEMO = (ROOT / "plugins.toml").read_text()
PHONE, EMAIL = "13812345678", "ada.lovelace@example.com"

ERASE = """mutation($id: ID!, $key: String!) { eraseMember(memberId: $id, idempotencyKey: $key) {
  duplicate erased errors { code field message } } }"""
EXPORT = "query($id: ID!) { memberDataExport(memberId: $id) }"
MEMBER = """query($id: ID!) { member(id: $id) { id externalId birthday tags erasedAt points { balance }
  tier { code } segments coupons(status: null) { code status } } }"""
SEARCH = """query($filter: MemberFilter) { members(filter: $filter, first: 50) { totalCount
  edges { node { id } } } }"""
UPDATE = "mutation($input: UpdateMemberInput!) { updateMember(input: $input) { errors { code field } } }"
CREATE_ENDPOINT = """mutation($url: String!) { createWebhookEndpoint(input: {url: $url}) { errors { code } } }"""
CAMPAIGN = """mutation($input: IssueCouponsInput!) { issueCouponsToSegment(input: $input) {
  jobId errors { code } } }"""
SHOES = [{"sku": "SNEAKER-1", "quantity": 1, "unitPrice": 30000, "category": "shoes"}]


@pytest.fixture
def demo(memberkit):
    shop = memberkit(DEMO)
    shop.clock.set(datetime(2026, 3, 10, 4, tzinfo=UTC))
    return shop


def count(runtime, query) -> int:
    with runtime.db.read() as conn:
        return conn.execute(query).scalar_one()


def member_with_history(demo, external_id: str = "ada", **fields) -> str:
    """A member with personal data, tags, two shoe orders (a sneaker fan), a partial refund and points."""
    member_id = demo.sign_up("demo", external_id, phone=PHONE, email=EMAIL, birthday="1990-03-15",
                             tags=["vip", "north"], **fields)
    for n in (1, 2):
        assert demo.pay("demo", member_id, f"{external_id}-o{n}", 30000, lines=SHOES)["errors"] == []
    assert demo.refund("demo", f"{external_id}-o1", f"{external_id}-r1", 5000)["errors"] == []
    return member_id


def erase(demo, member_id: str, key: str = "erase-1") -> dict:
    return demo.integrator("demo")(ERASE, {"id": member_id, "key": key})["eraseMember"]


def test_erasure_removes_personal_data_and_keeps_the_books(demo):
    integrator = demo.integrator("demo")
    member_id = member_with_history(demo)
    demo.run_jobs("demo", force=True)
    before = integrator(MEMBER, {"id": member_id})["member"]
    assert before["segments"] == ["sneaker_fans"] and before["points"]["balance"] > 0
    paid = select(func.sum(Order.total - Order.refunded)).where(Order.member_id == member_id)
    orders_before = count(demo.runtime, paid)

    assert erase(demo, member_id) == {"duplicate": False, "erased": True, "errors": []}

    after = integrator(MEMBER, {"id": member_id})["member"]
    assert after["erasedAt"] == "2026-03-10T04:00:00+00:00"
    assert after["externalId"] == f"erased:{member_id}" and after["birthday"] is None and after["tags"] == []
    # the books stay: points, tier, coupons and orders as they were
    assert after["points"] == before["points"] and after["tier"] == before["tier"]
    assert after["coupons"] == before["coupons"]
    assert count(demo.runtime, paid) == orders_before == 55000
    # out of segments, the member search and campaigns
    assert after["segments"] == []
    assert integrator(SEARCH, {"filter": {"segment": "sneaker_fans"}})["members"]["totalCount"] == 0
    assert member_id not in [e["node"]["id"] for e in integrator(SEARCH, {})["members"]["edges"]]
    demo.run_jobs("demo", force=True)  # the hourly refresh and the RFM run do not bring them back
    assert integrator(MEMBER, {"id": member_id})["member"]["segments"] == []
    job = integrator(CAMPAIGN, {"input": {"segment": "sneaker_fans", "template": "WELCOME_10",
                                          "idempotencyKey": "spring"}})["issueCouponsToSegment"]
    assert job["errors"] == []
    demo.run_jobs("demo")
    assert len(integrator(MEMBER, {"id": member_id})["member"]["coupons"]) == len(before["coupons"])
    # nothing more is done for an erased member
    assert demo.pay("demo", member_id, "ada-o3", 100)["errors"][0]["code"] == "MEMBER_ERASED"
    refused = integrator(UPDATE, {"input": {"memberId": member_id, "tags": ["back"]}})["updateMember"]["errors"]
    assert refused == [{"code": "MEMBER_ERASED", "field": "memberId"}]


def test_erasure_is_idempotent_and_releases_the_sign_up_key(demo):
    member_id = member_with_history(demo)
    events = select(func.count()).select_from(Event)
    assert erase(demo, member_id)["erased"] is True
    recorded = count(demo.runtime, events)
    assert erase(demo, member_id) == {"duplicate": True, "erased": True, "errors": []}
    assert erase(demo, member_id, "erase-2") == {"duplicate": False, "erased": True, "errors": []}
    assert count(demo.runtime, events) == recorded  # a second erasure wrote nothing, not even its event
    missing = erase(demo, "mem_nope")
    assert missing["erased"] is False and missing["errors"][0]["code"] == "MEMBER_NOT_FOUND"
    # the old sign-up, retried as it was sent, is now a new member under the same externalId
    again = demo.integrator("demo")(
        "mutation($input: SignUpMemberInput!) { signUpMember(input: $input) { duplicate member { id externalId "
        "erasedAt } errors { code } } }",
        {"input": {"externalId": "ada", "phone": PHONE, "email": EMAIL, "birthday": "1990-03-15",
                   "tags": ["vip", "north"]}})["signUpMember"]
    assert again["errors"] == [] and again["duplicate"] is False
    assert again["member"]["id"] != member_id and again["member"]["externalId"] == "ada"
    assert again["member"]["erasedAt"] is None
    assert count(demo.runtime, select(func.count()).where(Member.external_id == "ada")) == 1


def test_one_member_erased_event_and_nothing_after_it(demo):
    integrator = demo.integrator("demo")
    assert integrator(CREATE_ENDPOINT, {"url": "http://127.0.0.1:9/hook"})["createWebhookEndpoint"]["errors"] == []
    member_id = member_with_history(demo)
    with demo.runtime.db.write() as conn:  # the events so far wait as deliveries, undelivered
        outbox.fan_out(conn, demo.clock.now(), ["demo"])
    mine = WebhookEvent.member_id == member_id
    assert count(demo.runtime, select(func.count()).select_from(WebhookDelivery)) > 3

    erase(demo, member_id)
    with demo.runtime.db.write() as conn:
        outbox.fan_out(conn, demo.clock.now(), ["demo"])
    demo.refund("demo", "ada-o2", "ada-r2", 30000)  # a late refund is recorded, but told to nobody

    def told() -> list[tuple[str, str]]:
        with demo.runtime.db.read() as conn:
            return conn.execute(select(WebhookEvent.type, WebhookEvent.data).where(mine)).all()

    with demo.runtime.db.read() as conn:
        deliveries = conn.execute(select(WebhookDelivery.status).join(
            WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id).where(mine)).scalars().all()
        assert conn.execute(select(Order.refunded).where(Order.order_id == "ada-o2")).scalar_one() == 30000
    assert [event_type for event_type, _ in told()] == ["member.erased"]
    assert set(json.loads(told()[0].data)) == {"cause", "settingsVersion"}  # the member's id alone, no data
    assert deliveries == ["PENDING"]  # only member.erased goes out; the earlier ones were cancelled
    with demo.runtime.db.write() as conn:  # an event written as the erasure committed (a race on PostgreSQL)
        conn.execute(WebhookEvent.__table__.insert().values(
            shop="demo", type="order.refunded", member_id=member_id, external_id=None, sequence=10_000,
            data="{}", created_at=demo.clock.now(), fanned=False))
        outbox.fan_out(conn, demo.clock.now(), ["demo"])
    assert count(demo.runtime, select(func.count()).select_from(WebhookDelivery).join(
        WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id).where(mine)) == 1  # fanned out to nobody
    balance = "query($id: ID!) { member(id: $id) { points { balance } } }"
    assert integrator(balance, {"id": member_id})["member"]["points"]["balance"] > 0
    demo.clock.advance(days=500)  # expiry, lifecycle, tier evaluation, monthly coupons: nothing told
    demo.run_jobs("demo", force=True)
    assert integrator(balance, {"id": member_id})["member"]["points"]["balance"] == 0  # the lots expired
    assert {event_type for event_type, _ in told()} <= {"member.erased"}  # (pruned after its retention)


def test_a_fraud_hash_stops_a_second_sign_up_reward_until_it_is_pruned(demo):
    referrer = demo.sign_up("demo", "referrer", phone="13900000000")
    code = demo.integrator("demo")("query($id: ID!) { member(id: $id) { referral { code } } }",
                                   {"id": referrer})["member"]["referral"]["code"]
    coupons = select(func.count()).select_from(Coupon)

    def sign_up(external_id: str, **fields) -> tuple[str, list[tuple[str, str]]]:
        payload = demo.integrator("demo")(
            "mutation($input: SignUpMemberInput!) { signUpMember(input: $input) { member { id } "
            "effects { plugin kind code } errors { code } } }",
            {"input": {"externalId": external_id, **fields}})["signUpMember"]
        assert payload["errors"] == []
        return payload["member"]["id"], [(e["plugin"], e["code"] or e["kind"]) for e in payload["effects"]]

    first, effects = sign_up("friend", phone=PHONE, email=EMAIL, referralCode=code)
    assert ("perks", "COUPON_ISSUED") in effects and ("referral", "COUPON_ISSUED") in effects
    given = count(demo.runtime, coupons)
    erase(demo, first)
    with demo.runtime.db.read() as conn:
        kept = conn.execute(select(FraudHash.hash, FraudHash.expires_at)).all()
    assert len(kept) == 3 and {c.name for c in FraudHash.__table__.c} == {"shop", "hash", "created_at", "expires_at"}
    assert not {h for h, _ in kept} & {*keyed_hashes(PHONE, "phone"), *keyed_hashes(EMAIL, "email")}  # own key
    assert {e.date() for _, e in kept} == {datetime(2028, 3, 10).date()}  # 730 whole days after the erasure's day
    with demo.runtime.db.read() as conn:  # kept by the day: no timestamp to join back to the member's erased_at
        made = conn.execute(select(FraudHash.created_at)).scalars().all()
    assert {moment.isoformat() for moment in made} == {"2026-03-10T00:00:00+00:00"}

    # the same phone, the same code, a new externalId (or the old one): no second gift, no second reward
    again, effects = sign_up("friend", phone="+86 138-1234-5678".replace("+86 ", ""), referralCode=code)
    assert ("perks", "SEEN_BEFORE") in effects and ("referral", "SEEN_BEFORE") in effects
    assert count(demo.runtime, coupons) == given
    third, effects = sign_up("friend-email", email=EMAIL.upper())
    assert ("perks", "SEEN_BEFORE") in effects and count(demo.runtime, coupons) == given

    demo.clock.advance(days=731)
    assert demo.run_jobs("demo", force=True)["core.prune_fraud_hashes"].result == "3 fraud hash(es) pruned"
    assert count(demo.runtime, select(func.count()).select_from(FraudHash)) == 0
    erase(demo, third)  # (its email was the erased one's too: the hash comes back for the new erasure)
    demo.clock.advance(days=731)
    demo.run_jobs("demo", force=True)
    _, effects = sign_up("friend-later", email=EMAIL)
    assert ("perks", "COUPON_ISSUED") in effects


def test_member_data_export_gives_back_what_is_held(demo, monkeypatch):
    """Core's profile, coupons and orders, and each plugin's part (its member_data hook) under its name."""
    integrator = demo.integrator("demo")
    member_id = member_with_history(demo)
    demo.run_jobs("demo", force=True)
    data = json.loads(integrator(EXPORT, {"id": member_id})["memberDataExport"])
    profile = data["profile"]
    assert (profile["external_id"], profile["birthday"], profile["tags"]) == ("ada", "1990-03-15", ["vip", "north"])
    assert profile["phoneHashHeld"] is True and profile["emailHashHeld"] is True
    assert [o["order_id"] for o in data["orders"]["items"]] == ["ada-o2", "ada-o1"]
    assert data["orders"]["items"][1]["refunded"] == 5000
    assert {c["code"] for c in data["coupons"]["items"]} == {
        c["code"] for c in integrator(MEMBER, {"id": member_id})["member"]["coupons"]}
    balance = sum(e["delta"] for e in data["points"]["points_entry"]["items"])
    assert balance == integrator(MEMBER, {"id": member_id})["member"]["points"]["balance"]
    assert data["points"]["points_lot"]["items"]
    assert data["tiering"]["tiering_history"]["items"][0]["to_code"] == "SILVER"
    assert data["segments"]["segments_member"]["items"][0]["segment"] == "sneaker_fans"
    assert data["segments"]["segments_lifecycle"]["items"][0]["stage"] == "ACTIVE"
    assert data["referral"]["referral_code"]["items"][0]["code"]
    assert {e["type"] for e in data["webhooks"]["events"]["items"]} >= {"member.signed_up", "order.paid"}
    assert {mark["member_id"] for mark in data["kpis"]["kpis_active"]["items"]} == {member_id}  # when they ordered
    text_of_export = json.dumps(data)
    assert PHONE not in text_of_export and not any(h in text_of_export for h in keyed_hashes(PHONE, "phone"))
    # every list has a stated limit: the newest rows, and `truncated` says it cut
    monkeypatch.setattr(erasure, "EXPORT_ROWS", 1)
    cut = json.loads(integrator(EXPORT, {"id": member_id})["memberDataExport"])
    assert cut["orders"] == {"items": [data["orders"]["items"][0]], "truncated": True}
    erase(demo, member_id)
    gone = json.loads(integrator(EXPORT, {"id": member_id})["memberDataExport"])
    assert gone["profile"]["erased_at"] and gone["profile"]["birthday"] is None
    assert gone["profile"]["phoneHashHeld"] is False and "segments_member" in gone["segments"]
    assert gone["segments"]["segments_member"]["items"] == [] and gone["referral"]["referral_code"]["items"] == []
    assert integrator(EXPORT, {"id": "mem_nope"})["memberDataExport"] is None


def test_only_the_secret_key_erases_or_exports(demo):
    member_id = demo.sign_up("demo", "ada", phone=PHONE)
    for client in (demo.storefront("demo"), demo.member("demo", member_id)):
        assert client.errors(ERASE, {"id": member_id, "key": "k"})
        assert client.errors(EXPORT, {"id": member_id})
    token = demo.member("demo", member_id)
    erase(demo, member_id)
    assert demo.integrator("demo")(MEMBER, {"id": member_id})["member"]["erasedAt"]
    assert token.errors("{ me { id } }")  # the erased member's tokens stop working


def test_the_cli_erases_a_member(demo, monkeypatch, tmp_path):
    member_id = demo.sign_up("demo", "ada", phone=PHONE)
    config = tmp_path / "plugins.toml"
    config.write_text(DEMO)
    monkeypatch.setenv("MEMBERKIT_DATABASE_URL", demo.runtime.db.url)
    result = CliRunner().invoke(app, ["members", "erase", "--shop", "demo", "--member", member_id, "--yes",
                                      "--config", str(config)])
    assert result.exit_code == 0 and f"member {member_id} erased" in result.output, result.output
    missing = CliRunner().invoke(app, ["members", "erase", "--shop", "demo", "--member", "mem_nope", "--yes",
                                       "--config", str(config)])
    assert missing.exit_code == 1 and "MEMBER_NOT_FOUND" in missing.output


def needles() -> list[str]:
    """The member's phone and email in plain text and as every form of core's keyed hash (the 55 hex digits
    a versioned hash keeps are a prefix of the plain digest, so they find both)."""
    found = [PHONE, EMAIL]
    for value, kind in ((PHONE, "phone"), (EMAIL, "email")):
        found += [form.split(":")[-1][:55] for form in keyed_hashes(value, kind)]
    return found


def test_no_trace_of_the_phone_or_email_is_left_in_the_database(demo):
    """The member_erased hook, secure_delete and the WAL checkpoint: after erasure the database files (SQLite)
    or every text and JSON column (PostgreSQL) hold neither the phone, the email nor their keyed hashes."""
    member_id = member_with_history(demo)
    demo.sign_up("demo", "someone-else", phone="13900000000")
    runtime = demo.runtime
    if runtime.db.is_sqlite:
        main = Path(runtime.db.engine.url.database)
        files = [main, *(main.with_name(main.name + suffix) for suffix in ("-wal", "-shm", "-journal"))]
        assert any(needle.encode() in b"".join(p.read_bytes() for p in files if p.exists())
                   for needle in needles())  # the scan finds them before erasure
        erase(demo, member_id)
        held = b"".join(p.read_bytes() for p in files if p.exists())
        assert [n for n in needles() if n.encode() in held] == []
        with runtime.db.read() as conn:
            assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
        return
    with runtime.db.read() as conn:
        columns = conn.execute(text(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND data_type IN ('text', 'character varying', 'json', 'jsonb')")).all()

    def found() -> list[str]:
        with runtime.db.read() as conn:
            return [f"{t}.{c}: {n[:12]}" for t, c in columns for n in needles() if conn.execute(
                select(literal(1)).select_from(table(t)).where(cast(column(c), Text).contains(n)).limit(1)).first()]
    assert found()  # the scan finds them before erasure
    erase(demo, member_id)
    assert found() == []


def test_an_erased_member_gets_no_new_referral_code_and_no_tags(demo):
    member = demo.sign_up("demo", "user-1", phone=PHONE)
    erase(demo, member)
    demo.clock.advance(hours=2)
    demo.run_jobs("demo", force=True)  # referral's job gives codes to members without one: not the erased
    assert demo.integrator("demo")("query($id: ID!) { member(id: $id) { referral { code } } }",
                                   {"id": member})["member"]["referral"] is None
    tagged = demo.integrator("demo")(
        "mutation($input: TagMembersInput!) { tagMembers(input: $input) { changed errors { code field } } }",
        {"input": {"memberIds": [member], "add": ["vip"], "idempotencyKey": "tag-1"}})["tagMembers"]
    assert tagged == {"changed": 0, "errors": [{"code": "MEMBER_ERASED", "field": "memberIds"}]}
    with demo.runtime.db.read() as conn:
        assert conn.execute(select(Member.tags).where(Member.id == member)).scalar_one() == []
