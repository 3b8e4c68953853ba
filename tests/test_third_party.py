"""A third-party plugin, installed as its own distribution, works for the shop that enables it and only there.

The plugin is ``tests/thirdparty/mk_stamps`` (a stamp card). The test copies it to a temporary directory,
installs it with pip into a target directory of its own and puts that directory on ``sys.path``: memberkit
finds it by its ``memberkit`` entry point alone. Nothing in the repository names it or changes for it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import inspect, select
from sqlmodel import SQLModel

from memberkit import config as settings_module
from memberkit.core import plugins as plugin_registry
from tests.conftest import ORDER_PAID, ROOT, SIGN_UP
from tests.distributions import installed

PLUGIN_SOURCE = Path(__file__).parent / "thirdparty" / "mk_stamps"
MODULE = "mk_stamps"

SETTINGS = """
[shops.alpha]
name = "Alpha"
currency = "CNY"
timezone = "Asia/Shanghai"
plugins = ["stamps"]

[shops.alpha.coupons.FREE_COFFEE]
title = "a free coffee"
kind = "FIXED"
value = 1800

[shops.alpha.settings.stamps]
stamps_per_order = 2
card_size = 5
coupon_template = "FREE_COFFEE"

[shops.beta]
name = "Beta"
currency = "EUR"
timezone = "Europe/Berlin"

[shops.beta.coupons.FREE_COFFEE]
title = "a free coffee"
kind = "FIXED"
value = 300
"""

MEMBER_WITH_STAMPS = """
query($id: ID) { member(id: $id) { id stamps coupons(status: null) { title kind value status source } } }"""

MEMBER_FIELDS = """{ __type(name: "Member") { fields { name } } }"""


GIT = shutil.which("git") or "git"


def git(*args: str) -> str:
    done = subprocess.run([GIT, "-C", str(ROOT), *args], capture_output=True, text=True, check=True)  # noqa: S603
    return done.stdout


def repository_state() -> str:
    """Every changed or untracked file of the repository, with what is in it (not merely its name)."""
    return git("status", "--porcelain", "--untracked-files=all") + git("diff", "HEAD")


@dataclass
class Installed:
    target: Path
    repository_before: str

    def assert_repository_unchanged(self) -> None:
        assert repository_state() == self.repository_before, "the test changed a file of the repository"


@pytest.fixture(scope="module")
def installed_stamps(tmp_path_factory):
    """The plugin installed into a folder of its own and on sys.path; all of it undone after."""
    before = repository_state()
    with installed(PLUGIN_SOURCE, MODULE, "stamps", tmp_path_factory.mktemp("third_party")) as target:
        assert repository_state() == before, "installing the plugin changed a file of the repository"
        yield target


@pytest.fixture
def stamps(installed_stamps) -> Installed:
    """The installed plugin, and the repository as it was when the test began (compared at its end)."""
    return Installed(installed_stamps, repository_state())


def test_the_plugin_is_its_own_installed_distribution(stamps):
    distribution = importlib.metadata.distribution("mk-stamps")
    assert Path(distribution.locate_file("")).resolve() == stamps.target.resolve()
    [entry_point] = distribution.entry_points.select(group="memberkit")
    assert (entry_point.name, entry_point.value) == ("stamps", MODULE)

    assert "stamps" in plugin_registry.installed()
    plugin = plugin_registry.load("stamps")
    assert Path(plugin.hooks.__file__).resolve().is_relative_to(stamps.target.resolve())
    assert Path(plugin.migrations).resolve() == (stamps.target / MODULE / "migrations").resolve()

    # Not a built-in: found by its entry point only.
    assert "stamps" not in plugin_registry.builtin()
    stamps.assert_repository_unchanged()


def _sign_up(api, key: str, external_id: str) -> dict:
    payload = api(SIGN_UP, {"input": {"externalId": external_id}}, key)["signUpMember"]
    assert payload["errors"] == [], payload
    return payload


def _order(api, key: str, member_id: str, order_id: str) -> dict:
    payload = api(ORDER_PAID, {"input": {"orderId": order_id, "memberId": member_id, "total": 1800}},
                  key)["recordOrderPaid"]
    assert payload["errors"] == [], payload
    return payload


def _stamp_rows(runtime) -> list[tuple[str, str, str, int]]:
    with runtime.db.read() as conn:
        table = SQLModel.metadata.tables["stamps_card"]
        rows = conn.execute(select(table.c.shop, table.c.member_id, table.c.order_id, table.c.stamps)
                            .order_by(table.c.id)).all()
    return [tuple(row) for row in rows]


def _member_field_names(api, key: str) -> set[str]:
    return {field["name"] for field in api(MEMBER_FIELDS, key=key)["__type"]["fields"]}


def test_enabled_for_one_shop_it_gets_events_owns_a_table_and_adds_a_field(stamps, make_runtime, make_api):
    runtime = make_runtime(SETTINGS)
    api = make_api(runtime)
    alpha, beta = api.key("alpha"), api.key("beta")

    # Its settings were validated by its own model; its table was created by its own Alembic branch.
    settings = runtime.shop("alpha").settings_for("stamps")
    assert type(settings).__module__ == "mk_stamps.settings"
    assert (settings.stamps_per_order, settings.card_size, settings.coupon_template) == (2, 5, "FREE_COFFEE")
    assert runtime.shop("beta").settings_for("stamps") is None
    with runtime.db.read() as conn:
        assert inspect(conn).has_table("stamps_card")
        versions = {row[0] for row in conn.exec_driver_sql("SELECT version_num FROM alembic_version")}
    assert "stamps_0001" in versions

    # Alpha: sign-up and paid orders reach the plugin, in the event's transaction.
    signed_up = _sign_up(api, alpha, "a-1")
    member_id = signed_up["member"]["id"]
    assert [(e["plugin"], e["kind"]) for e in signed_up["effects"]] == [("stamps", "STAMP_CARD_OPENED")]

    first = _order(api, alpha, member_id, "o-1")
    assert [(e["plugin"], e["kind"], e["rule"]) for e in first["effects"]] == [
        ("stamps", "STAMPS_ADDED", "stamps_per_order")]
    assert "2 of 5" in first["effects"][0]["description"]
    _order(api, alpha, member_id, "o-2")
    third = _order(api, alpha, member_id, "o-3")  # 6 stamps: the card of 5 is full, 1 on the next
    assert [(e["plugin"], e["kind"], e["rule"]) for e in third["effects"]] == [
        ("stamps", "STAMPS_ADDED", "stamps_per_order"), ("stamps", "COUPON_ISSUED", "full_card")]
    assert "a free coffee" in third["effects"][1]["description"]

    # A retried order is core's duplicate: the plugin runs once, so no second row.
    again = api(ORDER_PAID, {"input": {"orderId": "o-3", "memberId": member_id, "total": 1800}},
                alpha)["recordOrderPaid"]
    assert again["duplicate"] is True and again["effects"] == third["effects"]
    assert _stamp_rows(runtime) == [("alpha", member_id, f"o-{n}", 2) for n in (1, 2, 3)]

    # Its field on Member, and the coupon it issued through the core wallet.
    member = api(MEMBER_WITH_STAMPS, {"id": member_id}, alpha)["member"]
    assert member["stamps"] == 1
    assert member["coupons"] == [{"title": "a free coffee", "kind": "FIXED", "value": 1800,
                                  "status": "AVAILABLE", "source": "stamps:full_card"}]
    assert "stamps" in _member_field_names(api, alpha)

    # Beta did not enable it: no field, no effects, no rows.
    assert "stamps" not in _member_field_names(api, beta)
    beta_signed_up = _sign_up(api, beta, "b-1")
    beta_member = beta_signed_up["member"]["id"]
    assert beta_signed_up["effects"] == []
    assert _order(api, beta, beta_member, "o-1")["effects"] == []
    errors = api.errors(MEMBER_WITH_STAMPS, {"id": beta_member}, beta)
    assert errors[0]["message"].startswith("Cannot query field 'stamps' on type 'Member'.")
    without_stamps = "query($id: ID) { member(id: $id) { coupons(status: null) { source } } }"
    assert api(without_stamps, {"id": beta_member}, beta)["member"] == {"coupons": []}
    assert [row for row in _stamp_rows(runtime) if row[0] == "beta"] == []
    assert len(_stamp_rows(runtime)) == 3

    stamps.assert_repository_unchanged()


def _problems(settings_file, body: str, name: str) -> tuple[Path, list[settings_module.Problem], str]:
    path = settings_file(body, name)
    with pytest.raises(settings_module.SettingsError) as raised:
        settings_module.load(path)
    return path, raised.value.problems, str(raised.value)


def test_its_settings_model_refuses_a_bad_value_and_an_unknown_key(stamps, settings_file):
    path, problems, message = _problems(
        settings_file, SETTINGS.replace("stamps_per_order = 2", "stamps_per_order = 0"), "zero.toml")
    assert len(problems) == 1
    problem = problems[0]
    assert (problem.file, problem.shop, problem.plugin, problem.key) == (str(path), "alpha", "stamps",
                                                                         "stamps_per_order")
    assert "greater than or equal to 1" in problem.message and "got 0" in problem.message
    assert message.startswith(f"{path}, shop 'alpha', plugin 'stamps', key 'stamps_per_order': ")

    path, problems, message = _problems(
        settings_file, SETTINGS.replace("stamps_per_order = 2", "stamps_per_ordre = 2"), "typo.toml")
    assert [(p.file, p.shop, p.plugin, p.key, p.message) for p in problems] == [
        (str(path), "alpha", "stamps", "stamps_per_ordre", "unknown setting (check its spelling)")]

    path, problems, _ = _problems(settings_file, SETTINGS.replace('coupon_template = "FREE_COFFEE"', ""),
                                  "missing.toml")
    assert [(p.shop, p.plugin, p.key, p.message) for p in problems] == [
        ("alpha", "stamps", "coupon_template", "missing: a value is required")]

    # Settings for it in a shop that did not enable it are a mistake too.
    beta_settings = SETTINGS + "\n[shops.beta.settings.stamps]\nstamps_per_order = 1\n"
    _, problems, _ = _problems(settings_file, beta_settings, "beta.toml")
    assert [(p.shop, p.plugin, p.key) for p in problems] == [("beta", "stamps", "settings.stamps")]
    stamps.assert_repository_unchanged()


def test_an_unknown_plugin_name_lists_the_installed_ones(stamps, settings_file):
    body = SETTINGS.replace('plugins = ["stamps"]', 'plugins = ["stamps", "stampz"]')
    path, problems, message = _problems(settings_file, body, "unknown.toml")
    assert len(problems) == 1
    problem = problems[0]
    assert (problem.file, problem.shop, problem.plugin) == (str(path), "alpha", "stampz")
    installed = problem.message.split("installed: ", 1)[1].rstrip(")").split(", ")
    assert "stamps" in installed and installed == plugin_registry.installed()
    assert "shop 'alpha'" in message and "'stampz'" in message
    stamps.assert_repository_unchanged()
