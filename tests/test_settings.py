"""`memberkit check`: every problem of a settings file, told with where it is and what was expected."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from memberkit import config as settings_module
from memberkit.cli import app
from memberkit.core import plugins as plugin_registry
from tests import sample_plugin
from tests.conftest import ROOT, TWO_SHOPS

SHOP = """
[shops.alpha]
name = "Alpha"
currency = "CNY"
timezone = "Asia/Shanghai"
"""


def check(path) -> tuple[int, list[str], str]:
    """Run `memberkit check PATH`; return the exit code, the problem lines (stderr) and stdout."""
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    problems = [line for line in result.stderr.splitlines() if line.startswith("error ")]
    return result.exit_code, problems, result.stdout


def problems_of(path) -> list[settings_module.Problem]:
    with pytest.raises(settings_module.SettingsError) as caught:
        settings_module.load(path)
    return caught.value.problems


@pytest.fixture
def dummy_plugin(add_plugin):
    """The plugin 'dummy' (tests/sample_plugin.py): settings `batch_size`, a positive integer, default 10."""
    add_plugin(sample_plugin)
    return "dummy"


def test_good_file_exits_0_with_an_ok_line_per_shop(settings_file):
    path = settings_file(TWO_SHOPS)
    code, problems, out = check(path)
    assert code == 0 and problems == []
    assert out.splitlines() == [f"{path}: shop 'alpha' ok (checkout, kpis)",
                                f"{path}: shop 'beta' ok (checkout, kpis)"]


def test_repository_plugins_toml_passes():
    code, problems, out = check(ROOT / "plugins.toml")
    assert code == 0, problems
    assert "shop 'demo' ok" in out


def test_lowercase_currency_names_shop_key_and_expectation(settings_file):
    path = settings_file(SHOP.replace('"CNY"', '"cny"'))
    code, problems, _ = check(path)
    assert code == 1
    assert problems == [f"error {path}, shop 'alpha', key 'currency': "
                        "got 'cny': an upper-case ISO 4217 code such as CNY"]


def test_unknown_timezone_is_refused(settings_file):
    path = settings_file(SHOP.replace("Asia/Shanghai", "Asia/Peking-ish"))
    code, problems, _ = check(path)
    assert code == 1
    assert problems == [f"error {path}, shop 'alpha', key 'timezone': "
                        "got 'Asia/Peking-ish': an IANA time zone such as Asia/Shanghai"]


def test_misspelt_shop_key_is_named(settings_file):
    path = settings_file(SHOP + 'plugns = ["points"]\n')
    code, problems, _ = check(path)
    assert code == 1
    assert problems == [f"error {path}, shop 'alpha', key 'plugns': unknown setting (check its spelling)"]


def test_percent_coupon_over_100_is_refused_on_its_value(settings_file):
    path = settings_file(SHOP + """
[shops.alpha.coupons.HALF]
title = "150% off"
kind = "PERCENT"
value = 150
""")
    [problem] = problems_of(path)
    assert (problem.shop, problem.plugin, problem.key) == ("alpha", None, "coupons.HALF.value")
    assert "percentage from 1 to 100" in problem.message and "150" in problem.message
    code, lines, _ = check(path)
    assert code == 1 and lines == [f"error {problem}"]


def test_a_misspelt_plugin_with_its_settings_is_one_problem(settings_file):
    path = settings_file(SHOP + 'plugins = ["pionts"]\n[shops.alpha.settings.points]\npoints_per_unit = 1\n')
    [problem] = problems_of(path)
    assert problem.message.startswith("'pionts' is not installed; did you mean 'points'?")


def test_coupon_with_valid_days_and_valid_until_is_refused(settings_file):
    path = settings_file(SHOP + """
[shops.alpha.coupons.BOTH]
title = "both"
kind = "FIXED"
value = 1000
valid_days = 30
valid_until = 2026-12-31T23:59:59+08:00
""")
    [problem] = problems_of(path)
    assert (problem.shop, problem.key) == ("alpha", "coupons.BOTH.valid_until")
    assert problem.message.startswith("give valid_days or valid_until, not both")
    assert check(path)[0] == 1


def test_negative_min_spend_is_refused(settings_file):
    path = settings_file(SHOP + """
[shops.alpha.coupons.NEG]
title = "neg"
kind = "FIXED"
value = 1000
min_spend = -1
""")
    code, problems, _ = check(path)
    assert code == 1
    assert problems == [f"error {path}, shop 'alpha', key 'coupons.NEG.min_spend': "
                        "got -1: expected greater than or equal to 0"]


def test_settings_for_a_plugin_the_shop_does_not_enable_are_refused(settings_file, dummy_plugin):
    path = settings_file(SHOP + "[shops.alpha.settings.dummy]\nbatch_size = 5\n")
    code, problems, _ = check(path)
    assert code == 1
    assert problems == [f"error {path}, shop 'alpha', plugin 'dummy', key 'settings.dummy': "
                        "settings of 'dummy', which the shop does not enable (enabled: checkout, kpis)"]


def test_unknown_plugin_names_shop_plugin_and_installed_plugins(settings_file, dummy_plugin):
    path = settings_file(SHOP + 'plugins = ["dummy", "pionts"]\n')
    [problem] = problems_of(path)
    assert (problem.shop, problem.plugin, problem.key) == ("alpha", "pionts", "plugins")
    assert problem.message == (f"'pionts' is not installed; did you mean 'points'? "
                               f"(installed: {', '.join(plugin_registry.installed())})")
    assert "dummy" in problem.message
    code, lines, _ = check(path)
    assert code == 1 and lines == [f"error {problem}"]


def test_toml_syntax_error_is_one_problem(settings_file):
    path = settings_file(SHOP + "[shops.alpha.coupons\n")
    code, problems, _ = check(path)
    assert code == 1 and len(problems) == 1
    assert problems[0].startswith(f"error {path}: not valid TOML: ") and "(at line 6, column" in problems[0]


def test_missing_file_is_one_problem(tmp_path):
    path = tmp_path / "nowhere.toml"
    code, problems, _ = check(path)
    assert code == 1 and problems == [f"error {path}: no settings file at {path}: run memberkit in the folder of "
                                      "your plugins.toml, or point MEMBERKIT_CONFIG (or --config) at it"]


@pytest.mark.parametrize("command", [["check"], ["migrate"], ["serve"], ["schema", "--shop", "demo"],
                                     ["keys", "create", "--shop", "demo"], ["keys", "list"],
                                     ["keys", "revoke", "key_x"], ["jobs", "run"]])
def test_every_command_run_without_settings_says_which_file_it_looked_for(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEMBERKIT_CONFIG", raising=False)
    result = CliRunner().invoke(app, command, env={"MEMBERKIT_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
    assert result.exit_code == 1, result.output
    said = result.stderr.replace("\n", " ")
    assert f"no settings file at {tmp_path / 'plugins.toml'}" in said and "MEMBERKIT_CONFIG" in said, said
    assert result.stderr.endswith("\n") and not (tmp_path / "x.db").exists()  # nothing was created


def test_several_problems_are_all_printed(settings_file):
    path = settings_file("""
[shops.alpha]
name = "Alpha"
currency = "cny"
timezone = "Nowhere/Land"
tmezone = "Asia/Shanghai"

[shops.alpha.coupons.HALF]
title = "150% off"
kind = "PERCENT"
value = 150
min_spend = -5

[shops.beta]
name = "Beta"
currency = "EUR"
timezone = "Europe/Berlin"
plugins = ["nope"]
""")
    code, problems, out = check(path)
    assert code == 1 and out == ""
    where = [line.split(": ", 1)[0].removeprefix(f"error {path}, ") for line in problems]
    assert sorted(where) == sorted([
        "shop 'alpha', key 'currency'",
        "shop 'alpha', key 'timezone'",
        "shop 'alpha', key 'tmezone'",
        "shop 'alpha', key 'coupons.HALF.value'",
        "shop 'alpha', key 'coupons.HALF.min_spend'",
        "shop 'beta', plugin 'nope', key 'plugins'",  # found although the file's shape is wrong elsewhere
    ]), problems


def test_plugin_settings_are_validated_by_the_plugin_model(settings_file, dummy_plugin):
    enabled = SHOP + 'plugins = ["dummy"]\n'
    good = settings_file(enabled + "[shops.alpha.settings.dummy]\nbatch_size = 25\n", "good.toml")
    loaded = settings_module.load(good)
    assert loaded.shop("alpha").settings_for("dummy") == sample_plugin.DummySettings(batch_size=25)
    default = settings_module.load(settings_file(enabled, "default.toml"))
    assert default.shop("alpha").settings_for("dummy").batch_size == 10

    bad = settings_file(enabled + "[shops.alpha.settings.dummy]\nbatch_size = 0\nbatchsize = 3\n")
    problems = problems_of(bad)
    assert [(p.shop, p.plugin, p.key) for p in problems] == [
        ("alpha", "dummy", "batch_size"), ("alpha", "dummy", "batchsize")]
    assert problems[0].message == "got 0: expected greater than 0"
    assert problems[1].message == "unknown setting (check its spelling)"
    code, lines, _ = check(bad)
    assert code == 1
    where = f"error {bad}, shop 'alpha', plugin 'dummy'"
    assert lines == [f"{where}, key 'batch_size': got 0: expected greater than 0",
                     f"{where}, key 'batchsize': unknown setting (check its spelling)"]


def test_a_bad_slug_is_reported_beside_other_problems(settings_file):
    path = settings_file("""
    [shops.Bad]
    name = "Bad"
    currency = "CNY"
    timezone = "Asia/Shanghai"

    [shops.good]
    name = "Good"
    currency = "eur"
    timezone = "Europe/Berlin"
    """)
    with pytest.raises(settings_module.SettingsError) as caught:
        settings_module.load(path)
    found = {(p.shop, p.key) for p in caught.value.problems}
    assert found == {("Bad", None), ("good", "currency")}


def test_the_settings_version_is_the_rules_in_force(settings_file):
    def version(points_table: str) -> str:
        body = TWO_SHOPS.replace("[shops.alpha.coupons.TEN_OFF]",
                                 f'plugins = ["points"]\n{points_table}\n[shops.alpha.coupons.TEN_OFF]', 1)
        return settings_module.load(settings_file(body)).shop("alpha").version

    implicit = version("")
    assert version("[shops.alpha.settings.points]\npending_days = 0\n") == implicit  # the default, spelt out
    assert version("[shops.alpha.settings.points]\npending_days = 3\n") != implicit


def test_a_plugin_setting_naming_an_unknown_coupon_template_is_refused(settings_file):
    body = TWO_SHOPS.replace("[shops.alpha.coupons.TEN_OFF]", 'plugins = ["points"]\n\n'
                             '[[shops.alpha.settings.points.rewards]]\nid = "r"\ntitle = "R"\ncost_points = 5\n'
                             'coupon_template = "TEN_OF"\n\n[shops.alpha.coupons.TEN_OFF]', 1)
    with pytest.raises(settings_module.SettingsError) as caught:
        settings_module.load(settings_file(body))
    [problem] = caught.value.problems
    assert (problem.shop, problem.plugin, problem.key) == ("alpha", "points", "rewards.0.coupon_template")
    assert problem.message == "unknown coupon template 'TEN_OF': expected one of this shop's [coupons] " \
                              "(FIVE_PERCENT, TEN_OFF)"


DEMO = (ROOT / "plugins.toml").read_text()


@pytest.mark.parametrize(("old", "new", "plugin", "key", "name"), [
    ('monthly_coupon_min_tier = "SILVER"', 'monthly_coupon_min_tier = "SILVR"', "perks", "monthly_coupon_min_tier",
     "SILVR"),
    ('early_access_min_tier = "GOLD"', 'early_access_min_tier = "GLOD"', "member_only", "early_access_min_tier",
     "GLOD"),
    ("birthday_tier_percents = { SILVER = 10 }", "birthday_tier_percents = { SILVR = 10 }", "perks",
     "birthday_tier_percents.SILVR", "SILVR"),
])
def test_a_tier_code_in_any_plugins_settings_is_checked_against_the_shops_tiers(settings_file, old, new, plugin,
                                                                                 key, name):
    assert old in DEMO
    path = settings_file(DEMO.replace(old, new, 1))
    [problem] = problems_of(path)
    assert (problem.shop, problem.plugin, problem.key) == ("demo", plugin, key)
    assert problem.message == f"unknown tier {name!r}: expected one of this shop's tiers (DIAMOND, GOLD, REGULAR, " \
                              "SILVER)"
    code, lines, _ = check(path)
    assert code == 1 and lines == [f"error {problem}"]


def test_tier_codes_go_unchecked_where_no_plugin_defines_tiers(settings_file):
    """member_only's default early_access_min_tier names GOLD; a shop without tiering has no tiers to check."""
    body = SHOP + 'plugins = ["member_only"]\n[shops.alpha.settings.member_only]\nearly_access_min_tier = "VIP"\n'
    assert settings_module.load(settings_file(body)).shop("alpha").plugins == ("checkout", "kpis", "member_only")
