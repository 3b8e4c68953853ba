"""The composed schema: the contract holds, one schema per plugin set, limits refuse abusive queries."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from memberkit.cli import app
from memberkit.server import GraphQLDispatcher
from tests.conftest import CONTRACT, ROOT, SHARED, breaking_changes, shared_only

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


def demo_sdl(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("MEMBERKIT_DATABASE_URL", f"sqlite:///{tmp_path}/unused.db")
    result = CliRunner().invoke(app, ["schema", "--shop", "demo", "--config", str(ROOT / "plugins.toml")])
    assert result.exit_code == 0, result.output
    return result.output


def test_the_served_demo_schema_is_the_committed_one(tmp_path, monkeypatch):
    """schema/demo.graphql is what the demo shop serves; after a change to the API, regenerate it with
    `memberkit schema --shop demo > schema/demo.graphql` and review the diff."""
    assert demo_sdl(tmp_path, monkeypatch) == (ROOT / "schema" / "demo.graphql").read_text()


def test_the_demo_schema_keeps_the_projects_contract(tmp_path, monkeypatch):
    assert breaking_changes(demo_sdl(tmp_path, monkeypatch)) == []


@pytest.mark.parametrize("part", sorted(p.stem for p in (ROOT / "schema" / "contract").glob("*.graphql")))
def test_the_demo_schema_keeps_each_part_of_the_contract_built_so_far(tmp_path, monkeypatch, part):
    """schema/contract/PART.graphql: the newer capabilities' API (outbound events, segments), each a copy of
    the specification's part once it is built, checked together with the core contract."""
    contract = CONTRACT.read_text() + "\n" + (ROOT / "schema" / "contract" / f"{part}.graphql").read_text()
    assert breaking_changes(demo_sdl(tmp_path, monkeypatch), contract) == []


def test_the_contract_check_can_fail(tmp_path, monkeypatch):
    served = demo_sdl(tmp_path, monkeypatch).replace("  externalId: String!\n", "", 1)
    assert any("externalId" in change for change in breaking_changes(served))


@shared_only
def test_demo_shop_schema_keeps_the_shared_core_contract(tmp_path, monkeypatch):
    result_output = demo_sdl(tmp_path, monkeypatch)
    sdl = tmp_path / "demo.graphql"
    sdl.write_text(result_output)
    check = subprocess.run([sys.executable, str(SHARED / "check-contract.py"), "--core", str(sdl)],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0 and check.stdout.strip().endswith("contract kept"), check.stdout + check.stderr


def test_schema_for_an_unknown_shop_names_the_shops(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMBERKIT_DATABASE_URL", f"sqlite:///{tmp_path}/unused.db")
    result = CliRunner().invoke(app, ["schema", "--shop", "nope", "--config", str(ROOT / "plugins.toml")])
    assert result.exit_code == 1 and "no shop 'nope' in " in result.output and "; its shops: demo" in result.output


def test_one_schema_per_distinct_plugin_set(make_runtime):
    runtime = make_runtime(THREE_SHOPS)
    dispatcher = GraphQLDispatcher(runtime, development=False)
    assert list(dispatcher.apps) == [("checkout", "kpis")]  # three shops, one plugin set (the defaults), built once


def test_shop_query_describes_the_callers_shop(api):
    data = api("{ shop { slug name currency timezone plugins } }", key=api.key("beta"))
    assert data["shop"] == {"slug": "beta", "name": "Beta", "currency": "EUR", "timezone": "Europe/Berlin",
                            "plugins": ["checkout", "kpis"]}


def test_alias_and_token_limits(api):
    # (core's schema has no recursive type, so no query can reach the depth limit of 10 yet)
    key = api.key("alpha")
    aliases = " ".join(f"s{i}: shop {{ slug }}" for i in range(31))
    assert "aliases" in api.errors(f"{{ {aliases} }}", key=key)[0]["message"].lower()
    tokens = "{ " + " ".join(["__typename"] * 2100) + " }"
    assert "token" in api.errors(tokens, key=key)[0]["message"].lower()


def test_a_plugin_cannot_replace_cores_member_fields():
    import pytest

    from memberkit.schema.builder import SchemaBuilder

    with pytest.raises(ValueError, match="cannot replace core's Member field 'coupons'"):
        SchemaBuilder(()).member_field("coupons", lambda root: [])


def test_input_objects_are_built_exactly_as_strawberry_builds_them():
    """schema/inputs.py plans each input type once; the value it builds equals strawberry's own conversion."""
    from datetime import UTC, date, datetime

    from strawberry.types.arguments import InputContext, convert_argument

    from memberkit import config as settings_module
    from memberkit.schema.builder import build_schema
    from memberkit.schema.inputs import InputPlan

    plugins = settings_module.load(ROOT / "plugins.toml").shops["demo"].plugins
    schema = build_schema(plugins)
    definitions = {name: t.definition for name, t in schema.schema_converter.type_map.items()
                   if getattr(t.definition, "is_input", False)}
    assert definitions and all(isinstance(d.from_input, InputPlan) for d in definitions.values())
    registry = schema.schema_converter.scalar_registry
    values = {
        "OrderPaidInput": {"orderId": "o-1", "memberId": "mem_1", "total": 9900, "couponCodes": None,
                           "lines": [{"sku": "A", "quantity": 2, "unitPrice": 5000, "category": "shoes"},
                                     {"sku": "B", "quantity": 1, "unitPrice": 100}],
                           "paidAt": datetime(2026, 5, 1, 12, tzinfo=UTC), "reservationIds": ["fr_1"]},
        "SignUpMemberInput": {"externalId": "u-1", "birthday": date(1990, 2, 28), "tags": ["vip"], "phone": None},
        "CartInput": {"lines": [{"sku": "A", "quantity": 1, "unitPrice": 100}], "couponCodes": []},
    }
    for name, value in values.items():
        definition = definitions[name]
        context = InputContext(info=None, config=schema.config, scalar_registry=registry, path=())
        ours = convert_argument(value, definition.origin, registry, schema.config)
        plans = {n: d.from_input for n, d in definitions.items()}
        try:
            for d in definitions.values():
                d.from_input = None  # strawberry's generic conversion, nested inputs included
            theirs = convert_argument(value, definition.origin, registry, schema.config)
        finally:
            for n, d in definitions.items():
                d.from_input = plans[n]
        assert ours == theirs, name
        assert ours == plans[name](definition.origin, value, context)
