"""Secrets that move don't break retries (issue 11 point 5): every keyed hash keeps its key's version, so a
rotated MEMBERKIT_PII_KEY still recognises a replay; the development secrets live beside the settings file,
whichever folder memberkit is started from, and the log says which were generated and where."""

from __future__ import annotations

import json
import logging
import os

import pytest
from sqlalchemy import select

from memberkit.core import hashing, intake
from memberkit.core.models import Event, MemberPersonal
from memberkit.secrets import ensure_secrets
from tests.conftest import ROOT

SIGN_UP = """mutation($input: SignUpMemberInput!) { signUpMember(input: $input) {
  duplicate member { id } effects { code } errors { code } } }"""


@pytest.fixture
def pii_keys(monkeypatch):
    def use(*keys: str) -> None:
        monkeypatch.setenv("MEMBERKIT_PII_KEY", ",".join(keys))
        hashing.pii_keys.cache_clear()
    yield use
    hashing.pii_keys.cache_clear()


@pytest.fixture
def demo(memberkit, pii_keys):
    pii_keys("key-2025")
    return memberkit((ROOT / "plugins.toml").read_text())


def test_a_replay_after_rotating_the_pii_key_is_a_duplicate(demo, pii_keys):
    member_id = demo.sign_up("demo", "u-1", phone="13800000000")
    assert demo.pay("demo", member_id, "o-1", 10_000)["errors"] == []
    pii_keys("key-2026", "key-2025")  # rotation: the new key first, the old one still verifies
    again = demo.pay("demo", member_id, "o-1", 10_000)
    assert again["duplicate"] is True and again["errors"] == []
    conflict = demo.pay("demo", member_id, "o-1", 9_999)
    assert [e["code"] for e in conflict["errors"]] == ["IDEMPOTENCY_CONFLICT"]
    assert demo.pay("demo", member_id, "o-2", 10_000)["errors"] == []
    with demo.runtime.db.read() as conn:
        stored = dict(conn.execute(select(Event.key, Event.payload_hash).where(Event.kind == "order_paid")).all())
    key_ids = {hashing.key_id(k.encode()) for k in ("key-2025", "key-2026")}
    assert {digest.split(":")[0] for digest in stored.values()} == key_ids  # each hash says its key
    assert all(len(digest) == 64 for digest in stored.values())


def test_a_hash_from_before_versions_were_kept_still_matches(demo, monkeypatch):
    member_id = demo.sign_up("demo", "u-1")
    with monkeypatch.context() as old_memberkit:  # which stored the bare HMAC
        old_memberkit.setattr(intake, "keyed_hash", lambda payload: hashing.keyed_hashes(payload)[1])
        assert demo.pay("demo", member_id, "o-1", 10_000)["errors"] == []
    with demo.runtime.db.read() as conn:
        assert ":" not in conn.execute(select(Event.payload_hash).where(Event.key == "o-1")).scalar()
    assert demo.pay("demo", member_id, "o-1", 10_000)["duplicate"] is True
    assert [e["code"] for e in demo.pay("demo", member_id, "o-1", 1)["errors"]] == ["IDEMPOTENCY_CONFLICT"]


def test_a_phone_given_before_a_rotation_is_still_recognised(demo, pii_keys):
    """Referral abuse checks compare keyed phone hashes: a rotation must not let a known phone look new."""
    referrer = demo.sign_up("demo", "u-1", phone="13800000000")
    code = demo.integrator("demo")("query($id: ID!) { member(id: $id) { referral { code } } }",
                                   {"id": referrer})["member"]["referral"]["code"]
    pii_keys("key-2026", "key-2025")
    friend = demo.integrator("demo")(SIGN_UP, {"input": {"externalId": "u-2", "phone": "138-0000-0000",
                                                         "referralCode": code}})["signUpMember"]
    assert friend["errors"] == [] and "SELF_REFERRAL" in [e["code"] for e in friend["effects"]]


def test_development_secrets_live_beside_the_settings_file(tmp_path, monkeypatch, caplog):
    project, elsewhere = tmp_path / "shop", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    (project / "plugins.toml").write_text("")
    monkeypatch.delenv("MEMBERKIT_SECRETS_FILE", raising=False)
    monkeypatch.setenv("MEMBERKIT_CONFIG", str(project / "plugins.toml"))
    caplog.set_level(logging.INFO, "memberkit.secrets")

    def start_in(folder):
        """A process started in `folder` without the secret variables: what the CLI and server do first."""
        monkeypatch.chdir(folder)
        for name in ("MEMBERKIT_TOKEN_SECRETS", "MEMBERKIT_PII_KEY"):
            monkeypatch.delenv(name, raising=False)
        ensure_secrets()
        return os.environ["MEMBERKIT_TOKEN_SECRETS"], os.environ["MEMBERKIT_PII_KEY"]

    first = start_in(project)
    path = project / "memberkit-secret.key"
    assert path.exists() and oct(path.stat().st_mode & 0o777) == "0o600"
    assert f"MEMBERKIT_TOKEN_SECRETS and MEMBERKIT_PII_KEY not set: generated development secrets into {path}" \
        in caplog.text
    assert start_in(elsewhere) == first and not (elsewhere / "memberkit-secret.key").exists()
    assert f"using the development secrets in {path}" in caplog.text
    assert json.loads(path.read_text())["pii"] not in caplog.text
    hashing.pii_keys.cache_clear()


def test_the_same_phone_after_a_rotation_is_no_change(demo, pii_keys):
    member_id = demo.sign_up("demo", "u-1", phone="13800000000")
    pii_keys("key-2026", "key-2025")
    with demo.runtime.db.read() as conn:
        before = conn.execute(select(MemberPersonal.phone_hash)).scalar()
    update = "mutation($input: UpdateMemberInput!) { updateMember(input: $input) { errors { code } } }"
    payload = demo.integrator("demo")(update, {"input": {"memberId": member_id, "phone": "13800000000"}})
    assert payload["updateMember"] == {"errors": []}
    with demo.runtime.db.read() as conn:
        assert conn.execute(select(MemberPersonal.phone_hash)).scalar() == before  # nothing written
