"""Installing a plugin as its own distribution for a test, and undoing all of it after."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect
from sqlmodel import SQLModel

from memberkit import migrate
from memberkit.core import plugins as plugin_registry
from memberkit.core.db import Database
from memberkit.testing import TEST_DATABASE_URL


@contextmanager
def installed(source: Path, module: str, plugin: str, work: Path) -> Iterator[Path]:
    """pip-install the distribution at `source` into a folder of its own (no index, no build isolation:
    no network), put that folder on sys.path and yield it; after, forget its modules, its tables in
    SQLModel's metadata and, on the shared PostgreSQL test database, its Alembic branch."""
    plugin_registry.refresh()
    assert plugin not in plugin_registry.installed()
    assert importlib.util.find_spec(module) is None, "the plugin must not be importable before installing it"
    copy = shutil.copytree(source, work / source.name, ignore=shutil.ignore_patterns("__pycache__"))
    target = work / "site-packages"
    pip = subprocess.run(  # noqa: S603  (this interpreter's pip, paths the test made)
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--no-build-isolation",
         "--no-cache-dir", "--disable-pip-version-check", "--quiet", "--target", str(target), str(copy)],
        capture_output=True, text=True)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(target))
        plugin_registry.refresh()
        try:
            yield target
        finally:
            if TEST_DATABASE_URL:
                _downgrade(plugin)
            for table in [t for t in SQLModel.metadata.tables.values() if t.name.startswith(plugin + "_")]:
                SQLModel.metadata.remove(table)
            for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
                del sys.modules[name]
    importlib.invalidate_caches()
    plugin_registry.refresh()
    assert plugin not in plugin_registry.installed()


def _downgrade(plugin: str) -> None:
    """The shared PostgreSQL test database must not keep a branch other tests' migrations cannot find."""
    db = Database(TEST_DATABASE_URL)
    try:
        with db.engine.connect() as conn:
            versions = set(conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars()) if inspect(
                conn).has_table("alembic_version") else set()
        if any(version.startswith(plugin + "_") for version in versions):
            command.downgrade(migrate.config_for(db.engine), f"{plugin}@base")
    finally:
        db.dispose()
