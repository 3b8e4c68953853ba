"""Errors that say what is wrong (issue 11 point 9): the input field at fault, one line from the CLI for a
database it cannot use (never a traceback), an unknown --shop refused by every command, key ids never cut,
and `memberkit migrate` saying what it applied."""

from __future__ import annotations

import os
import subprocess

import pytest
from typer.testing import CliRunner

from memberkit.cli import app
from tests.conftest import MEMBERKIT, ROOT, SIGN_UP

CANCEL = "mutation($id: ID!) { cancelFlashSale(id: $id) { errors { code field } } }"


@pytest.fixture
def demo(memberkit):
    return memberkit((ROOT / "plugins.toml").read_text())


def test_refusals_name_the_input_field_at_fault(demo):
    integrator = demo.integrator("demo")
    long = integrator(SIGN_UP, {"input": {"externalId": "u" * 201}})["signUpMember"]["errors"]
    assert [(e["code"], e["field"]) for e in long] == [("INVALID_KEY", "externalId")]
    member_id = demo.sign_up("demo", "u-1")
    assert demo.pay("demo", member_id, "o-1", 100)["errors"] == []
    conflict = demo.pay("demo", member_id, "o-1", 200)["errors"]
    assert [(e["code"], e["field"]) for e in conflict] == [("IDEMPOTENCY_CONFLICT", "orderId")]
    assert demo.refund("demo", "o-1", "r-1", 50)["errors"] == []
    conflict = demo.refund("demo", "o-1", "r-1", 60)["errors"]
    assert [(e["code"], e["field"]) for e in conflict] == [("IDEMPOTENCY_CONFLICT", "refundId")]
    missing = integrator(CANCEL, {"id": "fs_nope"})["cancelFlashSale"]["errors"]
    assert [(e["code"], e["field"]) for e in missing] == [("SALE_NOT_FOUND", "id")]


@pytest.mark.parametrize(("url", "reason"), [
    ("postgresql://someone:hunter2@127.0.0.1:1/shop", "Connection refused"),
    ("not a url", "Could not parse"),
    ("mysql://127.0.0.1/shop", "'mysql' is not a database memberkit runs on"),
])
def test_a_database_the_cli_cannot_use_is_one_line(tmp_path, url, reason):
    (tmp_path / "plugins.toml").write_text((ROOT / "plugins.toml").read_text())
    env = {**os.environ, "MEMBERKIT_DATABASE_URL": url, "MEMBERKIT_CONFIG": str(tmp_path / "plugins.toml")}
    done = subprocess.run([MEMBERKIT, "migrate"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "hunter2" not in done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.startswith("error ")]
    assert reason in line and "MEMBERKIT_DATABASE_URL" in line


@pytest.mark.parametrize("command", [["schema"], ["keys", "create"], ["keys", "list"], ["jobs", "run"]])
def test_an_unknown_shop_is_an_error_on_every_command(tmp_path, settings_file, command):
    config = settings_file((ROOT / "plugins.toml").read_text())
    env = {"MEMBERKIT_CONFIG": str(config), "MEMBERKIT_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    result = CliRunner().invoke(app, [*command, "--shop", "nope"], env=env)
    assert result.exit_code == 1
    assert f"no shop 'nope' in {config}; its shops: demo" in result.stderr


def test_keys_list_never_cuts_an_id_and_migrate_says_what_it_applied(tmp_path, settings_file):
    config = settings_file((ROOT / "plugins.toml").read_text())
    env = {"MEMBERKIT_CONFIG": str(config), "MEMBERKIT_DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
           "COLUMNS": "40"}
    first = CliRunner().invoke(app, ["migrate"], env=env)
    assert first.exit_code == 0 and first.stdout.startswith("applied ") and "core_0001" in first.stdout
    again = CliRunner().invoke(app, ["migrate"], env=env)
    assert again.stdout == "database is up to date\n"
    created = CliRunner().invoke(app, ["keys", "create", "--shop", "demo", "--label", "the pos"], env=env)
    key_id = created.stdout.split("key ", 1)[1].split(" ", 1)[0]
    listed = CliRunner().invoke(app, ["keys", "list"], env=env).stdout
    assert key_id in listed.split() and "the pos" in listed
    revoked = CliRunner().invoke(app, ["keys", "revoke", key_id], env=env)
    assert revoked.exit_code == 0 and key_id in revoked.stdout


def test_refusal_messages_say_what_was_wrong_then_what_was_expected(demo):
    member_id = demo.sign_up("demo", "u-1")
    negative = demo.pay("demo", member_id, "o-1", -5)["errors"]
    assert [e["message"] for e in negative] == ["total is -5: expected 0 or more"]
    zero = demo.pay("demo", member_id, "o-1", 100, lines=[{"sku": "A", "quantity": 0, "unitPrice": 100}])["errors"]
    assert [e["message"] for e in zero] == ["lines[0].quantity is 0: expected at least 1"]
    phone = demo.integrator("demo")(SIGN_UP, {"input": {"externalId": "u-2", "phone": "12-34"}})["signUpMember"]
    [error] = phone["errors"]
    assert error["message"].startswith("phone has 4 digits") and "12-34" not in error["message"]  # never echoed
