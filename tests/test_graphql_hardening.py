"""Production GraphQL per the OWASP cheat sheet (issue 11 point 6): introspection only with the secret key,
no suggestions, a depth limit that holds for introspection too, and no guessing which operation to run."""

from __future__ import annotations

import pytest
from graphql import get_introspection_query

from tests.conftest import ROOT

INTROSPECTION = "{ __schema { queryType { name } } }"


@pytest.fixture
def demo(memberkit):
    programme = memberkit((ROOT / "plugins.toml").read_text())
    member_id = programme.sign_up("demo", "u-1")
    return programme, member_id


def test_introspection_needs_the_secret_key(demo):
    programme, member_id = demo
    assert programme.integrator("demo")(INTROSPECTION)["__schema"]["queryType"]["name"] == "Query"
    full = programme.integrator("demo")(get_introspection_query(descriptions=True))  # what code generators send
    assert any(t["name"] == "Member" for t in full["__schema"]["types"])
    for client in (programme.storefront("demo"), programme.member("demo", member_id)):
        errors = client.errors(INTROSPECTION)
        assert "introspection" in errors[0]["message"].lower()
        assert "introspection" in client.errors('{ __type(name: "Member") { name } }')[0]["message"].lower()
        assert client("{ __typename }") == {"__typename": "Query"}


def test_introspection_is_open_in_development(memberkit, make_api):
    programme = memberkit((ROOT / "plugins.toml").read_text())
    api = make_api(programme.runtime, development=True)
    key = api.key("demo", "publishable")
    assert api(INTROSPECTION, key=key)["__schema"]["queryType"]["name"] == "Query"
    assert "Did you mean" in api.errors("{ shop { slugg } }", key=key)[0]["message"]


def test_no_suggestions_outside_development(demo):
    programme, _ = demo
    for client in (programme.integrator("demo"), programme.storefront("demo")):
        message = client.errors("{ shop { slugg } }")[0]["message"]
        assert message == "Cannot query field 'slugg' on type 'Shop'."
    errors = programme.integrator("demo").errors("query($s: CouponStatus) { shop { slug } }", {"s": "AVAILABL"})
    assert "Did you mean" not in errors[0]["message"]


def nested(depth: int) -> str:
    query = "name"
    for _ in range(depth - 1):
        query = f"ofType {{ {query} }}"
    return f"{{ __schema {{ types {{ fields {{ type {{ {query} }} }} }} }} }}"


def test_the_depth_limit_holds_for_introspection(demo):
    programme, _ = demo
    integrator = programme.integrator("demo")
    assert integrator(nested(12))  # __schema types fields type + 11 ofType: 15 levels
    errors = integrator.errors(nested(13))
    assert errors[0]["message"] == "'__schema' nests 16 levels deep: at most 15 allowed"
    # fragments count where they are spread: 4 levels, k ofType, then the fragment's 6
    six = "fragment Six on __Type { " + "ofType { " * 6 + "name" + " }" * 6 + " }"

    def through_fragment(k: int) -> str:
        inner = "ofType { " * k + "...Six" + " }" * k
        return f"{{ __schema {{ types {{ fields {{ type {{ {inner} }} }} }} }} }} {six}"
    assert integrator(through_fragment(5))
    errors = integrator.errors(through_fragment(6))
    assert errors[0]["message"] == "'__schema' nests 16 levels deep: at most 15 allowed"


def test_several_operations_need_an_operation_name(demo):
    programme, _ = demo
    client = programme.integrator("demo")
    document = "query A { shop { slug } } query B { shop { name } }"
    errors = client.errors(document)
    assert errors[0]["message"] == "the document has several operations: name the one to run in operationName"
    response = programme.api.client.post("/graphql", json={"query": document, "operationName": "B"},
                                         headers={"Authorization": f"Bearer {client.key}"})
    assert set(response.json()["data"]["shop"]) == {"name"}


def test_a_fragment_cycle_is_reported_as_one(demo):
    programme, _ = demo
    errors = programme.integrator("demo").errors(
        "{ shop { ...A } } fragment A on Shop { ...B } fragment B on Shop { ...A }")
    assert any("Cannot spread fragment 'A' within itself" in e["message"] for e in errors), errors
