"""perks: the first-order discount held by one open checkout

Revision ID: perks_0002
Revises: perks_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "perks_0002"
down_revision = "perks_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "perks_first_order_hold",
        sa.Column("member_id", sa.String(length=32), nullable=False),
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("checkout_id", sa.String(length=64), nullable=False),
        sa.Column("held_until", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["core_member.id"]),
        sa.PrimaryKeyConstraint("member_id"),
    )


def downgrade() -> None:
    op.drop_table("perks_first_order_hold")
