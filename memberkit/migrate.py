"""Alembic, driven from code: core's branch plus one branch per enabled plugin, all heads upgraded."""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import inspect
from sqlmodel import SQLModel

import memberkit.core.models  # noqa: F401  (core's tables)
from memberkit.core import migrations as core_migrations
from memberkit.core import plugins as plugin_registry
from memberkit.core.runtime import Runtime

HERE = Path(core_migrations.__file__).parent


def plugin_names(runtime: Runtime) -> list[str]:
    """Every plugin that some shop enables, each once."""
    return list(dict.fromkeys(p for shop in runtime.settings.shops.values() for p in shop.plugins))


def _location(name: str) -> str | None:
    return plugin_registry.call_one(plugin_registry.manager((name,)), "migrations_location", name)


def alembic_config(runtime: Runtime) -> Config:
    """Revisions of core and of every installed plugin are found (a plugin a shop stopped enabling keeps
    its tables and its revisions stay locatable); only enabled plugins are upgraded."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    locations = [str(HERE / "versions")]
    locations += [str(location) for name in plugin_registry.installed() if (location := _location(name))]
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", os.pathsep.join(locations))
    for name in plugin_names(runtime):
        plugin_registry.load(name)  # a plugin's import registers its tables
    config.attributes["engine"] = runtime.db.engine
    config.attributes["target_metadata"] = SQLModel.metadata
    return config


def branches(runtime: Runtime) -> list[str]:
    """Core's branch and the branch of each enabled plugin that owns tables (labelled with its name)."""
    return ["core"] + [name for name in plugin_names(runtime) if _location(name)]


class MigrationError(Exception):
    """The database and the installed migrations do not fit; the message says what to do."""


def _explain(exc: CommandError) -> MigrationError:
    return MigrationError(f"{exc}. The database has revisions that no installed plugin provides, or a "
                          "plugin's branch is not labelled with its name: install the plugin that created them.")


def upgrade(runtime: Runtime) -> None:
    config = alembic_config(runtime)
    try:
        for branch in branches(runtime):
            command.upgrade(config, f"{branch}@head")
    except CommandError as exc:
        raise _explain(exc) from None


def is_current(runtime: Runtime) -> bool:
    """True when the database is at the head of core's branch and of every enabled plugin's."""
    script = ScriptDirectory.from_config(alembic_config(runtime))
    try:
        heads = {rev.revision for branch in branches(runtime) for rev in script.get_revisions(f"{branch}@head")}
    except CommandError as exc:
        raise _explain(exc) from None
    with runtime.db.engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return False
        current = set(MigrationContext.configure(conn).get_current_heads())
    return heads <= {rev.revision for head in current for rev in script.iterate_revisions(head, "base")}
