"""Logs an operator can use (issue 11 point 10): one access line per request with the request id the
response also carries, the operation name and the caller's key id, never variables or personal data; an
internal error logged once with its request id and traceback; JSON lines on request."""

from __future__ import annotations

import json
import logging
import os
import subprocess

import httpx
import pytest
from sqlalchemy import select

from memberkit.core import orders
from memberkit.core.models import Order
from tests.conftest import MEMBERKIT, ORDER_PAID, ROOT, memberkit_serve

PHONE = "13912345678"
SIGN_UP = """mutation SignUp($input: SignUpMemberInput!) { signUpMember(input: $input) { errors { code } } }"""


@pytest.fixture
def demo(memberkit):
    return memberkit((ROOT / "plugins.toml").read_text())


def access_lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "memberkit.access"]


def test_one_access_line_per_request_with_the_id_the_response_carries(demo, caplog):
    caplog.set_level(logging.INFO, "memberkit")
    key = demo._key("demo", "secret")
    caplog.clear()
    response = demo.api.client.post("/graphql", headers={"Authorization": f"Bearer {key}"}, json={
        "query": SIGN_UP, "variables": {"input": {"externalId": "u-1", "phone": PHONE}}})
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    [line] = access_lines(caplog)
    key_id = line.access["caller"]
    assert key_id.startswith("key_")
    assert line.access == {"method": "POST", "path": "/graphql", "status": 200,
                           "duration_ms": line.access["duration_ms"], "operation": "SignUp", "caller": key_id}
    assert line.request_id == request_id
    assert PHONE not in caplog.text and "u-1" not in caplog.text
    unauthenticated = demo.api.client.post("/graphql", json={"query": "{ shop { slug } }"})
    assert unauthenticated.status_code == 401 and access_lines(caplog)[-1].access["status"] == 401
    assert unauthenticated.headers["x-request-id"] != request_id


def test_an_internal_error_is_logged_once_with_its_request_id_and_traceback(demo, caplog, monkeypatch):
    member_id = demo.sign_up("demo", "u-1")

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")
    monkeypatch.setattr(orders, "record_order_paid", broken)
    caplog.set_level(logging.INFO, "memberkit")
    caplog.clear()
    key = demo._key("demo", "secret")
    response = demo.api.client.post("/graphql", headers={"Authorization": f"Bearer {key}"}, json={
        "query": ORDER_PAID, "variables": {"input": {"orderId": "o-1", "memberId": member_id, "total": 1}}})
    assert response.json()["errors"][0]["message"] == "Internal server error"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info[0] is ZeroDivisionError
    assert errors[0].request_id == response.headers["x-request-id"]
    with demo.runtime.db.read() as conn:
        assert conn.execute(select(Order)).first() is None


def test_json_lines_for_log_collectors(tmp_path, settings_file):
    config = settings_file((ROOT / "plugins.toml").read_text())
    env = {**os.environ, "MEMBERKIT_CONFIG": str(config), "MEMBERKIT_SECRETS_FILE": str(tmp_path / "secret.key"),
           "MEMBERKIT_DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "MEMBERKIT_LOG_FORMAT": "json"}
    key = subprocess.run([MEMBERKIT, "keys", "create", "--shop", "demo"], env=env, capture_output=True, text=True,
                         check=True).stdout.splitlines()[-1]
    log_path = tmp_path / "server.log"
    with memberkit_serve(env, "1", log_path) as base:
        response = httpx.post(base + "/graphql", headers={"Authorization": f"Bearer {key}"}, json={
            "query": SIGN_UP, "variables": {"input": {"externalId": "u-1", "phone": PHONE}}})
        assert response.status_code == 200
    entries = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    [access] = [e for e in entries if e["logger"] == "memberkit.access" and e["path"] == "/graphql"]
    assert access["request_id"] == response.headers["x-request-id"] and access["operation"] == "SignUp"
    assert access["status"] == 200 and access["caller"].startswith("key_")
    assert PHONE not in log_path.read_text()
