"""Alembic environment: the runner (``memberkit.migrate``) hands over the engine and the tables to compare."""

from alembic import context
from sqlmodel.sql.sqltypes import AutoString

from memberkit.core.db import UTCDateTime


def render_item(type_, obj, autogen_context):
    """Types as plain SQLAlchemy in generated revisions, so that a revision imports nothing but Alembic's."""
    if type_ == "type" and isinstance(obj, AutoString):
        return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


config = context.config
with config.attributes["engine"].connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=config.attributes["target_metadata"],
        include_object=config.attributes.get("include_object"),
        render_as_batch=connection.dialect.name == "sqlite",
        render_item=render_item,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
