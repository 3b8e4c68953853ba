"""Alembic, driven from code: core's branch plus one branch per enabled plugin, all heads upgraded."""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from core import plugins as plugin_registry
from core.runtime import Runtime

HERE = Path(__file__).parent / "migrations"


def plugin_names(runtime: Runtime) -> list[str]:
    """Every plugin that some shop enables, each once."""
    return list(dict.fromkeys(p for shop in runtime.settings.shops.values() for p in shop.plugins))


def alembic_config(runtime: Runtime) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    locations = [str(HERE / "versions")]
    for name in plugin_names(runtime):
        location = plugin_registry.call_one(plugin_registry.manager((name,)), "migrations_location", name)
        if location:
            locations.append(str(location))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", os.pathsep.join(locations))
    config.attributes["runtime"] = runtime
    return config


def upgrade(runtime: Runtime) -> None:
    command.upgrade(alembic_config(runtime), "heads")


def is_current(runtime: Runtime) -> bool:
    """True when the database is at every head of core and the enabled plugins."""
    heads = set(ScriptDirectory.from_config(alembic_config(runtime)).get_heads())
    with runtime.db.engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return False
        current = set(MigrationContext.configure(conn).get_current_heads())
    return heads <= current
