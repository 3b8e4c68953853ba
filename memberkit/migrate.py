"""Alembic, driven from code: core's branch plus one branch per plugin that owns tables, all heads upgraded,
and new revisions written from a plugin's declared tables (``memberkit migrations new``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import memberkit.core.models  # noqa: F401  (core's tables)
from memberkit.core import migrations as core_migrations
from memberkit.core import plugins as plugin_registry
from memberkit.core.db import Database
from memberkit.core.runtime import Runtime
from memberkit.schema import audit, auth, erasure, jobs, staff  # noqa: F401  (core's tables kept beside the code using them)

HERE = Path(core_migrations.__file__).parent


class MigrationError(Exception):
    """The database and the installed migrations do not fit; the message says what to do."""


def plugin_names(runtime: Runtime) -> list[str]:
    """Every plugin that some shop enables, each once."""
    return list(dict.fromkeys(p for shop in runtime.settings.shops.values() for p in shop.plugins))


def _location(name: str) -> str | None:
    return plugin_registry.load(name).migrations


def config_for(engine: Engine) -> Config:
    """Revisions of core and of every installed plugin are found (a plugin a shop stopped enabling keeps
    its tables and its revisions stay locatable)."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    locations = [str(HERE / "versions")]
    locations += [location for name in plugin_registry.installed() if (location := _location(name))]
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", os.pathsep.join(locations))
    config.attributes["engine"] = engine
    config.attributes["target_metadata"] = SQLModel.metadata
    return config


def alembic_config(runtime: Runtime) -> Config:
    return config_for(runtime.db.engine)


def branches(runtime: Runtime) -> list[str]:
    """Core's branch and the branch of each enabled plugin that owns tables (labelled with its name)."""
    return ["core"] + [name for name in plugin_names(runtime) if _location(name)]


def _explain(exc: CommandError) -> MigrationError:
    return MigrationError(f"{exc}. The database has revisions that no installed plugin provides, or a "
                          "plugin's branch is not labelled with its name: install the plugin that created them.")


def upgrade(runtime: Runtime) -> list[str]:
    """Bring core's branch and every enabled plugin's to its head; returns the revisions applied, in order."""
    config = alembic_config(runtime)
    before = _applied(runtime, ScriptDirectory.from_config(config))
    try:
        for branch in branches(runtime):
            command.upgrade(config, f"{branch}@head")
    except CommandError as exc:
        raise _explain(exc) from None
    script = ScriptDirectory.from_config(config)
    after = _applied(runtime, script)
    return [rev.revision for rev in reversed(list(script.walk_revisions())) if rev.revision in after - before]


def _applied(runtime: Runtime, script: ScriptDirectory) -> set[str]:
    """Every revision the database has: its heads and all they stand on."""
    with runtime.db.engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return set()
        current = MigrationContext.configure(conn).get_current_heads()
    return {rev.revision for head in current for rev in script.iterate_revisions(head, "base")}


def is_current(runtime: Runtime) -> bool:
    """True when the database is at the head of core's branch and of every enabled plugin's."""
    script = ScriptDirectory.from_config(alembic_config(runtime))
    try:
        heads = {rev.revision for branch in branches(runtime) for rev in script.get_revisions(f"{branch}@head")}
    except CommandError as exc:
        raise _explain(exc) from None
    return heads <= _applied(runtime, script)


def owned_by(name: str):
    """Alembic's `include_object` for one plugin: its declared tables and what belongs to them, nothing else."""
    tables = {model.__table__.name for model in plugin_registry.load(name).tables}

    def include(obj, object_name, type_, reflected, compare_to) -> bool:
        table = object_name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
        return table in tables

    return include


def pending_changes(engine: Engine, name: str) -> list:
    """What the plugin's declared tables have that the database (at its heads) does not: autogenerate's diff."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": owned_by(name)})
        return compare_metadata(context, SQLModel.metadata)


def _branch_revisions(script: ScriptDirectory, name: str) -> list[str]:
    """The revisions of the plugin's own branch (down revisions only, not what it depends on)."""
    try:
        todo = list(script.get_revisions(f"{name}@head"))
    except CommandError:
        return []  # no revision of the plugin yet
    found: list[str] = []
    while todo:
        rev = todo.pop()
        if rev.revision not in found:
            found.append(rev.revision)
            down = rev.down_revision
            todo += [script.get_revision(d) for d in ((down,) if isinstance(down, str) else down or ())]
    return found


def new_revision(name: str, message: str) -> Path:
    """Write the plugin's next Alembic revision, generated from its declared tables: a scratch SQLite
    database is upgraded to every head (Alembic's condition), and autogenerate compares the plugin's tables.

    The first revision starts the plugin's branch (labelled with its name, depending on core's head).
    """
    plugin = plugin_registry.load(name)
    if not plugin.tables or not plugin.migrations:
        raise MigrationError(f"plugin {name!r} declares no tables, so it has no migrations: add its table "
                             "models to its Plugin(tables=...)")
    location = Path(plugin.migrations)
    location.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        db = Database(f"sqlite:///{Path(scratch) / 'scratch.db'}")
        try:
            config = config_for(db.engine)
            script = ScriptDirectory.from_config(config)
            command.upgrade(config, "heads")
            earlier = _branch_revisions(script, name)
            if not pending_changes(db.engine, name):
                raise MigrationError(f"plugin {name!r}: its tables and its migrations agree; nothing to write")
            config.attributes["include_object"] = owned_by(name)
            options = {"head": f"{name}@head"} if earlier else {
                "head": "base", "branch_label": name,
                "depends_on": [rev.revision for rev in script.get_revisions("core@head")]}
            written = command.revision(config, message=message, autogenerate=True, version_path=str(location),
                                       rev_id=f"{name}_{len(earlier) + 1:04d}", **options)
        finally:
            db.dispose()
    return Path(written.path)
