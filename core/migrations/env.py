"""Alembic environment: the runner (``memberkit.migrate``) hands over the engine and the tables to compare."""

from alembic import context

config = context.config
with config.attributes["engine"].connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=config.attributes["target_metadata"],
        include_object=config.attributes.get("include_object"),
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
