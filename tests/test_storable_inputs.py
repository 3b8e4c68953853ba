"""Inputs that cannot be stored are refused, the same on both databases (issue 11 point 7): control characters
in identifiers, timestamps outside the documented window, refunds dated before their order; points expire
counting from the order's paidAt."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from memberkit.core.models import Event, Member, Order
from memberkit.plugins.points.models import PointsLot
from tests.conftest import ROOT

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SIGN_UP = "mutation($input: SignUpMemberInput!) { signUpMember(input: $input) { errors { code field message } } }"
MEMBER = "query($id: ID!) { member(id: $id) { id } }"


@pytest.fixture
def demo(memberkit):
    programme = memberkit((ROOT / "plugins.toml").read_text())
    programme.clock.set(NOW)
    return programme


def events(programme) -> int:
    with programme.runtime.db.read() as conn:
        return conn.execute(select(func.count()).select_from(Event)).scalar()


@pytest.mark.parametrize("character", ["\x01", "\x1f", "\x7f", "\n"])
def test_control_characters_in_an_identifier_are_refused_naming_the_field(demo, character):
    integrator = demo.integrator("demo")
    payload = integrator(SIGN_UP, {"input": {"externalId": f"u{character}1"}})["signUpMember"]
    assert [(e["code"], e["field"]) for e in payload["errors"]] == [("INVALID_CHARACTER", "externalId")]
    assert f"U+{ord(character):04X}" in payload["errors"][0]["message"]
    member_id = demo.sign_up("demo", "u-1")
    paid = demo.pay("demo", member_id, f"o{character}1", 100)
    assert [(e["code"], e["field"]) for e in paid["errors"]] == [("INVALID_CHARACTER", "orderId")]
    with demo.runtime.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(Order)).scalar() == 0


def test_nul_anywhere_in_a_request_is_a_400_and_writes_nothing(demo):
    key = demo._key("demo", "secret")
    before = events(demo)
    for body in ({"query": SIGN_UP, "variables": {"input": {"externalId": "u\x001"}}},
                 {"query": MEMBER, "variables": {"id": "mem\x00"}},
                 {"query": 'mutation { signUpMember(input: {externalId: "u\\u00001"}) { errors { code } } }'}):
        response = demo.api.client.post("/graphql", content=json.dumps(body), headers={
            "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        assert response.status_code == 400 and "NUL" in response.text, response.text
    assert events(demo) == before
    with demo.runtime.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(Member)).scalar() == 0


@pytest.mark.parametrize(("field", "moment"), [
    ("paidAt", "0001-01-01T00:00:00+00:00"),
    ("paidAt", "9999-12-31T23:59:59+00:00"),
    ("paidAt", "1999-12-31T23:59:59+00:00"),
    ("paidAt", (NOW + timedelta(minutes=6)).isoformat()),
])
def test_a_payment_outside_the_window_is_refused(demo, field, moment):
    member_id = demo.sign_up("demo", "u-1")
    paid = demo.pay("demo", member_id, "o-1", 100, **{field: moment})
    assert [(e["code"], e["field"]) for e in paid["errors"]] == [("TIMESTAMP_OUT_OF_RANGE", field)]
    assert "expected from 2000-01-01" in paid["errors"][0]["message"]
    joined = demo.integrator("demo")(SIGN_UP, {"input": {"externalId": "u-2", "joinedAt": moment}})
    assert [e["code"] for e in joined["signUpMember"]["errors"]] == ["TIMESTAMP_OUT_OF_RANGE"]


def test_a_late_report_and_a_clock_a_little_fast_are_accepted(demo):
    member_id = demo.sign_up("demo", "u-1")
    assert demo.pay("demo", member_id, "o-1", 100, paidAt="2001-05-01T08:00:00+08:00")["errors"] == []
    assert demo.pay("demo", member_id, "o-2", 100, paidAt=(NOW + timedelta(minutes=4)).isoformat())["errors"] == []


def test_a_refund_dated_before_its_payment_is_refused(demo):
    member_id = demo.sign_up("demo", "u-1")
    assert demo.pay("demo", member_id, "o-1", 10_000, paidAt="2026-11-19T10:00:00+08:00")["errors"] == []
    early = demo.refund("demo", "o-1", "r-1", 100, refundedAt="2026-11-19T09:59:59+08:00")
    assert [(e["code"], e["field"]) for e in early["errors"]] == [("REFUND_BEFORE_PAYMENT", "refundedAt")]
    assert demo.refund("demo", "o-1", "r-1", 100, refundedAt="2026-11-19T10:00:00+08:00")["errors"] == []


def test_points_expire_counting_from_the_orders_paid_at(demo):
    """Paid 2025-10-03 and reported now: the demo's points last to the end of the 12th month after the month of
    earning (RULES.md 3.4), so they expire at the start of 2026-11 (shop time), already past."""
    member_id = demo.sign_up("demo", "u-1")
    assert demo.pay("demo", member_id, "o-1", 10_000, paidAt="2025-10-03T10:00:00+08:00")["errors"] == []
    with demo.runtime.db.read() as conn:
        expiries = conn.execute(select(PointsLot.expires_at).where(PointsLot.member_id == member_id)).scalars().all()
    assert expiries and all(when == datetime(2026, 10, 31, 16, 0, tzinfo=UTC) for when in expiries)
    points = demo.integrator("demo")("query($id: ID!) { member(id: $id) { points { balance } } }",
                                     {"id": member_id})["member"]["points"]
    assert points["balance"] == 0
