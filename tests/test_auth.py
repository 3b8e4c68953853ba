"""Who may call what: shop keys and the CLI that makes them, member tokens and their rotation, one shop
never reaching another, the one 401 for every bad credential, masked errors, query limits, quiet logs."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from memberkit import cli
from memberkit.core import clock
from memberkit.core.models import Coupon, Event, Member, MemberPersonal, Order
from memberkit.schema import auth
from memberkit.schema import member as schema_member
from memberkit.schema.auth import ApiKey
from tests.conftest import MEMBER, ORDER_PAID, ORDER_REFUNDED, SIGN_UP, sign_up

UNAUTHENTICATED = {"errors": [{"message": "authentication required",
                               "extensions": {"code": "UNAUTHENTICATED"}}]}
SHOP = "{ shop { slug } }"
ME = "{ me { id externalId } }"
UPDATE_MEMBER = """
mutation($input: UpdateMemberInput!) {
  updateMember(input: $input) { member { id } errors { code field } }
}"""
MINT = """
mutation($memberId: ID!, $ttl: Int) {
  createMemberToken(memberId: $memberId, ttlSeconds: $ttl) { token expiresAt errors { code field } }
}"""


# ---------------------------------------------------------------- helpers


def memberkit(runtime, *args: str):
    """Run the `memberkit` command on the runtime's settings file and database."""
    env = {"MEMBERKIT_CONFIG": runtime.settings.path, "MEMBERKIT_DATABASE_URL": runtime.db.url}
    return CliRunner().invoke(cli.app, list(args), env=env)


def stored_key(runtime, key: str) -> ApiKey:
    with runtime.db.read() as conn:
        digest = hashlib.sha256(key.encode()).hexdigest()
        row = conn.execute(select(ApiKey).where(ApiKey.key_hash == digest)).one()
    return ApiKey.model_validate(row._mapping)


def database_rows(runtime) -> dict[str, list[tuple]]:
    """Every row an operation could write, to show that a refused one wrote nothing."""
    with runtime.db.read() as conn:
        return {model.__tablename__: sorted(map(tuple, conn.execute(select(model)).all()), key=repr)
                for model in (Member, MemberPersonal, Event, Order, Coupon)}


def mint(api, key: str, member_id: str, ttl: int = 3600) -> str:
    payload = api(MINT, {"memberId": member_id, "ttl": ttl}, key)["createMemberToken"]
    assert payload["errors"] == [] and payload["token"].startswith("mkt_"), payload
    return payload["token"]


def tampered(token: str, **claims) -> str:
    """The token with some claims changed and its signature kept."""
    body, signature = token.removeprefix("mkt_").split(".")
    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    body = base64.urlsafe_b64encode(json.dumps({**data, **claims}, separators=(",", ":")).encode())
    return f"mkt_{body.rstrip(b'=').decode()}.{signature}"


def codes(payload: dict) -> list[str]:
    return [error["code"] for error in payload["errors"]]


def error_codes(errors: list[dict]) -> list[str | None]:
    return [error.get("extensions", {}).get("code") for error in errors]


def seed(api) -> tuple[str, str]:
    """Shop alpha's secret key and a member of alpha with one paid order, o-1."""
    key = api.key("alpha")
    member_id = sign_up(api, key, "u-1")
    assert api(ORDER_PAID, {"input": {"orderId": "o-1", "memberId": member_id, "total": 1000}}, key)
    return key, member_id


def integrator_calls(member_id: str) -> dict[str, tuple[str, dict]]:
    """Each integrator operation, with input that the seeded shop's secret key gets accepted."""
    return {
        "member": (MEMBER, {"id": member_id}),
        "signUpMember": (SIGN_UP, {"input": {"externalId": "u-new"}}),
        "updateMember": (UPDATE_MEMBER, {"input": {"memberId": member_id, "tags": ["vip"]}}),
        "recordOrderPaid": (ORDER_PAID, {"input": {"orderId": "o-2", "memberId": member_id, "total": 500}}),
        "recordOrderRefunded": (ORDER_REFUNDED,
                                {"input": {"orderId": "o-1", "refundId": "r-1", "amount": 100}}),
        "createMemberToken": (MINT, {"memberId": member_id}),
    }


@pytest.fixture
def token_secrets(monkeypatch):
    """Set MEMBERKIT_TOKEN_SECRETS (newest first), as a rotation would, and make the server re-read it."""

    def use(*secrets: str) -> None:
        monkeypatch.setenv("MEMBERKIT_TOKEN_SECRETS", ",".join(secrets))
        auth.token_keys.cache_clear()

    yield use
    auth.token_keys.cache_clear()  # monkeypatch then restores the environment the next call reads


# ---------------------------------------------------------------- shop keys and the CLI


def test_cli_prints_a_new_key_once_and_stores_only_its_sha256(api, runtime):
    for args, prefix, kind in [((), "mks_", "secret"), (("--publishable",), "mkp_", "publishable")]:
        result = memberkit(runtime, "keys", "create", "--shop", "beta", *args)
        assert result.exit_code == 0, result.output
        key = result.stdout.strip().splitlines()[-1]
        assert re.fullmatch(prefix + r"[A-Za-z0-9_-]{43}", key), result.stdout
        row = stored_key(runtime, key)
        assert (row.shop, row.kind, row.revoked_at) == ("beta", kind, None)
        stored = " ".join(str(value) for value in row.model_dump().values())
        assert key not in stored and key[10:] not in stored  # the hash and a short display prefix only
        assert api(SHOP, key=key) == {"shop": {"slug": "beta"}}


def test_cli_revokes_a_key_by_id_or_by_the_key_and_it_fails_at_once(api, runtime):
    keys = [memberkit(runtime, "keys", "create", "--shop", "alpha").stdout.splitlines()[-1] for _ in "ab"]
    for key in keys:
        assert api(SHOP, key=key)  # used once, so a cached lookup would outlive a late revocation
    by_id, by_key = keys
    key_id = stored_key(runtime, by_id).id

    result = memberkit(runtime, "keys", "revoke", key_id)
    assert result.exit_code == 0 and key_id in result.stdout, result.output
    assert api.post(SHOP, key=by_id).status_code == 401
    assert api(SHOP, key=by_key) == {"shop": {"slug": "alpha"}}  # only that key ended

    assert memberkit(runtime, "keys", "revoke", by_key).exit_code == 0
    assert api.post(SHOP, key=by_key).status_code == 401
    assert stored_key(runtime, by_key).revoked_at is not None
    assert memberkit(runtime, "keys", "revoke", "key_nope").exit_code == 1


# ---------------------------------------------------------------- member tokens


def test_member_token_acts_for_its_member_only(api):
    key = api.key("alpha")
    first, second = sign_up(api, key, "u-1"), sign_up(api, key, "u-2")
    assert api(ME, key=mint(api, key, first)) == {"me": {"id": first, "externalId": "u-1"}}
    assert api(ME, key=mint(api, key, second)) == {"me": {"id": second, "externalId": "u-2"}}
    assert api(ME, key=key) == {"me": None}  # a key has no member signed in


def test_member_token_expires_after_its_ttl(api):
    key = api.key("alpha")
    member_id = sign_up(api, key, "u-1")
    minted_at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    with clock.frozen(minted_at):
        payload = api(MINT, {"memberId": member_id, "ttl": 60}, key)["createMemberToken"]
    assert datetime.fromisoformat(payload["expiresAt"]) == minted_at + timedelta(seconds=60)
    with clock.frozen(minted_at + timedelta(seconds=59)):
        assert api(ME, key=payload["token"])["me"]["id"] == member_id
    with clock.frozen(minted_at + timedelta(seconds=60)):
        assert api.post(ME, key=payload["token"]).status_code == 401


def test_rotated_secrets_all_verify_and_a_dropped_secret_fails(api, token_secrets):
    key = api.key("alpha")
    member_id = sign_up(api, key, "u-1")
    token_secrets("secret-2025")
    old = mint(api, key, member_id)
    token_secrets("secret-2026", "secret-2025")  # rotation: the new secret signs, the old one still verifies
    new = mint(api, key, member_id)
    assert api(ME, key=old)["me"]["id"] == member_id
    assert api(ME, key=new)["me"]["id"] == member_id
    token_secrets("secret-2026")  # the old secret retired
    assert api.post(ME, key=old).status_code == 401
    assert api(ME, key=new)["me"]["id"] == member_id


def test_tampered_token_fails(api):
    alpha, beta = api.key("alpha"), api.key("beta")
    mine, other = sign_up(api, alpha, "u-1"), sign_up(api, alpha, "u-2")
    beta_member = sign_up(api, beta, "u-1")
    token = mint(api, alpha, mine)
    assert tampered(token) == token and api(ME, key=tampered(token))["me"]["id"] == mine
    for forged in [tampered(token, m=other), tampered(token, s="beta", m=beta_member),
                   tampered(token, e=2_000_000_000), token[:-2] + ("AA" if token[-2:] != "AA" else "BB")]:
        assert api.post(ME, key=forged).status_code == 401, forged


# ---------------------------------------------------------------- storefront credentials


def test_publishable_key_reads_the_storefront_only(api):
    publishable = api.key("alpha", "publishable")
    assert api("{ shop { slug } me { id } }", key=publishable) == {"shop": {"slug": "alpha"}, "me": None}


@pytest.mark.parametrize("credential", ["publishable key", "member token"])
def test_storefront_credentials_cannot_call_integrator_operations(api, runtime, credential):
    secret, member_id = seed(api)
    if credential == "publishable key":
        storefront = api.key("alpha", "publishable")
    else:
        storefront = mint(api, secret, member_id)
    before = database_rows(runtime)
    for name, (query, variables) in integrator_calls(member_id).items():
        errors = api.errors(query, variables, storefront)
        assert error_codes(errors) == ["FORBIDDEN"] and errors[0]["path"] == [name], (name, errors)
    assert database_rows(runtime) == before
    for name, (query, variables) in integrator_calls(member_id).items():  # the secret key may make them all
        payload = api(query, variables, secret)[name]
        assert payload and not payload.get("errors"), (name, payload)


# ---------------------------------------------------------------- one shop never reaches another


def test_each_credential_sees_its_own_shop(api):
    beta = api.key("beta")
    token = mint(api, beta, sign_up(api, beta, "u-1"))
    for credential in (beta, api.key("beta", "publishable"), token):
        assert api(SHOP, key=credential) == {"shop": {"slug": "beta"}}
    assert api(SHOP, key=api.key("alpha")) == {"shop": {"slug": "alpha"}}


def test_same_external_id_in_two_shops_makes_two_members(api, runtime):
    alpha, beta = api.key("alpha"), api.key("beta")
    alpha_member, beta_member = sign_up(api, alpha, "u-1"), sign_up(api, beta, "u-1")
    assert alpha_member != beta_member
    assert api(MEMBER, {"externalId": "u-1"}, alpha)["member"]["id"] == alpha_member
    assert api(MEMBER, {"externalId": "u-1"}, beta)["member"]["id"] == beta_member
    assert api(ME, key=mint(api, beta, beta_member))["me"]["id"] == beta_member
    with runtime.db.read() as conn:
        shops = dict(conn.execute(select(Member.id, Member.shop)).all())
    assert shops == {alpha_member: "alpha", beta_member: "beta"}


def test_another_shops_key_can_neither_read_nor_write_its_members(api, runtime):
    _, alpha_member = seed(api)
    beta = api.key("beta")
    before = database_rows(runtime)
    assert api(MEMBER, {"externalId": "u-1"}, beta) == {"member": None}
    calls = integrator_calls(alpha_member)
    del calls["signUpMember"]  # names no member: covered by the two-shops sign-up test
    results = {name: api(query, variables, beta)[name] for name, (query, variables) in calls.items()}
    assert results["member"] is None
    for name in ("updateMember", "recordOrderPaid", "createMemberToken"):
        assert codes(results[name]) == ["MEMBER_NOT_FOUND"], (name, results[name])
    assert codes(results["recordOrderRefunded"]) == ["ORDER_NOT_FOUND"]
    assert results["createMemberToken"]["token"] is None
    assert database_rows(runtime) == before


def test_another_shops_coupon_code_is_not_used(api, runtime):
    alpha, beta = api.key("alpha"), api.key("beta")
    alpha_member, beta_member = sign_up(api, alpha, "u-1"), sign_up(api, beta, "u-1")
    with runtime.transaction(runtime.shop("alpha")) as ctx:
        code = ctx.wallet.issue(alpha_member, "TEN_OFF", source="test:seed").code

    def pay(key: str, member_id: str) -> list[tuple[str, str | None]]:
        order = {"orderId": "o-1", "memberId": member_id, "total": 5000, "couponCodes": [code]}
        payload = api(ORDER_PAID, {"input": order}, key)["recordOrderPaid"]
        assert payload["errors"] == [], payload
        return [(effect["kind"], effect["code"]) for effect in payload["effects"]]

    assert pay(beta, beta_member) == [("CONFLICT", "COUPON_UNKNOWN")]
    coupons = api(MEMBER, {"id": alpha_member}, alpha)["member"]["coupons"]
    assert [(c["code"], c["status"]) for c in coupons] == [(code, "AVAILABLE")]
    assert pay(alpha, alpha_member) == [("COUPON_USED", None)]  # while its own shop may use it


# ---------------------------------------------------------------- the one 401


def test_every_bad_credential_gets_the_same_401(api, runtime):
    key = api.key("alpha")
    revoked = api.key("alpha")
    assert api(SHOP, key=revoked)  # cached as good before it is revoked
    with runtime.db.write() as conn:
        auth.revoke_key(conn, revoked)
    minted_at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    with clock.frozen(minted_at):
        expiring = mint(api, key, sign_up(api, key, "u-1"), ttl=60)
    headers = {
        "none": None, "empty": "", "basic scheme": f"Basic {key}", "bearer without a key": "Bearer",
        "blank bearer": "Bearer  ", "wrong secret key": "Bearer mks_" + "x" * 43,
        "wrong publishable key": "Bearer mkp_" + "x" * 43, "not a key": "Bearer hello",
        "revoked key": f"Bearer {revoked}", "key of an unknown shop": f"Bearer {api.key('gamma')}",
        "expired token": f"Bearer {expiring}",
        "tampered token": f"Bearer {tampered(expiring, e=2_000_000_000)}",
        "garbage token": "Bearer mkt_garbage",
    }
    with clock.frozen(minted_at + timedelta(hours=1)):
        responses = {case: api.client.post("/graphql", json={"query": SHOP},
                                           headers={"Authorization": header} if header is not None else {})
                     for case, header in headers.items()}
        assert api(SHOP, key=key)  # the same request with a good key passes
    for case, response in responses.items():
        assert (response.status_code, response.json()) == (401, UNAUTHENTICATED), case
        assert response.content == responses["none"].content, case


# ---------------------------------------------------------------- errors, GraphiQL, limits


def test_unexpected_errors_are_masked_outside_development(api, runtime, make_api, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("connection to db-internal:5432 refused")

    monkeypatch.setattr(schema_member, "member_fields", broken)
    for client, message in [(api, "Internal server error"), (make_api(runtime, development=True), None)]:
        response = client.post(MEMBER, {"id": "mem_x"}, client.key("alpha"))
        errors = response.json()["errors"]
        assert len(errors) == 1 and errors[0]["path"] == ["member"]
        if message:
            assert errors[0]["message"] == message and "db-internal" not in response.text
        else:
            assert "db-internal" in errors[0]["message"]


def test_forbidden_and_validation_errors_stay_visible_outside_development(api):
    forbidden = api.errors(MEMBER, {"id": "mem_x"}, api.key("alpha", "publishable"))
    assert forbidden[0]["message"] == ("this operation needs the shop's secret key or a staff key with the role "
                                       "viewer or operator")
    assert forbidden[0]["extensions"] == {"code": "FORBIDDEN"}
    key = api.key("alpha")
    unknown_field = api.errors("{ shop { nope } }", key=key)
    assert unknown_field[0]["message"].startswith("Cannot query field 'nope' on type 'Shop'.")
    literal = 'mutation { recordOrderPaid(input: {orderId: "o", memberId: "m", total: "ten"}) { duplicate } }'
    wrong_literal = api.errors(literal, key=key)
    assert wrong_literal[0]["message"] == 'Int cannot represent non-integer value: "ten"'


@pytest.mark.parametrize("field, value", [("total", "ten"), ("paidAt", "yesterday")])
def test_badly_typed_variables_are_reported_not_masked(api, field, value):
    order = {"orderId": "o", "memberId": "m", "total": 1, field: value}
    errors = api.errors(ORDER_PAID, {"input": order}, api.key("alpha"))
    assert errors[0]["message"].startswith(f"Variable '$input' has invalid value at .{field}:"), errors


def test_graphiql_is_served_in_development_only(api, runtime, make_api):
    html = {"Accept": "text/html"}
    page = make_api(runtime, development=True).client.get("/graphql", headers=html)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "graphiql" in page.text.lower()
    assert api.client.get("/graphql", headers=html).status_code == 401


def nested(depth: int) -> str:
    """A selection whose deepest field is `depth` levels below the top-level one (which is level 0).

    The limiter counts before fields are checked against the schema, so made-up names show it.
    """
    return "{ " + " { ".join(f"f{level}" for level in range(depth + 1)) + " }" * (depth + 1)


def test_queries_deeper_than_ten_levels_are_refused(api):
    key = api.key("alpha")
    assert not any("depth" in e["message"] for e in api.errors(nested(10), key=key))
    too_deep = api.errors(nested(11), key=key)
    assert too_deep[0]["message"] == "'f0' nests 11 levels deep: at most 10 allowed"


def test_queries_with_more_than_thirty_aliases_are_refused(api):
    key = api.key("alpha")

    def aliased(count: int) -> str:
        return "{ " + " ".join(f"s{n}: shop {{ slug }}" for n in range(count)) + " }"

    assert len(api(aliased(30), key=key)) == 30
    assert api.errors(aliased(31), key=key)[0]["message"] == "31 aliases found. Allowed: 30"


# ---------------------------------------------------------------- logs


def test_logs_carry_no_personal_data(api, caplog):
    key = api.key("alpha")
    phone, email = "+86 139 1234 5678", "li.hua@example.com"
    caplog.set_level(logging.DEBUG)
    member_id = sign_up(api, key, "u-1", phone=phone, email=email)
    update = {"memberId": member_id, "phone": "+86 139 8765 4321", "email": "hua@example.org"}
    assert api(UPDATE_MEMBER, {"input": update}, key)["updateMember"]["errors"] == []
    assert caplog.records  # capture works (the HTTP client logs each request)
    for secret in (phone, "13912345678", email, "li.hua", "87654321", "hua@example.org"):
        assert secret not in caplog.text, secret


def test_malformed_personal_data_is_refused_without_being_logged(api, caplog):
    caplog.set_level(logging.DEBUG)
    errors = api.errors(SIGN_UP, {"input": {"externalId": "u-1", "phone": 13912345678}}, api.key("alpha"))
    assert "phone" in errors[0]["message"]  # the caller is told what was wrong
    assert "13912345678" not in caplog.text
