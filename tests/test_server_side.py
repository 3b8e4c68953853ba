"""Revocation means revoked (issue 11 point 4) and server-side integrations (point 11): a revoked key's member
tokens stop with it, an integrator can end one member's tokens, and a platform's backend quotes, checks
out and redeems for a member it names with the secret key, while a storefront can never name another."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest
from sqlalchemy import update

from memberkit.schema import auth
from memberkit.schema.auth import ApiKey
from tests.conftest import ROOT, SHARED, shared_only

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
ME = "{ me { id } }"
REVOKE = """mutation($m: ID!) { revokeMemberTokens(memberId: $m) { revoked errors { code field } } }"""
QUOTE = """query($input: CartInput!) { quoteCart(input: $input) { total { amount } adjustments { code } } }"""
START = """mutation($input: CheckoutInput!) { startCheckout(input: $input) {
  checkout { id status } errors { code field } } }"""
REDEEM = """mutation($input: RedeemRewardInput!) { redeemReward(input: $input) {
  coupon { code } pointsSpent errors { code field } } }"""
ADJUST = """mutation($m: ID!) { adjustPoints(input: {memberId: $m, delta: 1000, reason: "gift",
  idempotencyKey: "gift-1"}) { errors { code } } }"""
LINES = [{"sku": "TEE", "quantity": 1, "unitPrice": 10_000}]


@pytest.fixture
def demo(memberkit):
    programme = memberkit((ROOT / "plugins.toml").read_text())
    programme.clock.set(NOW)
    return programme


def later(programme, seconds: float, monkeypatch) -> None:
    """Move both clocks on: the business clock (tokens' issue times) and the process's cache clock."""
    programme.clock.advance(seconds=seconds)
    moved = auth.time.monotonic() + seconds
    monkeypatch.setattr(auth.time, "monotonic", lambda: moved)


def test_a_revoked_keys_member_tokens_stop_working(demo):
    member_id = demo.sign_up("demo", "u-1")
    secret = demo.api.key("demo")
    token = demo.api.token(secret, member_id)
    assert demo.api(ME, key=token)["me"]["id"] == member_id
    with demo.runtime.db.write() as conn:
        auth.revoke_key(conn, secret)
    assert demo.api.post(ME, key=token).status_code == 401
    other = demo.api.token(demo.api.key("demo"), member_id)  # another key's tokens are untouched
    assert demo.api(ME, key=other)["me"]["id"] == member_id


def test_a_key_revoked_by_another_process_ends_its_tokens_within_seconds(demo, monkeypatch):
    member_id = demo.sign_up("demo", "u-1")
    secret = demo.api.key("demo")
    token = demo.api.token(secret, member_id)
    assert demo.api(ME, key=token)["me"]["id"] == member_id  # now cached in this process
    with demo.runtime.db.write() as conn:  # what `memberkit keys revoke` does elsewhere
        conn.execute(update(ApiKey).where(ApiKey.key_hash == auth.secret_hash(secret)).values(revoked_at=NOW))
    later(demo, auth.KEY_CACHE_SECONDS + 0.5, monkeypatch)
    assert demo.api.post(ME, key=token).status_code == 401


def test_revoke_member_tokens_ends_every_token_of_that_member_only(demo, monkeypatch):
    integrator = demo.integrator("demo")
    first, second = demo.sign_up("demo", "u-1"), demo.sign_up("demo", "u-2")
    tokens = [demo.api.token(demo._key("demo", "secret"), first) for _ in range(2)]
    bystander = demo.api.token(demo._key("demo", "secret"), second)
    later(demo, 1, monkeypatch)
    assert integrator(REVOKE, {"m": first})["revokeMemberTokens"] == {"revoked": True, "errors": []}
    for token in tokens:
        assert demo.api.post(ME, key=token).status_code == 401
    assert demo.api(ME, key=bystander)["me"]["id"] == second
    later(demo, 1, monkeypatch)
    fresh = demo.api.token(demo._key("demo", "secret"), first)  # a new sign-in works at once
    assert demo.api(ME, key=fresh)["me"]["id"] == first
    assert integrator(REVOKE, {"m": "mem_nobody"})["revokeMemberTokens"] == {
        "revoked": False, "errors": [{"code": "MEMBER_NOT_FOUND", "field": "memberId"}]}
    for client in (demo.storefront("demo"), demo.member("demo", second)):
        assert client.errors(REVOKE, {"m": first})[0]["extensions"]["code"] == "FORBIDDEN"


def test_the_secret_key_quotes_checks_out_and_redeems_for_the_member_it_names(demo):
    integrator = demo.integrator("demo")
    member_id = demo.sign_up("demo", "u-1")
    anonymous = integrator(QUOTE, {"input": {"lines": LINES}})["quoteCart"]
    named = integrator(QUOTE, {"input": {"lines": LINES, "memberId": member_id}})["quoteCart"]
    as_member = demo.member("demo", member_id)(QUOTE, {"input": {"lines": LINES}})["quoteCart"]
    assert named == as_member and named != anonymous  # the member's first-order discount applies
    started = integrator(START, {"input": {"lines": LINES, "memberId": member_id, "idempotencyKey": "pos-1"}})
    assert started["startCheckout"]["errors"] == [] and started["startCheckout"]["checkout"]["status"] == "HELD"
    assert integrator(ADJUST, {"m": member_id})["adjustPoints"]["errors"] == []
    redeemed = integrator(REDEEM, {"input": {"rewardId": "coupon-10", "memberId": member_id,
                                             "idempotencyKey": "pos-r1"}})["redeemReward"]
    assert redeemed["errors"] == [] and redeemed["pointsSpent"] == 500
    missing = integrator.errors(QUOTE, {"input": {"lines": LINES, "memberId": "mem_nobody"}})
    assert missing[0]["extensions"]["code"] == "MEMBER_NOT_FOUND"


def test_a_storefront_can_never_name_another_member(demo):
    me, other = demo.sign_up("demo", "u-1"), demo.sign_up("demo", "u-2")
    member = demo.member("demo", me)
    assert member(QUOTE, {"input": {"lines": LINES, "memberId": me}})["quoteCart"]  # its own: fine
    for client, target in ((member, other), (demo.storefront("demo"), me)):
        for query, cart in ((QUOTE, {"lines": LINES}), (START, {"lines": LINES, "idempotencyKey": "k"}),
                            (REDEEM, {"rewardId": "coupon-10", "idempotencyKey": "k"})):
            errors = client.errors(query, {"input": {**cart, "memberId": target}})
            assert errors[0]["extensions"]["code"] == "FORBIDDEN", (query, errors)
    assert demo.integrator("demo").errors(START, {"input": {"lines": LINES, "idempotencyKey": "k"}})[0][
        "extensions"]["code"] == "FORBIDDEN"  # the secret key must name the member it acts for


@shared_only
def test_the_demo_schema_meets_the_server_side_contract():
    """schema/demo.graphql is what the demo shop serves (tests/test_schema.py); here the contract's part."""
    done = subprocess.run([sys.executable, str(SHARED / "check-contract.py"), "--with", "server-side",
                           str(ROOT / "schema" / "demo.graphql")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_token_that_does_not_name_its_key_is_refused(demo):
    """Tokens minted before revocation existed could never be revoked: they no longer work."""
    import hashlib
    import hmac
    import json

    from memberkit.core.hashing import key_id
    member_id = demo.sign_up("demo", "u-1")
    key = auth.token_keys()[0]
    claims = {"s": "demo", "m": member_id, "e": int(NOW.timestamp()) + 3600, "k": key_id(key)}
    body = auth._b64(json.dumps(claims).encode())
    old = f"mkt_{body}.{auth._b64(hmac.new(key, body.encode(), hashlib.sha256).digest())}"
    assert demo.api.post(ME, key=old).status_code == 401
