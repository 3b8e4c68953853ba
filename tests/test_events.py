"""The four core events over GraphQL: stored once, retried safely, refused cleanly."""

from __future__ import annotations

from sqlalchemy import func, select

from memberkit.core.models import Event, Member, MemberPersonal, Order
from tests.conftest import MEMBER, ORDER_PAID, ORDER_REFUNDED, SIGN_UP, sign_up


def count(runtime, model) -> int:
    with runtime.db.read() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar()


def test_sign_up_then_read_back(api, runtime):
    key = api.key("alpha")
    payload = api(SIGN_UP, {"input": {"externalId": "u-1", "phone": "+86 138 0000 0000", "birthday": "1990-02-28",
                                      "tags": ["sneaker fan"]}}, key)["signUpMember"]
    assert payload["errors"] == [] and payload["duplicate"] is False
    member = api(MEMBER, {"externalId": "u-1"}, key)["member"]
    assert member["id"] == payload["member"]["id"]
    assert member["birthday"] == "1990-02-28" and member["tags"] == ["sneaker fan"]
    with runtime.db.read() as conn:
        personal = conn.execute(select(MemberPersonal)).one()
    assert personal.phone_hash and "138" not in personal.phone_hash  # a keyed hash, not the number


def test_sign_up_retry_is_a_duplicate_and_conflict_is_refused(api, runtime):
    key = api.key("alpha")
    first = api(SIGN_UP, {"input": {"externalId": "u-1", "email": "a@example.com"}}, key)["signUpMember"]
    again = api(SIGN_UP, {"input": {"externalId": "u-1", "email": "a@example.com"}}, key)["signUpMember"]
    assert again["duplicate"] is True and again["member"]["id"] == first["member"]["id"]
    other = api(SIGN_UP, {"input": {"externalId": "u-1", "email": "b@example.com"}}, key)["signUpMember"]
    assert other["member"] is None and other["errors"][0]["code"] == "IDEMPOTENCY_CONFLICT"
    assert count(runtime, Member) == 1 and count(runtime, Event) == 1


def test_sign_up_bad_input_writes_nothing(api, runtime):
    key = api.key("alpha")
    cases = [
        ({"externalId": "  "}, "INVALID_KEY", "externalId"),
        ({"externalId": "u", "phone": "call me"}, "INVALID_PHONE", "phone"),
        ({"externalId": "u", "email": "nope"}, "INVALID_EMAIL", "email"),
        ({"externalId": "u", "birthday": "2999-01-01"}, "INVALID_BIRTHDAY", "birthday"),
        ({"externalId": "u", "joinedAt": "2026-01-01T10:00:00"}, "TIMESTAMP_WITHOUT_OFFSET", "joinedAt"),
    ]
    for fields, code, field in cases:
        payload = api(SIGN_UP, {"input": fields}, key)["signUpMember"]
        assert [(e["code"], e["field"]) for e in payload["errors"]] == [(code, field)], payload
    assert count(runtime, Member) == 0 and count(runtime, Event) == 0


def test_order_paid_is_recorded_once(api, runtime):
    key = api.key("alpha")
    member_id = sign_up(api, key, "u-1")
    order = {"orderId": "o-1", "memberId": member_id, "total": 9900, "paidAt": "2026-11-23T20:00:00+08:00",
             "lines": [{"sku": "A", "quantity": 1, "unitPrice": 9900, "category": "shoes"}]}
    first = api(ORDER_PAID, {"input": order}, key)["recordOrderPaid"]
    assert first["errors"] == [] and first["duplicate"] is False and first["member"]["id"] == member_id
    again = api(ORDER_PAID, {"input": order}, key)["recordOrderPaid"]
    assert again["duplicate"] is True and again["effects"] == first["effects"]
    changed = api(ORDER_PAID, {"input": {**order, "total": 100}}, key)["recordOrderPaid"]
    assert changed["errors"][0]["code"] == "IDEMPOTENCY_CONFLICT"
    with runtime.db.read() as conn:
        stored = conn.execute(select(Order)).one()
        event = conn.execute(select(Event).where(Event.kind == "order_paid")).one()
    assert stored.total == 9900 and stored.paid_at.isoformat() == "2026-11-23T12:00:00+00:00"
    assert event.settings_version == runtime.shop("alpha").version and event.api_key_id
    assert "9900" not in event.payload_hash


def test_order_paid_refusals_write_nothing(api, runtime):
    key = api.key("alpha")
    member_id = sign_up(api, key, "u-1")
    base = {"orderId": "o-1", "memberId": member_id, "total": 1000}
    cases = [
        ({"total": -1}, "NEGATIVE_AMOUNT", "total"),
        ({"pointsRedeemed": -5}, "NEGATIVE_AMOUNT", "pointsRedeemed"),
        ({"lines": [{"sku": "A", "quantity": 1, "unitPrice": 500}]}, "TOTAL_EXCEEDS_LINES", "total"),
        ({"lines": [{"sku": "A", "quantity": 0, "unitPrice": 5000}]}, "INVALID_LINE", "lines[0].quantity"),
        ({"lines": [{"sku": "A", "quantity": 1, "unitPrice": -1}]}, "NEGATIVE_AMOUNT", "lines[0].unitPrice"),
        ({"paidAt": "2026-11-23T20:00:00"}, "TIMESTAMP_WITHOUT_OFFSET", "paidAt"),
        ({"memberId": "mem_nope"}, "MEMBER_NOT_FOUND", "memberId"),
        ({"couponCodes": ["A", "a"]}, "INVALID_COUPON_CODES", "couponCodes"),
    ]
    for change, code, field in cases:
        payload = api(ORDER_PAID, {"input": {**base, **change}}, key)["recordOrderPaid"]
        assert [(e["code"], e["field"]) for e in payload["errors"]] == [(code, field)], (change, payload)
    assert count(runtime, Order) == 0 and count(runtime, Event) == 1  # the sign-up only
    # A value the schema's types reject never reaches memberkit: a GraphQL error.
    errors = api.errors(ORDER_PAID, {"input": {**base, "total": "ten"}}, key)
    assert errors[0]["message"].startswith("Variable '$input' has invalid value at .total")


def test_refunds_are_checked_against_the_order(api, runtime):
    key = api.key("alpha")
    member_id = sign_up(api, key, "u-1")
    api(ORDER_PAID, {"input": {"orderId": "o-1", "memberId": member_id, "total": 1000}}, key)
    refund = {"orderId": "o-1", "refundId": "r-1", "amount": 600}
    first = api(ORDER_REFUNDED, {"input": refund}, key)["recordOrderRefunded"]
    assert first["errors"] == [] and first["member"]["id"] == member_id
    assert api(ORDER_REFUNDED, {"input": refund}, key)["recordOrderRefunded"]["duplicate"] is True
    too_much = api(ORDER_REFUNDED, {"input": {**refund, "refundId": "r-2", "amount": 401}}, key)["recordOrderRefunded"]
    assert too_much["errors"][0]["code"] == "REFUND_EXCEEDS_ORDER"
    for change, code in [({"orderId": "nope"}, "ORDER_NOT_FOUND"), ({"amount": 0}, "INVALID_AMOUNT"),
                         ({"refundedAt": "2026-11-23T20:00:00"}, "TIMESTAMP_WITHOUT_OFFSET")]:
        payload = api(ORDER_REFUNDED, {"input": {**refund, "refundId": "r-3", **change}}, key)["recordOrderRefunded"]
        assert payload["errors"][0]["code"] == code
    rest = api(ORDER_REFUNDED, {"input": {**refund, "refundId": "r-4", "amount": 400}}, key)["recordOrderRefunded"]
    assert rest["errors"] == []
    with runtime.db.read() as conn:
        assert conn.execute(select(Order.refunded)).scalar() == 1000


def test_update_member(api, runtime):
    key = api.key("alpha")
    member_id = sign_up(api, key, "u-1", birthday="1990-05-01")
    query = """mutation($input: UpdateMemberInput!) { updateMember(input: $input) {
        member { birthday tags } errors { code field } } }"""
    payload = api(query, {"input": {"memberId": member_id, "birthday": "1991-06-02", "tags": ["vip", "vip"]}}, key)
    assert payload["updateMember"] == {"member": {"birthday": "1991-06-02", "tags": ["vip"]}, "errors": []}
    missing = api(query, {"input": {"memberId": "mem_nope", "tags": []}}, key)["updateMember"]
    assert missing["errors"] == [{"code": "MEMBER_NOT_FOUND", "field": "memberId"}]


def test_a_retry_spelt_differently_is_still_a_duplicate(api, runtime):
    key = api.key("alpha")
    member_id = sign_up(api, key, "u-1")
    order = {"orderId": "o-1", "memberId": member_id, "total": 500, "paidAt": "2026-11-23T20:00:00+08:00"}
    assert api(ORDER_PAID, {"input": order}, key)["recordOrderPaid"]["duplicate"] is False
    same = {**order, "orderId": " o-1 ", "paidAt": "2026-11-23T12:00:00Z"}  # the same instant, in UTC
    assert api(ORDER_PAID, {"input": same}, key)["recordOrderPaid"]["duplicate"] is True
    assert count(runtime, Order) == 1
