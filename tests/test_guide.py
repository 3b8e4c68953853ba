"""docs/plugins.md cannot rot: its opening plugin is extracted, installed as its own distribution, enabled,
migrated from its model and queried; its test-kit example runs; every hook and every argument is documented
with when it runs, its transaction rules and an example."""

from __future__ import annotations

import inspect
import re
import textwrap

import pytest
from typer.testing import CliRunner

from memberkit.cli import app
from memberkit.core import hookspecs
from tests.conftest import ROOT
from tests.distributions import installed

GUIDE = (ROOT / "docs" / "plugins.md").read_text()
FILES = dict(re.findall(r"^```\w+ file=(\S+)\n(.*?)^```$", GUIDE, re.M | re.S))
HOOKS = sorted(name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, "memberkit_spec"))

SETTINGS = """
[shops.demo]
name = "Demo"
currency = "CNY"
timezone = "Asia/Shanghai"
plugins = ["visits"]

[shops.demo.settings.visits]
min_total = 1000

[shops.other]
name = "Other"
currency = "CNY"
timezone = "Asia/Shanghai"
"""


def test_the_opening_plugin_is_small():
    python = {path: text for path, text in FILES.items() if path.endswith(".py")}
    assert set(FILES) == {"pyproject.toml", *python} and 1 <= len(python) <= 3
    assert sum(len(text.splitlines()) for text in python.values()) <= 40
    assert GUIDE.index("```python file=") < GUIDE.index("## The declaration")  # the plugin comes first


@pytest.fixture(scope="module")
def visits(tmp_path_factory):
    """The guide's plugin, extracted, installed as its own distribution, its first migration written as the
    guide says (``memberkit migrations new``)."""
    tmp = tmp_path_factory.mktemp("guide")
    source = tmp / "mk-visits"
    for path, text in FILES.items():
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        (source / path).write_text(text)
    with installed(source, "mk_visits", "visits", tmp / "work") as target:
        written = CliRunner().invoke(app, ["migrations", "new", "--plugin", "visits", "-m", "visits table"])
        assert written.exit_code == 0, written.output
        yield target


def test_the_guides_plugin_installs_migrates_and_answers(visits, make_runtime, make_api):
    assert [p.name for p in (visits / "mk_visits" / "migrations").glob("*.py")] == ["visits_0001_visits_table.py"]

    runtime = make_runtime(SETTINGS)  # migrates: core's branch, the default plugins' and the new one
    api = make_api(runtime)
    key = api.key("demo")
    alice = api.sign_up(key, "alice")
    assert api.pay(key, alice, "o-1", 500)["effects"] == []  # below min_total
    paid = api.pay(key, alice, "o-2", 1500)
    assert [(e["plugin"], e["kind"], e["rule"]) for e in paid["effects"]] == [("visits", "VISIT_COUNTED", "min_total")]
    assert api.pay(key, alice, "o-2", 1500)["duplicate"] is True  # a retry counts nothing more
    assert api("query($id: ID) { member(id: $id) { visits } }", {"id": alice}, key) == {"member": {"visits": 1}}

    other = api.key("other")  # a shop that does not enable it has no such field
    errors = api.errors("query($id: ID) { member(id: $id) { visits } }", {"id": alice}, other)
    assert "Cannot query field 'visits'" in errors[0]["message"]


def test_the_test_kit_example_runs(visits, memberkit):
    example = re.search(r"## Testing a plugin.*?```python\n(.*?)```", GUIDE, re.S).group(1)
    namespace: dict = {}
    exec(compile(textwrap.dedent(example), "docs/plugins.md", "exec"), namespace)  # noqa: S102  (our own docs)
    tests = [fn for name, fn in namespace.items() if name.startswith("test_")]
    assert tests
    for test in tests:
        test(memberkit)


def section(name: str) -> str:
    match = re.search(rf"^### `{name}\((.*?)\)`\n(.*?)(?=^##)", GUIDE + "\n##", re.M | re.S)
    assert match, f"hook {name} has no section '### `{name}(...)`' in docs/plugins.md"
    return match.group(0)


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_and_argument_is_documented(name):
    text = section(name)
    documented = [a.strip() for a in re.match(rf"### `{name}\((.*?)\)`", text).group(1).split(",")]
    assert documented == list(inspect.signature(getattr(hookspecs, name)).parameters), f"{name}'s arguments"
    assert "**When**" in text and "**Transaction**" in text, f"{name}: say when it runs and its transaction"
    assert re.search(rf"```python\n(.*\n)*?.*def {name}\(", text), f"{name}: give an example implementing it"
    assert len((inspect.getdoc(getattr(hookspecs, name)) or "").split()) >= 10, f"{name}: a docstring"


def test_the_documentation_check_can_fail():
    with pytest.raises(AssertionError):
        section("no_such_hook")
