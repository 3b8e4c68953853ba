"""Alembic environment: runs on the runtime's engine (so SQLite gets WAL) against every model's metadata."""

from alembic import context
from sqlmodel import SQLModel

import core.models  # noqa: F401  (core's tables)
from core import plugins as plugin_registry
from core.migrate import plugin_names

config = context.config
runtime = config.attributes["runtime"]
for name in plugin_names(runtime):
    plugin_registry.load(name)  # a plugin's import registers its tables

with runtime.db.engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
