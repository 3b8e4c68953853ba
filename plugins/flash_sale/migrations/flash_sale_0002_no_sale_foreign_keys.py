"""flash_sale: reservations and member counters no longer have a foreign key to the sale (its hot row)

Revision ID: flash_sale_0002
Revises: flash_sale_0001
"""

from alembic import op

revision = "flash_sale_0002"
down_revision = "flash_sale_0001"
branch_labels = None
depends_on = None

TABLES = ("flash_sale_reservation", "flash_sale_member")
# SQLite keeps the constraints unnamed: batch mode names them by this convention to find them.
NAMING = {"fk": "%(table_name)s_%(column_0_name)s_fkey"}


def upgrade() -> None:
    for table in TABLES:
        if op.get_context().dialect.name == "postgresql":
            op.drop_constraint(f"{table}_sale_id_fkey", table, type_="foreignkey")
        else:
            with op.batch_alter_table(table, naming_convention=NAMING) as batch:
                batch.drop_constraint(f"{table}_sale_id_fkey", type_="foreignkey")


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.create_foreign_key(f"{table}_sale_id_fkey", "flash_sale_sale", ["sale_id"], ["id"])
