"""`memberkit plugin new NAME`: a package whose own tests pass straight away, installable with its entry
point, migrating from its model. Run once (the SQLite pass): it starts a pytest of its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memberkit.cli import app
from memberkit.core import plugins as plugin_registry
from memberkit.testing import TEST_DATABASE_URL
from tests.conftest import MEMBERKIT
from tests.distributions import installed

pytestmark = pytest.mark.skipif(bool(TEST_DATABASE_URL), reason="end to end, run once: in the SQLite pass")


def test_a_new_plugin_passes_its_own_tests_and_installs_with_its_entry_point(tmp_path):
    made = subprocess.run([MEMBERKIT, "plugin", "new", "loyalty_club", "--dir", str(tmp_path)],
                          capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr
    root = tmp_path / "mk-loyalty-club"
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == [
        "README.md", "mk_loyalty_club/__init__.py",
        "mk_loyalty_club/migrations/loyalty_club_0001_loyalty_club_tables.py", "mk_loyalty_club/models.py",
        "pyproject.toml", "tests/test_loyalty_club.py"]

    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # a plugin author's shell: no test database set
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=root, env=env,
                           capture_output=True, text=True, check=False)
    assert tests.returncode == 0 and "1 passed" in tests.stdout, tests.stdout + tests.stderr

    with installed(root, "mk_loyalty_club", "loyalty_club", tmp_path / "work"):
        plugin = plugin_registry.load("loyalty_club")
        assert plugin.settings.__name__ == "LoyaltyClubOrderSettings"
        assert [p.name for p in Path(plugin.migrations).glob("*.py")] == ["loyalty_club_0001_loyalty_club_tables.py"]


@pytest.mark.parametrize(("name", "said"), [("Bad-Name", "is not a plugin name"), ("class", "is not a plugin name"),
                                            ("points", "is installed already")])
def test_a_name_that_cannot_be_is_refused_with_nothing_written(tmp_path, name, said):
    result = CliRunner().invoke(app, ["plugin", "new", name, "--dir", str(tmp_path)])
    assert result.exit_code == 1 and said in result.stderr and list(tmp_path.iterdir()) == []
