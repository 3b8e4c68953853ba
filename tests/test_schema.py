"""The composed schema: the contract holds, one schema per plugin set, limits refuse abusive queries."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from core.app import GraphQLDispatcher
from core.cli import app
from tests.conftest import ROOT, SHARED

THREE_SHOPS = """
[shops.a]
name = "A"
currency = "CNY"
timezone = "Asia/Shanghai"

[shops.b]
name = "B"
currency = "CNY"
timezone = "Asia/Shanghai"

[shops.c]
name = "C"
currency = "USD"
timezone = "America/New_York"
plugins = []
"""


def test_demo_shop_schema_keeps_the_core_contract(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMBERKIT_DATABASE_URL", f"sqlite:///{tmp_path}/unused.db")
    result = CliRunner().invoke(app, ["schema", "--shop", "demo", "--config", str(ROOT / "plugins.toml")])
    assert result.exit_code == 0, result.output
    sdl = tmp_path / "demo.graphql"
    sdl.write_text(result.output)
    check = subprocess.run([sys.executable, str(SHARED / "check-contract.py"), "--core", str(sdl)],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0 and check.stdout.strip().endswith("contract kept"), check.stdout + check.stderr


def test_schema_for_an_unknown_shop_names_the_shops(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMBERKIT_DATABASE_URL", f"sqlite:///{tmp_path}/unused.db")
    result = CliRunner().invoke(app, ["schema", "--shop", "nope", "--config", str(ROOT / "plugins.toml")])
    assert result.exit_code == 1 and "no shop 'nope'; shops: demo" in result.output


def test_one_schema_per_distinct_plugin_set(make_runtime):
    runtime = make_runtime(THREE_SHOPS)
    dispatcher = GraphQLDispatcher(runtime, development=False)
    assert list(dispatcher.apps) == [()]  # three shops, one plugin set, built once


def test_shop_query_describes_the_callers_shop(api):
    data = api("{ shop { slug name currency timezone plugins } }", key=api.key("beta"))
    assert data["shop"] == {"slug": "beta", "name": "Beta", "currency": "EUR", "timezone": "Europe/Berlin",
                            "plugins": []}


def test_alias_and_token_limits(api):
    # (core's schema has no recursive type, so no query can reach the depth limit of 10 yet)
    key = api.key("alpha")
    aliases = " ".join(f"s{i}: shop {{ slug }}" for i in range(31))
    assert "aliases" in api.errors(f"{{ {aliases} }}", key=key)[0]["message"].lower()
    tokens = "{ " + " ".join(["__typename"] * 2100) + " }"
    assert "token" in api.errors(tokens, key=key)[0]["message"].lower()


def test_a_plugin_cannot_replace_cores_member_fields():
    import pytest

    from schema.builder import SchemaBuilder

    with pytest.raises(ValueError, match="cannot replace core's Member field 'coupons'"):
        SchemaBuilder(()).member_field("coupons", lambda root: [])
