"""Every list and body has a limit (issue 11 point 3): a longer list is refused before anything runs, with
a code that names the field and the limit; an oversized body is 413, malformed JSON 400; no SQL parameter
reaches the log."""

from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy import func, select

from memberkit.core.models import Event, Order
from memberkit.server import MAX_BODY_BYTES
from tests.conftest import ORDER_PAID, ROOT

QUOTE = "query($input: CartInput!) { quoteCart(input: $input) { total { amount } } }"
START = "mutation($input: CheckoutInput!) { startCheckout(input: $input) { checkout { id } errors { code } } }"
SIGN_UP = "mutation($input: SignUpMemberInput!) { signUpMember(input: $input) { errors { code } } }"
ACCESS = "query($skus: [String!]!) { productAccess(skus: $skus) { sku } }"
LINE = {"sku": "TEE", "quantity": 1, "unitPrice": 100}


@pytest.fixture
def demo(memberkit):
    programme = memberkit((ROOT / "plugins.toml").read_text())
    member_id = programme.sign_up("demo", "u-1")
    return programme, member_id


def refusal(errors: list[dict]) -> dict:
    assert len(errors) == 1, errors
    return errors[0]["extensions"]


@pytest.mark.parametrize(("operation", "name", "field", "limit", "values"), [
    ("quote", "couponCodes", "couponCodes", 20, [f"C{i}" for i in range(70_000)]),
    ("start", "couponCodes", "couponCodes", 20, [f"C{i}" for i in range(21)]),
    ("quote", "lines", "lines", 500, [LINE] * 501),
    ("quote", "reservationIds", "reservationIds", 50, [f"r{i}" for i in range(51)]),
])
def test_a_member_tokens_long_cart_list_is_refused_naming_the_field_and_the_limit(
        demo, operation, name, field, limit, values):
    programme, member_id = demo
    member = programme.member("demo", member_id)
    cart = {"lines": [LINE], name: values}
    if operation == "quote":
        found = refusal(member.errors(QUOTE, {"input": cart}))
    else:
        found = refusal(member.errors(START, {"input": {**cart, "idempotencyKey": "k-1"}}))
    assert found == {"code": "TOO_MANY_ITEMS", "field": field, "limit": limit}
    with programme.runtime.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(Event)).scalar() == 1  # the sign-up alone


def test_a_list_at_its_limit_is_accepted(demo):
    programme, member_id = demo
    member = programme.member("demo", member_id)
    quote = member("query($input: CartInput!) { quoteCart(input: $input) { lines { sku } } }",
                   {"input": {"lines": [LINE] * 500}})["quoteCart"]
    assert len(quote["lines"]) == 500


def test_an_order_of_too_many_lines_is_refused_and_not_recorded(demo):
    programme, member_id = demo
    integrator = programme.integrator("demo")
    order = {"orderId": "o-1", "memberId": member_id, "total": 100, "lines": [LINE] * 50_000}
    assert refusal(integrator.errors(ORDER_PAID, {"input": order})) == {"code": "BODY_TOO_LARGE"}
    order["lines"] = [LINE] * 501
    assert refusal(integrator.errors(ORDER_PAID, {"input": order})) == {
        "code": "TOO_MANY_ITEMS", "field": "lines", "limit": 500}
    tags = refusal(integrator.errors(SIGN_UP, {"input": {"externalId": "u-2", "tags": ["t"] * 51}}))
    assert tags == {"code": "TOO_MANY_ITEMS", "field": "tags", "limit": 50}
    with programme.runtime.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(Order)).scalar() == 0
    assert programme.pay("demo", member_id, "o-1", 100, lines=[LINE])["errors"] == []


def test_product_access_takes_at_most_100_skus(demo):
    programme, _ = demo
    storefront = programme.storefront("demo")
    assert refusal(storefront.errors(ACCESS, {"skus": ["s"] * 101})) == {
        "code": "TOO_MANY_ITEMS", "field": "skus", "limit": 100}
    assert len(storefront(ACCESS, {"skus": ["s"] * 100})["productAccess"]) == 100


def test_the_schema_states_each_lists_limit(demo):
    programme, _ = demo
    sdl = programme.integrator("demo")("{ __schema { types { name inputFields { name description } } } }")
    fields = {(t["name"], f["name"]): f["description"] for t in sdl["__schema"]["types"]
              for f in t["inputFields"] or []}
    assert fields["CartInput", "couponCodes"] == "At most 20."
    assert fields["OrderPaidInput", "lines"] == "At most 500."


def raw(programme, body: bytes, key: str, **headers: str):
    return programme.api.client.post("/graphql", content=body, headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json", **headers})


def test_a_body_over_the_limit_is_413_whether_declared_or_streamed(demo):
    programme, _ = demo
    key = programme._key("demo", "secret")
    big = json.dumps({"query": "{ shop { slug } }", "variables": {"x": "a" * MAX_BODY_BYTES}}).encode()
    response = raw(programme, big, key)
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "BODY_TOO_LARGE"

    def chunks():  # no Content-Length: the server counts as it reads
        for start in range(0, len(big), 65536):
            yield big[start:start + 65536]
    assert raw(programme, chunks(), key).status_code == 413
    small = json.dumps({"query": "{ shop { slug } }"}).encode()
    assert raw(programme, small, key).json() == {"data": {"shop": {"slug": "demo"}}}


@pytest.mark.parametrize("body", [b"{not json", b"[" * 50_000 + b"]" * 50_000, b'{"query": '])
def test_malformed_json_is_400(demo, body):
    programme, _ = demo
    response = raw(programme, body, programme._key("demo", "secret"))
    assert response.status_code == 400, response.text


def test_a_failing_statement_logs_no_parameter(demo, caplog, monkeypatch):
    """An internal error is logged with its traceback, but SQLAlchemy's message quotes no bound value."""
    programme, member_id = demo
    from memberkit.core import orders

    secret = "-".join(("SECRET", "PARAMETER"))  # not in the source line the traceback quotes

    def broken(*args, **kwargs):
        with programme.runtime.db.write() as conn:
            conn.execute(select(Order).where(Order.order_id == secret, func.bogus_fn(1) == 1))
    monkeypatch.setattr(orders, "record_order_paid", broken)
    caplog.set_level(logging.ERROR)
    errors = programme.integrator("demo").errors(ORDER_PAID, {"input": {
        "orderId": "o-9", "memberId": member_id, "total": 1}})
    assert errors[0]["message"] == "Internal server error"
    assert "bogus_fn" in caplog.text and secret not in caplog.text


def test_a_wallet_read_returns_at_most_first_coupons(demo):
    programme, member_id = demo
    integrator = programme.integrator("demo")
    read = "query($id: ID!, $first: Int) { member(id: $id) { coupons(status: null, first: $first) { code } } }"
    everything = integrator(read, {"id": member_id, "first": 500})["member"]["coupons"]
    assert everything and len(integrator(read, {"id": member_id, "first": 1})["member"]["coupons"]) == 1
    assert integrator.errors(read, {"id": member_id, "first": 501})[0]["message"] == \
        "coupons: first is 501: expected 0 to 500"
