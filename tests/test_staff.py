"""Staff keys and the operator console's sign-in: a viewer reads what the secret key reads, an operator also
adjusts points, sets tiers and redelivers webhooks, neither does what stays with the secret key; the session
cookie and its CSRF token; every staff write in the audit log, and nothing on a refusal."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient
from typer.testing import CliRunner

from memberkit import cli
from memberkit.core import clock
from memberkit.core.models import Event
from memberkit.schema import auth
from memberkit.schema.audit import AuditEntry
from memberkit.schema.auth import ApiKey
from memberkit.server import create_app

DEMO = (Path(__file__).resolve().parents[1] / "plugins.toml").read_text()
COOKIE = "__Host-memberkit_session"

MEMBER = "query($id: ID!) { member(id: $id) { id points { balance } tier { code } } }"
SEARCH = "{ members(first: 10) { totalCount edges { node { id } } } }"
KPIS = "query($from: DateTime!, $to: DateTime!) { programmeKpis(from: $from, to: $to) { newMembers } }"
ENDPOINTS = "{ webhookEndpoints { id url } }"
DELIVERIES = "{ webhookDeliveries(first: 5) { edges { node { id } } } }"
JOB = '{ job(id: "job_none") { id } }'
AUDIT = """query($first: Int, $after: String) { auditLog(first: $first, after: $after) {
  edges { node { keyId keyLabel role operation arguments { name value } reason createdAt } }
  pageInfo { hasNextPage endCursor } } }"""
ADJUST = """mutation($input: AdjustPointsInput!) { adjustPoints(input: $input) {
  duplicate effects { description } errors { code field } } }"""
SET_TIER = """mutation($input: SetMemberTierInput!) { setMemberTier(input: $input) {
  member { tier { code } } errors { code field } } }"""
CREATE_ENDPOINT = """mutation($input: WebhookEndpointInput!) { createWebhookEndpoint(input: $input) {
  endpoint { id } errors { code } } }"""
REDELIVER = """mutation($id: ID!, $since: DateTime!) { redeliverWebhooks(endpointId: $id, since: $since) {
  queued errors { code field } } }"""

# What stays with the secret key, one of each kind: record an order, mint a member token, export and erase a
# member, create and delete a webhook endpoint, record a top-up.
SECRET_ONLY = {
    "recordOrderPaid": """mutation($m: ID!) { recordOrderPaid(input: {orderId: "o-x", memberId: $m, total: 100})
                          { errors { code } } }""",
    "createMemberToken": "mutation($m: ID!) { createMemberToken(memberId: $m) { token } }",
    "memberDataExport": "query($m: ID!) { memberDataExport(memberId: $m) }",
    "eraseMember": 'mutation($m: ID!) { eraseMember(memberId: $m, idempotencyKey: "e") { errors { code } } }',
    "createWebhookEndpoint": """mutation { createWebhookEndpoint(input: {url: "http://127.0.0.1:9/h",
                                eventTypes: []}) { errors { code } } }""",
    "deleteWebhookEndpoint": 'mutation { deleteWebhookEndpoint(id: "whe_x") { errors { code } } }',
    "recordTopUp": """mutation($m: ID!) { recordTopUp(input: {memberId: $m, topUpId: "t-1", amount: 1000,
                      paidAt: "2024-01-01T00:00:00Z"}) { errors { code } } }""",
}


@pytest.fixture
def shop(memberkit):
    programme = memberkit(DEMO)
    programme.member_id = programme.sign_up("demo", "u-1")
    return programme


def staff_key(shop, role: str, label: str = "alice") -> str:
    with shop.runtime.db.write() as conn:
        return auth.create_key(conn, "demo", "staff", label, role)[1]


def call(shop, key: str, query: str, variables: dict | None = None) -> dict:
    return shop.api.post(query, variables, key).json()


def forbidden(body: dict) -> str:
    """The FORBIDDEN refusal's message (and that it is the only error and nothing ran)."""
    [error] = body["errors"]
    assert error["extensions"]["code"] == "FORBIDDEN", body
    return error["message"]


def audit_rows(shop) -> list[AuditEntry]:
    with shop.runtime.db.read() as conn:
        return [AuditEntry.model_validate(r._mapping) for r in conn.execute(select(AuditEntry).order_by(AuditEntry.id))]


def event_count(shop) -> int:
    with shop.runtime.db.read() as conn:
        return conn.execute(select(func.count()).select_from(Event)).scalar()


def adjust(member_id: str, delta: int, reason: str = "goodwill", key: str = "a") -> dict:
    return {"input": {"memberId": member_id, "delta": delta, "reason": reason, "idempotencyKey": key}}


def endpoint(shop) -> str:
    payload = shop.integrator("demo")(CREATE_ENDPOINT, {"input": {"url": "http://127.0.0.1:9/hook",
                                                                  "eventTypes": []}})["createWebhookEndpoint"]
    assert payload["errors"] == [], payload
    return payload["endpoint"]["id"]


# ---------------------------------------------------------------- keys


def memberkit_cli(runtime, *args: str):
    env = {"MEMBERKIT_CONFIG": runtime.settings.path, "MEMBERKIT_DATABASE_URL": runtime.db.url}
    return CliRunner().invoke(cli.app, list(args), env=env)


def test_cli_makes_a_staff_key_with_its_role_printed_once_and_stored_as_a_hash(shop):
    result = memberkit_cli(shop.runtime, "keys", "create", "--shop", "demo", "--kind", "staff", "--role", "operator",
                           "--label", "alice")
    assert result.exit_code == 0, result.output
    assert "staff key (operator)" in result.stdout
    key = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"mkst_[A-Za-z0-9_-]{43}", key), result.stdout
    with shop.runtime.db.read() as conn:
        [row] = conn.execute(select(ApiKey).where(ApiKey.kind == "staff")).all()
    assert (row.shop, row.role, row.label, row.revoked_at) == ("demo", "operator", "alice", None)
    assert key not in " ".join(map(str, row)) and key[10:] not in " ".join(map(str, row))
    assert call(shop, key, MEMBER, {"id": shop.member_id})["data"]["member"]["id"] == shop.member_id
    listing = memberkit_cli(shop.runtime, "keys", "list", "--shop", "demo").stdout
    assert "staff (operator)" in listing and "alice" in listing and key not in listing


@pytest.mark.parametrize("args, message", [
    (("--kind", "staff"), "--role is None: a staff key needs one of viewer, operator"),
    (("--kind", "staff", "--role", "admin"), "--role is 'admin'"),
    (("--role", "viewer"), "other kinds none"),
    (("--kind", "root"), "--kind is 'root': expected one of secret, publishable, staff"),
])
def test_cli_refuses_a_staff_key_without_a_known_role_and_makes_nothing(shop, args, message):
    result = memberkit_cli(shop.runtime, "keys", "create", "--shop", "demo", *args)
    assert result.exit_code == 1 and message in " ".join(result.stderr.split()), result.output
    with shop.runtime.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(ApiKey).where(ApiKey.kind != "secret")).scalar() == 0


# ---------------------------------------------------------------- what each role may do


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_both_roles_read_what_the_secret_key_reads(shop, role):
    key, member_id = staff_key(shop, role), shop.member_id
    endpoint_id = endpoint(shop)
    reads = [(MEMBER, {"id": member_id}), (SEARCH, None), (ENDPOINTS, None), (DELIVERIES, None), (JOB, None),
             (AUDIT, None), (KPIS, {"from": "2024-01-01T00:00:00+08:00", "to": "2024-01-02T00:00:00+08:00"})]
    for query, variables in reads:
        body = call(shop, key, query, variables)
        assert "errors" not in body, (query, body)
        assert body == call(shop, shop.integrator("demo").key, query, variables), query  # the same answer
    data = call(shop, key, SEARCH)["data"]
    assert data["members"]["totalCount"] == 1 and call(shop, key, ENDPOINTS)["data"]["webhookEndpoints"][0]["id"] \
        == endpoint_id


def test_a_viewer_is_refused_every_write_naming_the_operator_role_and_nothing_is_written(shop):
    key, member_id = staff_key(shop, "viewer"), shop.member_id
    endpoint_id = endpoint(shop)
    events = event_count(shop)
    writes = [(ADJUST, adjust(member_id, 50)),
              (SET_TIER, {"input": {"memberId": member_id, "tierCode": "GOLD", "reason": "vip"}}),
              (REDELIVER, {"id": endpoint_id, "since": clock.now().isoformat()})]
    for query, variables in writes:
        message = forbidden(call(shop, key, query, variables))
        assert message == ("this operation needs the shop's secret key or a staff key with the role operator "
                           "(this staff key's role is viewer)")
    assert audit_rows(shop) == [] and event_count(shop) == events
    assert shop.integrator("demo")(MEMBER, {"id": member_id})["member"]["points"]["balance"] == 0


@pytest.mark.parametrize("role", ["viewer", "operator"])
@pytest.mark.parametrize("operation", SECRET_ONLY)
def test_neither_role_runs_what_stays_with_the_secret_key(shop, role, operation):
    key = staff_key(shop, role)
    events = event_count(shop)
    query = SECRET_ONLY[operation]
    message = forbidden(call(shop, key, query, {"m": shop.member_id} if "$m" in query else None))
    assert message == "this operation needs the shop's secret key (staff keys may not run it)"
    assert audit_rows(shop) == [] and event_count(shop) == events


def test_storefront_credentials_are_refused_the_staff_reads_naming_who_may(shop):
    message = forbidden(shop.storefront("demo").api.post(SEARCH, None, shop.storefront("demo").key).json())
    assert message == "this operation needs the shop's secret key or a staff key with the role viewer or operator"


# ---------------------------------------------------------------- the audit log


def test_operator_writes_are_audited_with_who_what_when_and_the_reason(shop):
    key, member_id = staff_key(shop, "operator", "alice"), shop.member_id
    endpoint_id = endpoint(shop)
    shop.clock.set(clock.now().replace(microsecond=0))
    payload = call(shop, key, ADJUST, adjust(member_id, 50, "apology for a late parcel"))["data"]["adjustPoints"]
    assert payload["errors"] == [] and payload["effects"] == [{"description": "points +50 (apology for a late "
                                                                              "parcel)"}]
    tier = call(shop, key, SET_TIER, {"input": {"memberId": member_id, "tierCode": "GOLD", "reason": "vip",
                                                "idempotencyKey": "t-1"}})["data"]["setMemberTier"]
    assert tier == {"member": {"tier": {"code": "GOLD"}}, "errors": []}
    since = (clock.now() - timedelta(hours=1)).isoformat()
    assert call(shop, key, REDELIVER, {"id": endpoint_id, "since": since})["data"]["redeliverWebhooks"]["errors"] == []

    key_id = next(r.key_id for r in audit_rows(shop))
    assert [(r.key_id, r.key_label, r.role, r.operation, r.reason, r.created_at) for r in audit_rows(shop)] == [
        (key_id, "alice", "operator", "adjustPoints", "apology for a late parcel", clock.now()),
        (key_id, "alice", "operator", "setMemberTier", "vip", clock.now()),
        (key_id, "alice", "operator", "redeliverWebhooks", None, clock.now())]
    assert key_id.startswith("key_") and all(r.event_id for r in audit_rows(shop))

    for reader in (shop.integrator("demo").key, key, staff_key(shop, "viewer", "bob")):  # secret key and staff
        log = call(shop, reader, AUDIT, {"first": 2})["data"]["auditLog"]
        nodes = [edge["node"] for edge in log["edges"]]
        assert [n["operation"] for n in nodes] == ["redeliverWebhooks", "setMemberTier"]  # newest first
        assert log["pageInfo"]["hasNextPage"] is True
        assert {a["name"]: a["value"] for a in nodes[1]["arguments"]} == {
            "member_id": f'"{member_id}"', "tier_code": '"GOLD"', "expires_at": "null", "idempotency_key": '"t-1"'}
        rest = call(shop, reader, AUDIT, {"first": 2, "after": log["pageInfo"]["endCursor"]})["data"]["auditLog"]
        [last] = [edge["node"] for edge in rest["edges"]]
        assert (last["operation"], last["keyLabel"], last["role"], last["reason"]) == \
            ("adjustPoints", "alice", "operator", "apology for a late parcel")
        assert {a["name"]: a["value"] for a in last["arguments"]} == {
            "member_id": f'"{member_id}"', "delta": "50", "idempotency_key": '"a"'}  # the reason has its own field
        assert rest["pageInfo"]["hasNextPage"] is False


def test_a_members_staff_writes_are_in_their_export_and_erasure_drops_the_reasons_given(shop):
    """The audit log keeps who did what to an erased member, not the free text that may name the person."""
    key, member_id, other = staff_key(shop, "operator"), shop.member_id, shop.sign_up("demo", "u-2")
    assert call(shop, key, ADJUST, adjust(member_id, 50, "Ada rang about her parcel"))["data"]["adjustPoints"][
        "errors"] == []
    assert call(shop, key, ADJUST, adjust(other, 5, "kept", key="b"))["data"]["adjustPoints"]["errors"] == []
    integrator = shop.integrator("demo")
    export = json.loads(integrator("query($id: ID!) { memberDataExport(memberId: $id) }",
                                   {"id": member_id})["memberDataExport"])
    assert [(w["operation"], w["reason"], w["role"]) for w in export["staffWrites"]["items"]] == [
        ("adjustPoints", "Ada rang about her parcel", "operator")]
    erase = 'mutation($id: ID!) { eraseMember(memberId: $id, idempotencyKey: "e") { errors { code } } }'
    assert integrator(erase, {"id": member_id})["eraseMember"]["errors"] == []
    assert [(row.operation, row.reason) for row in audit_rows(shop)] == [("adjustPoints", None),
                                                                        ("adjustPoints", "kept")]


def test_refused_and_repeated_staff_writes_and_secret_key_writes_add_no_audit_row(shop):
    key, member_id = staff_key(shop, "operator"), shop.member_id
    assert call(shop, key, ADJUST, adjust(member_id, 50))["data"]["adjustPoints"]["errors"] == []
    assert len(audit_rows(shop)) == 1
    assert call(shop, key, ADJUST, adjust(member_id, 50))["data"]["adjustPoints"]["duplicate"] is True
    refused = [(ADJUST, adjust(member_id, -500, key="b"), "adjustPoints", "INSUFFICIENT_POINTS"),
               (ADJUST, adjust(member_id, 5, reason=" ", key="c"), "adjustPoints", "INVALID_REASON"),
               (SET_TIER, {"input": {"memberId": member_id, "tierCode": "NOPE", "reason": "x"}}, "setMemberTier", None),
               (REDELIVER, {"id": "whe_none", "since": clock.now().isoformat()}, "redeliverWebhooks", None)]
    for query, variables, field, code in refused:
        errors = call(shop, key, query, variables)["data"][field]["errors"]
        assert errors and (code is None or errors[0]["code"] == code), errors
    shop.integrator("demo")(ADJUST, adjust(member_id, 10, key="secret"))
    assert len(audit_rows(shop)) == 1
    assert call(shop, key, AUDIT, {"first": 101})["errors"][0]["message"] == "auditLog: first must be from 0 to 100"


def test_cli_prints_the_audit_log(shop):
    key = staff_key(shop, "operator", "alice")
    assert call(shop, key, ADJUST, adjust(shop.member_id, 7, "birthday mix-up\n2026-01-01 forged line"))[
        "data"]["adjustPoints"]["errors"] == []
    result = memberkit_cli(shop.runtime, "audit", "--shop", "demo")
    assert result.exit_code == 0, result.output
    [line] = result.stdout.splitlines()  # a newline typed into a reason forges no second line
    assert "(alice, operator)" in line and "adjustPoints" in line and '"delta": 7' in line
    assert line.endswith("reason: birthday mix-up\\n2026-01-01 forged line")


# ---------------------------------------------------------------- console sessions


@pytest.fixture
def console(shop):
    """A browser on https (the cookie is Secure outside development), on the same app as `shop.api`."""
    client = TestClient(create_app(shop.runtime, development=False, jobs_interval=0, services=False),
                        base_url="https://testserver")
    with client:
        yield client


def sign_in(console, key: str):
    return console.post("/admin/session", json={"key": key})


def graphql(console, query: str, variables: dict | None = None, csrf: str | None = None, **headers):
    if csrf is not None:
        headers["X-CSRF-Token"] = csrf
    return console.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers)


def test_sign_in_sets_a_strict_httponly_secure_session_cookie_and_gives_a_csrf_token(shop, console):
    response = sign_in(console, staff_key(shop, "operator", "alice"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["shop"], body["role"], body["label"]) == ("demo", "operator", "alice")
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", body["csrfToken"])
    assert response.headers["cache-control"] == "no-store"
    [header] = response.headers.get_list("set-cookie")
    cookie = SimpleCookie(header)[COOKIE]
    attributes = {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}
    assert {"httponly", "secure", "samesite", "path", "max-age", "expires"} <= attributes and "domain" not in attributes
    assert cookie["samesite"] == "strict" and cookie["path"] == "/" and cookie["max-age"] == str(8 * 3600)
    session = cookie.value
    assert len(session) == 43 and session not in repr(audit_rows(shop))
    from memberkit.schema.staff import StaffSession
    with shop.runtime.db.read() as conn:
        [stored] = conn.execute(select(StaffSession)).all()
    assert session not in " ".join(map(str, stored)) and body["csrfToken"] not in " ".join(map(str, stored))

    answer = graphql(console, MEMBER, {"id": shop.member_id}, csrf=body["csrfToken"])
    assert answer.status_code == 200 and answer.json()["data"]["member"]["id"] == shop.member_id
    write = graphql(console, ADJUST, adjust(shop.member_id, 5, "console"), csrf=body["csrfToken"])
    assert write.json()["data"]["adjustPoints"]["errors"] == []
    assert [(r.operation, r.key_label, r.reason) for r in audit_rows(shop)] == [("adjustPoints", "alice", "console")]


def test_a_cookie_request_without_its_csrf_token_is_refused_and_runs_nothing(shop, console):
    csrf = sign_in(console, staff_key(shop, "operator")).json()["csrfToken"]
    events = event_count(shop)
    for headers in ({}, {"X-CSRF-Token": "wrong"}, {"X-CSRF-Token": ""}):
        response = graphql(console, ADJUST, adjust(shop.member_id, 5), **headers)
        assert response.status_code == 403 and response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert "X-CSRF-Token" in response.json()["errors"][0]["message"]
    assert event_count(shop) == events and audit_rows(shop) == []
    other = TestClient(console.app, base_url="https://testserver")  # another browser's token is not this one's
    other_csrf = sign_in(other, staff_key(shop, "operator")).json()["csrfToken"]
    assert graphql(console, SEARCH, csrf=other_csrf).status_code == 403
    assert graphql(console, SEARCH, csrf=csrf).status_code == 200


def test_the_session_keeps_its_role_and_the_authorization_header_still_works(shop, console):
    csrf = sign_in(console, staff_key(shop, "viewer")).json()["csrfToken"]
    refused = graphql(console, ADJUST, adjust(shop.member_id, 5), csrf=csrf).json()
    assert "staff key with the role operator" in forbidden(refused)
    secret = shop.integrator("demo").key  # a header wins over the cookie, with no CSRF token needed
    done = graphql(console, ADJUST, adjust(shop.member_id, 5), Authorization=f"Bearer {secret}").json()
    assert done["data"]["adjustPoints"]["errors"] == [] and audit_rows(shop) == []


def test_only_a_live_staff_key_signs_in(shop, console):
    refused = sign_in(console, shop.integrator("demo").key)
    assert refused.status_code == 403 and "staff key" in refused.json()["errors"][0]["message"]
    assert sign_in(console, "mkst_" + "x" * 43).status_code == 401
    assert console.post("/admin/session", data={"key": staff_key(shop, "viewer")}).status_code == 400  # a form
    assert console.post("/admin/session", json=["not", "an", "object"]).status_code == 400

    def streamed():  # no content-length: the body is cut off at the limit, not read whole
        yield b'{"key": "' + b"x" * 5000
        yield b'"}'
    assert console.post("/admin/session", content=streamed(), headers={"content-type": "application/json"}
                        ).status_code == 400
    assert "set-cookie" not in refused.headers


def test_sign_out_ends_the_session_and_clears_the_cookie(shop, console):
    csrf = sign_in(console, staff_key(shop, "viewer")).json()["csrfToken"]
    session = console.cookies[COOKIE]
    assert console.delete("/admin/session").status_code == 403  # another site cannot sign an operator out
    assert graphql(console, SEARCH, csrf=csrf).status_code == 200
    response = console.delete("/admin/session", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 204
    cleared = SimpleCookie(response.headers["set-cookie"])[COOKIE]
    assert cleared.value == "" and cleared["max-age"] == "0"
    console.cookies.set(COOKIE, session)  # the old cookie, kept by someone: it no longer works
    assert graphql(console, SEARCH, csrf=csrf).status_code == 401


def test_revoking_the_staff_key_ends_its_sessions_at_once(shop, console):
    key = staff_key(shop, "operator")
    csrf = sign_in(console, key).json()["csrfToken"]
    assert graphql(console, SEARCH, csrf=csrf).status_code == 200
    result = memberkit_cli(shop.runtime, "keys", "revoke", key)
    assert result.exit_code == 0, result.output
    response = graphql(console, SEARCH, csrf=csrf)
    assert response.status_code == 401 and response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert sign_in(console, key).status_code == 401


def test_a_session_ends_eight_hours_after_sign_in(shop, console):
    shop.clock.set(clock.now())
    csrf = sign_in(console, staff_key(shop, "viewer")).json()["csrfToken"]
    shop.clock.advance(hours=8, seconds=-1)
    assert graphql(console, SEARCH, csrf=csrf).status_code == 200
    shop.clock.advance(seconds=1)
    assert graphql(console, SEARCH, csrf=csrf).status_code == 401


def test_in_development_the_cookie_works_over_plain_http(shop, make_api):
    api = make_api(shop.runtime, development=True)
    response = api.client.post("/admin/session", json={"key": staff_key(shop, "viewer")})
    header = response.headers["set-cookie"]
    assert header.startswith("memberkit_session=") and "secure" not in header.lower()
    assert "httponly" in header.lower() and "samesite=strict" in header.lower()
    csrf = response.json()["csrfToken"]
    answer = api.client.post("/graphql", json={"query": SEARCH}, headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 200 and answer.json()["data"]["members"]["totalCount"] == 1


# ---------------------------------------------------------------- the console's list of jobs

JOBS = "query($first: Int) { jobs(first: $first) { id kind status total done } }"


def test_staff_list_the_shops_jobs_newest_first_with_their_progress_and_only_their_shops(shop):
    from memberkit.schema.jobs import RUNS
    start = clock.now()
    rows = [{"id": f"job_{n}", "shop": shop_slug, "kind": "segments.campaign", "key": f"k{n}", "params": {},
             "status": status, "total": 10, "done": done, "created_at": start + timedelta(minutes=n)}
            for n, (shop_slug, status, done) in enumerate([("demo", "DONE", 10), ("demo", "RUNNING", 4),
                                                           ("other", "QUEUED", 0)])]
    with shop.runtime.db.write() as conn:
        conn.execute(RUNS.insert(), rows)
    body = call(shop, staff_key(shop, "viewer"), JOBS, {"first": 10})
    assert body["data"]["jobs"] == [
        {"id": "job_1", "kind": "segments.campaign", "status": "RUNNING", "total": 10, "done": 4},
        {"id": "job_0", "kind": "segments.campaign", "status": "DONE", "total": 10, "done": 10}]
    assert [j["id"] for j in call(shop, shop.integrator("demo").key, JOBS, {"first": 1})["data"]["jobs"]] == ["job_1"]
    refused = call(shop, shop.integrator("demo").key, JOBS, {"first": 101})
    assert refused["errors"][0]["message"] == "jobs: first is 101: expected 0 to 100" and refused["data"] is None
